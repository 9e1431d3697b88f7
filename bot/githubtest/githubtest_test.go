package githubtest_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/githubtest"
)

const (
	repo    = "Codertocat/Hello-World"
	owner   = "Codertocat"
	name    = "Hello-World"
	appID   = 29310
	headSHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	baseSHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
)

// recordingTB stands in for the test so that failures the fake reports
// can be observed instead of failing this test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// key is one App key for the whole test binary: generating RSA keys is slow.
func key(t *testing.T) *rsa.PrivateKey {
	k, _ := githubtest.SharedKey(t)
	return k
}

// setup starts a fake with one repository: main at baseSHA, PR 1 at headSHA.
func setup(t *testing.T, opts ...githubtest.Option) (*recordingTB, *githubtest.Server) {
	rt := &recordingTB{TB: t}
	opts = append([]githubtest.Option{githubtest.WithAppKey(&key(t).PublicKey, appID)}, opts...)
	s := githubtest.NewServer(rt, opts...)
	s.AddRepo(repo, githubtest.RepoOpts{DefaultBranch: "main", InstallationID: 1, ID: 186853002})
	s.SetCommit(repo, baseSHA, map[string]string{"sluice.yaml": "services: {}\n", "README.md": "hi\n"})
	s.SetCommit(repo, headSHA, map[string]string{
		"sluice.yaml":        "services: {hello: {run: ./app}}\n",
		"README.md":          "hi\n",
		".github/deploy.yml": "x: 1\n",
		"bin/start.sh":       "#!/bin/sh\necho hi\n",
	})
	s.SetParents(repo, headSHA, baseSHA)
	s.SetBranch(repo, "main", baseSHA)
	s.SetPR(repo, 1, headSHA, "feature/x")
	return rt, s
}

func client(t *testing.T, s *githubtest.Server, token string) *github.Client {
	c := github.NewClient(nil).WithAuthToken(token)
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.BaseURL, c.UploadURL = u, u
	return c
}

// do sends a raw request with a bearer credential and returns the status.
func do(t *testing.T, s *githubtest.Server, method, path, auth, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(s.URL(), "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// jwt signs an App JWT by hand so tests can break each claim.
func jwt(t *testing.T, k *rsa.PrivateKey, iss any, iat, exp time.Time) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"iss": iss, "iat": iat.Unix(), "exp": exp.Unix()})
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestUnknownRoutesFailTheTest(t *testing.T) {
	rt, s := setup(t)
	tok := s.InstallationToken(1)
	cases := []struct {
		method, path string
	}{
		{"GET", "/user"},
		{"GET", "/repos/Codertocat/Hello-World/issues/1"},
		{"DELETE", "/repos/Codertocat/Hello-World/check-runs/5"},
		{"PUT", "/repos/Codertocat/Hello-World/pulls/1"},
	}
	for i, tc := range cases {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			if got := do(t, s, tc.method, tc.path, tok, ""); got != http.StatusNotFound {
				t.Errorf("status = %d, want 404", got)
			}
			errs := rt.errors()
			if len(errs) != i+1 {
				t.Fatalf("fake reported %d failures, want %d: %q", len(errs), i+1, errs)
			}
			if last := errs[i]; !strings.Contains(last, tc.method+" "+tc.path) {
				t.Errorf("failure %q does not name %s %s", last, tc.method, tc.path)
			}
		})
	}
}

