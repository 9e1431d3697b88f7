package bot_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/bot/githubtest"
)

// A deployed app prints an env value whose name says nothing and a URL
// with credentials; neither reaches GitHub, in the check run or the PR's
// comment.
func TestSecretLookingValuesAndURLCredentialsNeverReachGitHub(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	y := "services:\n  hello:\n    run: echo \"upstream $UPSTREAM via https://deploy:Pa55-w0rd@registry.example.com/x mode $MODE\"; exit 1\n" +
		"    env: {UPSTREAM: Zk29-qq81-Lm, MODE: production}\n    timeouts: {start: 2s}\n"
	w.gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": y})
	w.say("/deploy", "Codertocat")
	cs := checksOn(w.gh, headSHA)
	if len(cs) != 1 || cs[0].Conclusion != "failure" {
		t.Fatalf("checks: %+v", cs)
	}
	for _, r := range w.gh.Requests() {
		if body := string(r.Body); strings.Contains(body, "Zk29-qq81-Lm") || strings.Contains(body, "Pa55-w0rd") {
			t.Fatalf("a secret went to GitHub in %s %s", r.Method, r.Path)
		}
	}
	if out := cs[0].Output.Text + cs[0].Output.Summary; !strings.Contains(out, "upstream *** via https://deploy:***@registry.example.com/x mode production") {
		t.Fatalf("log tail missing or redacted wrongly: %s", out)
	}
}

// The redaction set is read once per round, not once per PR entry, yet a
// version deployed during the round is in it: here one round first
// answers /help (reading the set before the version exists), then deploys
// a version whose env holds a secret and whose failure quotes it. The
// secret reaches GitHub nowhere: not in the sticky comment, not in the
// check run.
func TestASecretDeployedDuringTheRoundNeverReachesGitHub(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const leak = "Xq7-pp21-Wz9k"
	y := "services:\n  hello:\n    run: echo \"token $UPSTREAM\"; exit 1\n    env: {UPSTREAM: " + leak + "}\n    timeouts: {start: 2s}\n"
	w.gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": y})
	for _, c := range []struct {
		id   int64
		body string
	}{{9201, "/help"}, {9202, "/deploy"}} {
		w.gh.AddComment(repo, 1, githubtest.Comment{ID: c.id, User: "Codertocat", Body: c.body})
		if code := w.deliver("issue_comment", comment(t, c.body, c.id, "Codertocat")); code != http.StatusAccepted {
			t.Fatalf("%s answered %d", c.body, code)
		}
	}
	w.sync()
	for _, r := range w.gh.Requests() {
		if strings.Contains(string(r.Body), leak) {
			t.Fatalf("the secret went to GitHub in %s %s", r.Method, r.Path)
		}
	}
	if s := w.sticky().Body; !strings.Contains(s, "token ***") {
		t.Fatalf("the failure's log tail is not on the PR, redacted: %s", s)
	}
	if cs := checksOn(w.gh, headSHA); len(cs) != 1 || !strings.Contains(cs[0].Output.Text+cs[0].Output.Summary, "token ***") {
		t.Fatalf("checks: %+v", cs)
	}
}
