package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot/githubtest"
)

// TestServeAsGitHubApp runs the real `sluice serve` as a GitHub App against
// the fake GitHub: a signed /canary comment deploys the PR head and moves
// 10% of the traffic to it, with the reports on GitHub.
func TestServeAsGitHubApp(t *testing.T) {
	t.Parallel()
	const (
		repo  = "Codertocat/Hello-World"
		main  = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
		head  = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
		appID = 29310
	)
	key, pemKey := githubtest.GenerateKey(t)
	gh := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID))
	yaml := fmt.Sprintf("services:\n  hello:\n    run: exec %q\n    health: /healthz\n    env: {GREETING: hi}\n", helloBin)
	gh.AddRepo(repo, githubtest.RepoOpts{InstallationID: 1})
	gh.SetCommit(repo, main, map[string]string{"sluice.yaml": yaml})
	gh.SetCommit(repo, head, map[string]string{"sluice.yaml": yaml, "CHANGE": "x"})
	gh.SetPR(repo, 1, head, "changes")
	gh.SetPermission(repo, "Codertocat", githubtest.PermWrite)
	gh.AddComment(repo, 1, githubtest.Comment{ID: 492700400, User: "Codertocat", Body: "/canary 10%"})

	dir := t.TempDir()
	keyFile, secretFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "secret")
	os.WriteFile(keyFile, pemKey, 0o600)
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	s := startServer(t, filepath.Join(dir, "data"), freePort(t), freePort(t),
		fmt.Sprintf("SLUICE_GITHUB_APP_ID=%d", appID), "SLUICE_GITHUB_PRIVATE_KEY="+keyFile,
		"SLUICE_GITHUB_WEBHOOK_SECRET_FILE="+secretFile, "SLUICE_GITHUB_API_URL="+gh.URL(),
		"SLUICE_PUBLIC_URL=https://sluice.example.com")

	post := func(event, fixture string) { t.Helper(); s.deliver(event, fixture, "s3cret") }
	waitFor := func(what string, ok func() bool) { t.Helper(); waitFor(t, what, ok) }
	post("push", "push.json")
	waitFor("the merge deploy", func() bool { v, _, err := s.get("hello.localhost", ""); return err == nil && v == "hello-001" })
	post("issue_comment", "issue_comment.created.pull_request.json")
	waitFor("the 🚀", func() bool { return strings.Join(gh.Reactions(492700400), ",") == "eyes,rocket" })
	st := s.status("hello")
	if st.Policy.Split["hello-001"] != 90 || st.Policy.Split["hello-002"] != 10 {
		t.Fatalf("split after /canary 10%%: %v", st.Policy.Split)
	}
	waitFor("a green check on the PR head", func() bool {
		for _, c := range gh.CheckRuns(repo) {
			if c.HeadSHA == head && c.Name == "sluice / hello" && c.Conclusion == "success" {
				return true
			}
		}
		return false
	})
	// A forged delivery is refused.
	req := githubtest.Delivery(t, "http://"+s.api+"/webhooks/github", "push", githubtest.Fixture(t, "push.json"), []byte("wrong"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged delivery answered %d", resp.StatusCode)
	}
}

// deliver posts a webhook fixture signed with secret; it must be accepted.
func (s *server) deliver(event, fixture, secret string) {
	s.t.Helper()
	req := githubtest.Delivery(s.t, "http://"+s.api+"/webhooks/github", event, githubtest.Fixture(s.t, fixture), []byte(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("%s delivery answered %d", event, resp.StatusCode)
	}
}

// waitFor polls ok until it holds, for 30 s at most.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A deployed app prints the App's private key, the admin token and the
// webhook secret: none of them reaches GitHub. Deployed code running as
// its own user cannot read those files at all (see
// TestDeployedCodeCannotReachSluice), so this server runs it as root, the
// one mode where it can, to test the redaction behind that wall.
func TestServeNeverSendsItsOwnSecretsToGitHub(t *testing.T) {
	t.Parallel()
	const (
		repo  = "Codertocat/Hello-World"
		main  = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
		appID = 29310
		admin = "admin-token-4c1f9e0b7d"
	)
	key, pemKey := githubtest.GenerateKey(t)
	gh := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID))
	dir := t.TempDir()
	keyFile, secretFile, tokenFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "secret"), filepath.Join(dir, "token")
	os.WriteFile(keyFile, pemKey, 0o600)
	os.WriteFile(secretFile, []byte("hook-s3cret\n"), 0o600)
	os.WriteFile(tokenFile, []byte(admin+"\n"), 0o600)
	leak := fmt.Sprintf("services:\n  hello:\n    run: cat %q %q %q; exit 1\n    timeouts: {start: 5s}\n", keyFile, secretFile, tokenFile)
	gh.AddRepo(repo, githubtest.RepoOpts{InstallationID: 1})
	gh.SetCommit(repo, main, map[string]string{"sluice.yaml": leak})
	s := startServer(t, filepath.Join(dir, "data"), freePort(t), freePort(t),
		fmt.Sprintf("SLUICE_GITHUB_APP_ID=%d", appID), "SLUICE_GITHUB_PRIVATE_KEY="+keyFile,
		"SLUICE_GITHUB_WEBHOOK_SECRET_FILE="+secretFile, "SLUICE_TOKEN_FILE="+tokenFile, "SLUICE_GITHUB_API_URL="+gh.URL(), "SLUICE_RUN_AS=root")
	s.deliver("push", "push.json", "hook-s3cret")
	var check githubtest.CheckRun
	waitFor(t, "a failed check on the merge", func() bool {
		for _, c := range gh.CheckRuns(repo) {
			if c.HeadSHA == main && c.Conclusion == "failure" {
				check = c
				return true
			}
		}
		return false
	})
	var secrets []string
	for _, line := range strings.Split(string(pemKey), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	secrets = append(secrets, admin, "hook-s3cret")
	for _, r := range gh.Requests() {
		for _, secret := range secrets {
			if strings.Contains(string(r.Body), secret) {
				t.Fatalf("%s %s carries %q", r.Method, r.Path, secret)
			}
		}
	}
	if !strings.Contains(check.Output.Text+check.Output.Summary, "***") {
		t.Errorf("the check shows no redacted log:\n%s", check.Output.Text)
	}
}