func TestRequestsAreValidatedAgainstOpenAPI(t *testing.T) {
	rt, s := setup(t)
	tok := s.InstallationToken(1)
	c := client(t, s, tok)
	ctx := context.Background()
	cr, _, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
		Name: "sluice / hello", HeadSHA: headSHA, Status: github.String("in_progress"),
	})
	if err != nil {
		t.Fatalf("create check run: %v", err)
	}
	if errs := rt.errors(); len(errs) != 0 {
		t.Fatalf("a valid request was refused: %q", errs)
	}
	runPath := fmt.Sprintf("/repos/%s/check-runs/%d", repo, cr.GetID())
	cases := []struct {
		name, method, path, body string
		valid                    bool
	}{
		{"update with name", "PATCH", runPath, `{"name":"sluice / hello","status":"completed","conclusion":"success"}`, true},
		{"update without name", "PATCH", runPath, `{"status":"in_progress"}`, false},
		{"completed without conclusion", "PATCH", runPath, `{"name":"sluice / hello","status":"completed"}`, false},
		{"unknown conclusion", "PATCH", runPath, `{"name":"sluice / hello","conclusion":"great"}`, false},
		{"reaction thumbsup", "POST", "/repos/" + repo + "/issues/comments/492700400/reactions", `{"content":"thumbsup"}`, false},
		{"comment without body", "POST", "/repos/" + repo + "/issues/1/comments", `{}`, false},
		{"check run id not a number", "GET", "/repos/" + repo + "/check-runs/abc", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rt.errors())
			status := do(t, s, tc.method, tc.path, tok, tc.body)
			reported := len(rt.errors()) - before
			if tc.valid && (reported != 0 || status != http.StatusOK) {
				t.Errorf("valid request: status %d, failures %q", status, rt.errors()[before:])
			}
			if !tc.valid && (reported != 1 || status != http.StatusUnprocessableEntity) {
				t.Errorf("invalid request: status %d, %d failures reported, want 422 and 1", status, reported)
			}
		})
	}
	// The invalid update changed nothing.
	runs := s.CheckRuns(repo)
	if len(runs) != 1 || runs[0].Conclusion != "success" || runs[0].Updates != 1 {
		t.Errorf("check runs = %+v, want one, completed by the one valid update", runs)
	}
}

func TestAuthentication(t *testing.T) {
	rt, s := setup(t, githubtest.WithToken("workflow-token"))
	s.AddRepo("other/repo", githubtest.RepoOpts{InstallationID: 2})
	tok1, tok2 := s.InstallationToken(1), s.InstallationToken(2)
	k := key(t)
	other, _ := githubtest.GenerateKey(t)
	now := time.Now()
	good := jwt(t, k, fmt.Sprint(appID), now.Add(-30*time.Second), now.Add(90*time.Second))
	pullPath := "/repos/" + repo + "/pulls/1"
	cases := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"installation token on its repo", "GET", pullPath, tok1, 200},
		{"workflow token", "GET", pullPath, "workflow-token", 200},
		{"no credential", "GET", pullPath, "", 401},
		{"token of another installation", "GET", pullPath, tok2, 401},
		{"unknown token", "GET", pullPath, "ghs_nope", 401},
		{"jwt on a repo endpoint", "GET", pullPath, good, 401},
		{"unknown repo", "GET", "/repos/nobody/none/pulls/1", "workflow-token", 404},
		{"jwt on /app", "GET", "/app", good, 200},
		{"numeric iss", "GET", "/app", jwt(t, k, appID, now.Add(-30*time.Second), now.Add(90*time.Second)), 200},
		{"installation token on /app", "GET", "/app", tok1, 401},
		{"jwt of another key", "GET", "/app", jwt(t, other, fmt.Sprint(appID), now, now.Add(time.Minute)), 401},
		{"jwt of another app", "GET", "/app", jwt(t, k, "1", now, now.Add(time.Minute)), 401},
		{"expired jwt", "GET", "/app", jwt(t, k, fmt.Sprint(appID), now.Add(-5*time.Minute), now.Add(-time.Minute)), 401},
		{"jwt living too long", "GET", "/app", jwt(t, k, fmt.Sprint(appID), now, now.Add(time.Hour)), 401},
		{"repo installation with jwt", "GET", "/repos/" + repo + "/installation", good, 200},
		{"mint with jwt", "POST", "/app/installations/1/access_tokens", good, 201},
		{"mint for unknown installation", "POST", "/app/installations/9/access_tokens", good, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := do(t, s, tc.method, tc.path, tc.auth, ""); got != tc.want {
				t.Errorf("status = %d, want %d", got, tc.want)
			}
		})
	}
	if errs := rt.errors(); len(errs) != 0 {
		t.Errorf("authentication failures must not fail the test: %q", errs)
	}
}

func TestTarballRedirect(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()
	for _, ref := range []string{headSHA, "feature/x"} {
		t.Run(ref, func(t *testing.T) {
			loc, _, err := c.Repositories.GetArchiveLink(ctx, owner, name, github.Tarball,
				&github.RepositoryContentGetOptions{Ref: ref}, 0)
			if err != nil {
				t.Fatalf("archive link: %v", err)
			}
			if !strings.HasPrefix(loc.String(), strings.TrimSuffix(s.URL(), "/")+"/_tarballs/") {
				t.Fatalf("Location %s is not on the fake", loc)
			}
			resp, err := http.Get(loc.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("download: %s", resp.Status)
			}
			files, modes, comment := readTarball(t, resp.Body)
			top := "Codertocat-Hello-World-" + headSHA[:7] + "/"
			if comment != headSHA {
				t.Errorf("pax comment = %q, want the SHA", comment)
			}
			if got := files[top+"sluice.yaml"]; got != "services: {hello: {run: ./app}}\n" {
				t.Errorf("sluice.yaml = %q", got)
			}
			if modes[top+"bin/start.sh"]&0o111 == 0 || modes[top+"README.md"]&0o111 != 0 {
				t.Errorf("modes = %v, want only the script executable", modes)
			}
			if _, ok := modes[top+".github/"]; !ok {
				t.Errorf("no directory entry for .github/: %v", modes)
			}
		})
	}
	if _, resp, err := c.Repositories.GetArchiveLink(ctx, owner, name, github.Tarball,
		&github.RepositoryContentGetOptions{Ref: "no-such-branch"}, 0); err == nil || resp.StatusCode != 404 {
		t.Errorf("unknown ref: err %v, want 404", err)
	}
	if resp, err := http.Get(strings.TrimSuffix(s.URL(), "/") + "/_tarballs/Codertocat/Hello-World/legacy.tar.gz/" + headSHA); err != nil || resp.StatusCode != 404 {
		t.Errorf("download without the redirect's token: %v %v, want 404", resp.Status, err)
	}
}

func readTarball(t *testing.T, r io.Reader) (files map[string]string, modes map[string]int64, comment string) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files, modes = map[string]string{}, map[string]int64{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, modes, comment
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			comment = h.PAXRecords["comment"]
			continue
		}
		modes[h.Name] = h.Mode
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = string(b)
		}
	}
}

func TestPermissions(t *testing.T) {
	_, s := setup(t)
	s.AddRepo("Codertocat/secret", githubtest.RepoOpts{InstallationID: 1, Private: true})
	c := client(t, s, s.InstallationToken(1))
	cases := []struct {
		repo, login, set, want string
	}{
		{name, "alice", githubtest.PermAdmin, "admin"},
		{name, "bob", githubtest.PermMaintain, "write"},
		{name, "carol", githubtest.PermWrite, "write"},
		{name, "dave", githubtest.PermTriage, "read"},
		{name, "erin", githubtest.PermRead, "read"},
		{name, "frank", githubtest.PermNone, "none"},
		{name, "stranger", "", "read"},
		{"secret", "stranger", "", "none"},
	}
	for _, tc := range cases {
		t.Run(tc.repo+"/"+tc.login, func(t *testing.T) {
			if tc.set != "" {
				s.SetPermission(owner+"/"+tc.repo, tc.login, tc.set)
			}
			p, _, err := c.Repositories.GetPermissionLevel(context.Background(), owner, tc.repo, tc.login)
			if err != nil {
				t.Fatal(err)
			}
			if p.GetPermission() != tc.want || p.GetUser().GetLogin() != tc.login {
				t.Errorf("permission = %q for %q, want %q", p.GetPermission(), p.GetUser().GetLogin(), tc.want)
			}
		})
	}
}