// TestMergeWhileStoppedIsRecovered stops sluice, merges (GitHub's delivery
// fails: nobody listens), starts sluice again, and the merge is deployed
// from the delivery sluice asked GitHub to send again.
func TestMergeWhileStoppedIsRecovered(t *testing.T) {
	t.Parallel()
	const (
		repo  = "Codertocat/Hello-World"
		first = "1111111111111111111111111111111111111111"
		merge = "6113728f27ae82c7b1a177c8d03f9e96e0adf246" // push.json's "after"
		appID = 29310
	)
	key, pemKey := githubtest.GenerateKey(t)
	gh := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID))
	yaml := func(greeting string) string {
		return fmt.Sprintf("services:\n  hello:\n    run: exec %q\n    health: /healthz\n    env: {GREETING: %s}\n", helloBin, greeting)
	}
	gh.AddRepo(repo, githubtest.RepoOpts{InstallationID: 1})
	gh.SetCommit(repo, first, map[string]string{"sluice.yaml": yaml("first")})
	gh.SetCommit(repo, merge, map[string]string{"sluice.yaml": yaml("merged")})

	dir := t.TempDir()
	keyFile, secretFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "secret")
	os.WriteFile(keyFile, pemKey, 0o600)
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	data, api, route := filepath.Join(dir, "data"), freePort(t), freePort(t)
	env := []string{fmt.Sprintf("SLUICE_GITHUB_APP_ID=%d", appID), "SLUICE_GITHUB_PRIVATE_KEY=" + keyFile,
		"SLUICE_GITHUB_WEBHOOK_SECRET_FILE=" + secretFile, "SLUICE_GITHUB_API_URL=" + gh.URL()}
	gh.SetWebhook("http://"+api+"/webhooks/github", []byte("s3cret"))
	waitFor := func(s *server, want string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, body, err := s.get("hello.localhost", ""); err == nil && strings.Contains(body, want) {
				return
			}
		}
		t.Fatalf("hello never answered %q", want)
	}
	push := func(sha string) []byte {
		var p map[string]any
		json.Unmarshal(githubtest.Fixture(t, "push.json"), &p)
		p["after"] = sha
		b, _ := json.Marshal(p)
		return b
	}

	s := startServer(t, data, api, route, env...)
	if d := gh.SendWebhook("push", push(first)); d.StatusCode != http.StatusAccepted {
		t.Fatalf("first merge delivered with %d", d.StatusCode)
	}
	waitFor(s, "first")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("sluice did not stop cleanly: %v", err)
	}

	// The test keeps serve's listening socket open between the two runs,
	// so the kernel would queue a delivery for the next run: point GitHub
	// at an address nobody listens on while sluice is down.
	gh.SetWebhook("http://"+unusedAddr(t)+"/webhooks/github", []byte("s3cret"))
	if d := gh.SendWebhook("push", push(merge)); d.StatusCode != http.StatusBadGateway {
		t.Fatalf("a merge delivered to a stopped sluice answered %d", d.StatusCode)
	}
	gh.SetWebhook("http://"+api+"/webhooks/github", []byte("s3cret"))

	s2 := startServer(t, data, api, route, env...)
	waitFor(s2, "merged")
	var redelivered bool
	for _, d := range gh.HookDeliveries() {
		redelivered = redelivered || (d.Redelivery && d.StatusCode >= 200 && d.StatusCode < 300)
	}
	if !redelivered {
		var sum []string
		for _, d := range gh.HookDeliveries() {
			sum = append(sum, fmt.Sprintf("%s redelivery=%v %d %s", d.Event, d.Redelivery, d.StatusCode, d.Status))
		}
		t.Fatalf("deployed, but not from a redelivery: %v", sum)
	}
}