func TestCheckRunLifecycle(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()
	if _, resp, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
		Name: "sluice / hello", HeadSHA: strings.Repeat("0", 40),
	}); err == nil || resp.StatusCode != 422 {
		t.Errorf("check run on an unknown commit: %v, want 422", err)
	}
	cr, _, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
		Name: "sluice / hello", HeadSHA: headSHA, Status: github.String("in_progress"),
		Output: &github.CheckRunOutput{Title: github.String("Deploying"), Summary: github.String("checkout"),
			Annotations: []*github.CheckRunAnnotation{{Path: github.String("sluice.yaml"), StartLine: github.Int(1), EndLine: github.Int(1), AnnotationLevel: github.String("warning"), Message: github.String("first")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.PullRequests) != 1 || cr.PullRequests[0].GetNumber() != 1 {
		t.Errorf("pull_requests = %v, want PR 1", cr.PullRequests)
	}
	_, _, err = c.Checks.UpdateCheckRun(ctx, owner, name, cr.GetID(), github.UpdateCheckRunOptions{
		Name: "sluice / hello", Conclusion: github.String("failure"),
		Output: &github.CheckRunOutput{Title: github.String("InvalidManifest"), Summary: github.String("bad"),
			Annotations: []*github.CheckRunAnnotation{{Path: github.String("sluice.yaml"), StartLine: github.Int(3), EndLine: github.Int(3), AnnotationLevel: github.String("failure"), Message: github.String("services.hello.run")}}},
		Actions: []*github.CheckRunAction{{Label: "Rollback", Description: "Back to stable", Identifier: "rollback"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second run of the same name: list-for-ref shows only the latest by default.
	if _, _, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{Name: "sluice / hello", HeadSHA: headSHA}); err != nil {
		t.Fatal(err)
	}
	runs := s.CheckRuns(repo)
	if len(runs) != 2 {
		t.Fatalf("stored %d check runs, want 2", len(runs))
	}
	got := runs[0]
	if got.Status != "completed" || got.Conclusion != "failure" || got.CompletedAt.IsZero() ||
		got.Output.Title != "InvalidManifest" || len(got.Output.Annotations) != 2 ||
		got.Output.Annotations[1].StartLine != 3 || len(got.Actions) != 1 || got.Updates != 1 {
		t.Errorf("check run after update = %+v", got)
	}
	for _, tc := range []struct {
		filter string
		want   int
	}{{"", 1}, {"all", 2}} {
		res, _, err := c.Checks.ListCheckRunsForRef(ctx, owner, name, "feature/x", &github.ListCheckRunsOptions{Filter: github.String(tc.filter)})
		if tc.filter == "" {
			res, _, err = c.Checks.ListCheckRunsForRef(ctx, owner, name, headSHA, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.GetTotal() != tc.want || len(res.CheckRuns) != tc.want {
			t.Errorf("filter %q: %d runs, want %d", tc.filter, res.GetTotal(), tc.want)
		}
	}
}

func TestFaults(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()
	get := func() (int, error) {
		_, resp, err := c.PullRequests.Get(ctx, owner, name, 1)
		if resp == nil {
			return 0, err
		}
		return resp.StatusCode, err
	}

	s.FailNext(2, http.StatusBadGateway, nil)
	for i, want := range []int{502, 502, 200} {
		if got, _ := get(); got != want {
			t.Errorf("request %d: status %d, want %d", i, got, want)
		}
	}

	s.FailRoute("POST", "/repos/"+repo+"/issues", 1, http.StatusInternalServerError, nil)
	if got, _ := get(); got != 200 {
		t.Errorf("a GET matched a POST fault: %d", got)
	}
	if _, _, err := c.Issues.CreateComment(ctx, owner, name, 1, &github.IssueComment{Body: github.String("x")}); err == nil {
		t.Error("the POST fault did not fire")
	}
	if n := len(s.Comments(repo, 1)); n != 0 {
		t.Errorf("a failed write was acted on: %d comments", n)
	}

	reset := time.Now().Add(time.Hour).Unix()
	s.FailNext(1, http.StatusForbidden, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(reset)})
	_, err := get()
	var rle *github.RateLimitError
	if !errors.As(err, &rle) || rle.Rate.Reset.Unix() != reset {
		t.Errorf("rate-limited 403: %T %v, want a RateLimitError resetting at %d", err, err, reset)
	}

	// A fresh client: go-github remembers the primary limit and would not send.
	s.FailNext(1, http.StatusForbidden, map[string]string{"Retry-After": "1"})
	_, _, err = client(t, s, s.InstallationToken(1)).PullRequests.Get(ctx, owner, name, 1)
	var are *github.AbuseRateLimitError
	if !errors.As(err, &are) || are.GetRetryAfter() != time.Second {
		t.Errorf("secondary-limited 403: %T %v, want an AbuseRateLimitError", err, err)
	}
}

func TestDelayedWriteThatTimesOutDoesNothing(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	s.Delay(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.Issues.CreateComment(ctx, owner, name, 1, &github.IssueComment{Body: github.String("late")})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("err = %v after %v, want a client timeout", err, time.Since(start))
	}
	s.Delay(0)
	// The abandoned request is recorded (with status 0) once the fake sees the client gone.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var abandoned bool
		for _, r := range s.Requests() {
			abandoned = abandoned || (r.Operation == "issues/create-comment" && r.Status == 0)
		}
		if abandoned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the abandoned request was not recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(s.Comments(repo, 1)); n != 0 {
		t.Errorf("the abandoned write was acted on: %d comments", n)
	}
}

func TestCommentsAndReactions(t *testing.T) {
	_, s := setup(t, githubtest.WithToken("workflow-token"))
	seed := s.AddComment(repo, 1, githubtest.Comment{ID: 492700400, User: "Codertocat", Body: "/canary 10%"})
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := c.Issues.CreateComment(ctx, owner, name, 1, &github.IssueComment{Body: github.String(fmt.Sprint("reply ", i))}); err != nil {
			t.Fatal(err)
		}
	}
	page1, resp, err := c.Issues.ListComments(ctx, owner, name, 1, &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page1) != 3 || resp.NextPage != 2 || page1[0].GetID() != seed.ID || page1[1].GetUser().GetLogin() != s.BotLogin() {
		t.Errorf("page 1: %d comments, next %d, first %d by %s", len(page1), resp.NextPage, page1[0].GetID(), page1[1].GetUser().GetLogin())
	}
	page2, resp, err := c.Issues.ListComments(ctx, owner, name, 1, &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 3, Page: 2}})
	if err != nil || len(page2) != 1 || resp.NextPage != 0 {
		t.Errorf("page 2: %d comments, next %d, err %v", len(page2), resp.NextPage, err)
	}
	mine := page1[1].GetID()
	if _, _, err := c.Issues.EditComment(ctx, owner, name, mine, &github.IssueComment{Body: github.String("edited")}); err != nil {
		t.Fatal(err)
	}
	if got := s.Comments(repo, 1)[1]; got.Body != "edited" || got.Edits != 1 {
		t.Errorf("edited comment = %+v", got)
	}

	steps := []struct {
		client  *github.Client
		content string
		status  int
	}{
		{c, "eyes", 201},
		{c, "eyes", 200}, // the same reaction again is not added twice
		{c, "rocket", 201},
		{client(t, s, "workflow-token"), "eyes", 201}, // another user
	}
	for _, st := range steps {
		_, resp, err := st.client.Reactions.CreateIssueCommentReaction(ctx, owner, name, seed.ID, st.content)
		if err != nil || resp.StatusCode != st.status {
			t.Errorf("reaction %s: status %v, err %v, want %d", st.content, resp.StatusCode, err, st.status)
		}
	}
	if got := strings.Join(s.Reactions(seed.ID), ","); got != "eyes,rocket,eyes" {
		t.Errorf("reactions = %s", got)
	}
	if _, resp, _ := c.Reactions.CreateIssueCommentReaction(ctx, owner, name, 1, "eyes"); resp.StatusCode != 404 {
		t.Errorf("reaction on an unknown comment: %d, want 404", resp.StatusCode)
	}
}

func TestDeployments(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()
	if _, _, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{Name: "sluice / hello", HeadSHA: headSHA, Status: github.String("in_progress")}); err != nil {
		t.Fatal(err)
	}
	env := "pr-1"
	_, resp, err := c.Repositories.CreateDeployment(ctx, owner, name, &github.DeploymentRequest{Ref: github.String(headSHA), Environment: &env})
	if err == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("deployment while checks are pending and no required_contexts: %v, want 409", err)
	}
	var ids []int64
	for range 2 {
		d, _, err := c.Repositories.CreateDeployment(ctx, owner, name, &github.DeploymentRequest{
			Ref: github.String(headSHA), Environment: &env, RequiredContexts: &[]string{}, AutoMerge: github.Bool(false),
			Payload: map[string]string{"version": "hello-004"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if d.GetSHA() != headSHA || d.GetEnvironment() != env || d.GetCreator().GetLogin() != s.BotLogin() {
			t.Errorf("deployment = %+v", d)
		}
		if _, _, err := c.Repositories.CreateDeploymentStatus(ctx, owner, name, d.GetID(), &github.DeploymentStatusRequest{
			State: github.String("success"), EnvironmentURL: github.String("http://hello-004.hello.localhost/"),
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.GetID())
	}
	first := s.DeploymentStatuses(repo, ids[0])
	if len(first) != 2 || first[0].State != "success" || first[1].State != "inactive" {
		t.Errorf("first deployment statuses = %+v, want success then inactive", first)
	}
	if second := s.DeploymentStatuses(repo, ids[1]); len(second) != 1 || second[0].EnvironmentURL != "http://hello-004.hello.localhost/" {
		t.Errorf("second deployment statuses = %+v", second)
	}
	list, _, err := c.Repositories.ListDeployments(ctx, owner, name, &github.DeploymentsListOptions{Environment: env})
	if err != nil || len(list) != 2 || list[0].GetID() != ids[1] {
		t.Errorf("list = %d deployments (err %v), want 2, newest first", len(list), err)
	}
	if got := s.Deployments(repo); len(got) != 2 || string(got[0].Payload) != `{"version":"hello-004"}` {
		t.Errorf("stored deployments = %+v", got)
	}
}

func TestContentsCommitsAndCompare(t *testing.T) {
	_, s := setup(t)
	c := client(t, s, s.InstallationToken(1))
	ctx := context.Background()

	f, _, _, err := c.Repositories.GetContents(ctx, owner, name, ".github/deploy.yml", &github.RepositoryContentGetOptions{Ref: "feature/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.GetContent(); err != nil || got != "x: 1\n" {
		t.Errorf("content = %q, %v", got, err)
	}
	if _, _, resp, err := c.Repositories.GetContents(ctx, owner, name, ".github/deploy.yml", nil); err == nil || resp.StatusCode != 404 {
		t.Errorf("file absent from the default branch: %v, want 404", err)
	}
	_, dir, _, err := c.Repositories.GetContents(ctx, owner, name, "bin", &github.RepositoryContentGetOptions{Ref: headSHA})
	if err != nil || len(dir) != 1 || dir[0].GetName() != "start.sh" {
		t.Errorf("directory listing = %v, %v", dir, err)
	}

	cmp, _, err := c.Repositories.CompareCommits(ctx, owner, name, "main", "feature/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, f := range cmp.Files {
		changed = append(changed, f.GetStatus()+":"+f.GetFilename())
	}
	if cmp.GetStatus() != "ahead" || cmp.GetAheadBy() != 1 ||
		strings.Join(changed, " ") != "added:.github/deploy.yml added:bin/start.sh modified:sluice.yaml" {
		t.Errorf("compare: %s ahead %d, files %v", cmp.GetStatus(), cmp.GetAheadBy(), changed)
	}

	files, _, err := c.PullRequests.ListFiles(ctx, owner, name, 1, nil)
	if err != nil || len(files) != 3 {
		t.Errorf("PR files = %d, %v, want 3", len(files), err)
	}

	// Equal trees give equal tree SHAs (a merge equal to a PR head).
	merge := "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
	s.SetCommit(repo, merge, map[string]string{
		"sluice.yaml": "services: {hello: {run: ./app}}\n", "README.md": "hi\n",
		".github/deploy.yml": "x: 1\n", "bin/start.sh": "#!/bin/sh\necho hi\n",
	})
	a, _, err := c.Repositories.GetCommit(ctx, owner, name, headSHA, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := c.Repositories.GetCommit(ctx, owner, name, merge, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetCommit().GetTree().GetSHA() != b.GetCommit().GetTree().GetSHA() || len(a.Files) != 3 {
		t.Errorf("trees %s vs %s, files %d", a.GetCommit().GetTree().GetSHA(), b.GetCommit().GetTree().GetSHA(), len(a.Files))
	}
}

func TestRequestsRecordCredentials(t *testing.T) {
	_, s := setup(t)
	tok := s.InstallationToken(1)
	if _, _, err := client(t, s, tok).PullRequests.Get(context.Background(), owner, name, 1); err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || reqs[0].Operation != "pulls/get" || reqs[0].Authorization != "Bearer "+tok ||
		reqs[0].Path != "/repos/"+repo+"/pulls/1" || reqs[0].Status != 200 {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestDelivery(t *testing.T) {
	body := githubtest.Fixture(t, "issue_comment.created.pull_request")
	var payload struct {
		Comment struct {
			ID   int64  `json:"id"`
			Body string `json:"body"`
		} `json:"comment"`
	}
	if err := json.Unmarshal(body, &payload); err != nil || payload.Comment.ID != 492700400 {
		t.Fatalf("fixture: %v, comment %d", err, payload.Comment.ID)
	}
	secret := []byte("It's a Secret to Everybody")
	if got := githubtest.Sign(secret, []byte("Hello, World!")); got != "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" {
		t.Errorf("Sign = %s, want GitHub's test vector", got)
	}
	a := githubtest.Delivery(t, "http://127.0.0.1:1/webhooks/github", "issue_comment", body, secret)
	b := githubtest.Delivery(t, "http://127.0.0.1:1/webhooks/github", "issue_comment", body, secret, githubtest.WithDeliveryID("d-1"))
	sent, err := io.ReadAll(a.Body)
	if err != nil || !bytes.Equal(sent, body) {
		t.Errorf("body changed: %v", err)
	}
	checks := map[string]string{
		"X-GitHub-Event":      "issue_comment",
		"X-Hub-Signature-256": githubtest.Sign(secret, body),
		"Content-Type":        "application/json",
	}
	for h, want := range checks {
		if got := a.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if id := a.Header.Get("X-GitHub-Delivery"); len(id) != 36 || id == b.Header.Get("X-GitHub-Delivery") || b.Header.Get("X-GitHub-Delivery") != "d-1" {
		t.Errorf("delivery ids %q and %q", id, b.Header.Get("X-GitHub-Delivery"))
	}
	c := githubtest.Delivery(t, "http://127.0.0.1:1/", "push", body, secret, githubtest.WithHeader("X-Hub-Signature-256", ""))
	if _, ok := c.Header["X-Hub-Signature-256"]; ok {
		t.Error("WithHeader did not remove the signature")
	}
}

// The App's webhook deliveries: SendWebhook delivers signed and records
// the attempt (a failure as GitHub records one); the list is newest first
// with a cursor in the Link header; a redelivery keeps the GUID and
// reaches the webhook before the 202 is answered.
func TestHookDeliveries(t *testing.T) {
	rt, s := setup(t)
	var (
		mu   sync.Mutex
		got  []string
		fail = true
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Hub-Signature-256") != githubtest.Sign([]byte("s"), body) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got = append(got, r.Header.Get("X-GitHub-Event")+" "+r.Header.Get("X-GitHub-Delivery"))
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()

	lost := s.SendWebhook("push", []byte(`{"installation":{"id":1},"repository":{"id":186853002}}`))
	if lost.StatusCode != http.StatusBadGateway || lost.Status != "failed to connect" {
		t.Fatalf("delivery without a webhook: %+v", lost)
	}
	s.SetWebhook(hook.URL, []byte("s"))
	refused := s.SendWebhook("issue_comment", []byte(`{"action":"created"}`))
	mu.Lock()
	fail = false
	mu.Unlock()
	ok := s.SendWebhook("ping", []byte(`{}`))
	if refused.StatusCode != 500 || ok.StatusCode != 202 {
		t.Fatalf("statuses: %d %d", refused.StatusCode, ok.StatusCode)
	}

	now := time.Now()
	app := client(t, s, jwt(t, key(t), fmt.Sprint(appID), now.Add(-30*time.Second), now.Add(5*time.Minute)))
	ctx := context.Background()
	var listed []*github.HookDelivery
	opts := &github.ListCursorOptions{PerPage: 2}
	for pages := 0; ; pages++ {
		ds, resp, err := app.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, ds...)
		if resp.Cursor == "" {
			if pages != 1 {
				t.Fatalf("3 deliveries by 2 took %d pages", pages+1)
			}
			break
		}
		opts.Cursor = resp.Cursor
	}
	if len(listed) != 3 || listed[0].GetGUID() != ok.GUID || listed[2].GetGUID() != lost.GUID ||
		listed[2].GetStatusCode() != 502 || listed[2].GetInstallationID() != 1 || listed[2].GetRepositoryID() != 186853002 {
		t.Fatalf("listed: %v", listed)
	}
	_, _, err := app.Apps.RedeliverHookDelivery(ctx, lost.ID)
	var accepted *github.AcceptedError
	if !errors.As(err, &accepted) {
		t.Fatalf("redelivery: %v, want 202", err)
	}
	mu.Lock()
	last := got[len(got)-1]
	mu.Unlock()
	if last != "push "+lost.GUID {
		t.Fatalf("redelivered as %q, want push %s", last, lost.GUID)
	}
	all := s.HookDeliveries()
	if re := all[len(all)-1]; !re.Redelivery || re.GUID != lost.GUID || re.StatusCode != 202 {
		t.Fatalf("redelivery recorded as %+v", re)
	}
	if _, _, err := app.Apps.RedeliverHookDelivery(ctx, 999999); err == nil {
		t.Fatal("redelivery of an unknown id succeeded")
	}
	if code := do(t, s, "GET", "/app/hook/deliveries", s.InstallationToken(1), ""); code != http.StatusUnauthorized {
		t.Fatalf("an installation token listed deliveries: %d", code)
	}
	if errs := rt.errors(); len(errs) != 0 {
		t.Fatalf("unexpected test failures: %q", errs)
	}
}

// The fake refuses, as GitHub does, text over GitHub's published limits —
// and the test that sent it fails.
func TestTextOverGitHubsLimitsIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		send func(c *github.Client, n int) error
		max  int
	}{
		{"check run summary", func(c *github.Client, n int) error {
			_, _, err := c.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{Name: "sluice / hello", HeadSHA: headSHA,
				Output: &github.CheckRunOutput{Title: github.String("t"), Summary: github.String(strings.Repeat("é", n))}})
			return err
		}, 65535},
		{"comment body", func(c *github.Client, n int) error {
			_, _, err := c.Issues.CreateComment(ctx, owner, name, 1, &github.IssueComment{Body: github.String(strings.Repeat("é", n))})
			return err
		}, 65536},
		{"deployment status description", func(c *github.Client, n int) error {
			d, _, err := c.Repositories.CreateDeployment(ctx, owner, name, &github.DeploymentRequest{Ref: github.String(headSHA),
				RequiredContexts: &[]string{}})
			if err != nil {
				return err
			}
			_, _, err = c.Repositories.CreateDeploymentStatus(ctx, owner, name, d.GetID(), &github.DeploymentStatusRequest{
				State: github.String("success"), Description: github.String(strings.Repeat("é", n))})
			return err
		}, 140},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, s := setup(t)
			c := client(t, s, s.InstallationToken(1))
			if err := tc.send(c, tc.max); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			if errs := rt.errors(); len(errs) != 0 {
				t.Fatalf("at the limit the test failed: %q", errs)
			}
			err := tc.send(c, tc.max+1)
			var er *github.ErrorResponse
			if !errors.As(err, &er) || er.Response.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("over the limit: %v, want 422", err)
			}
			if errs := rt.errors(); len(errs) != 1 {
				t.Fatalf("over the limit the test must fail once, got %q", errs)
			}
		})
	}
}
