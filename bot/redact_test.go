package bot_test

import (
	"strings"
	"testing"
)

// A deployed app prints an env value whose name says nothing and a URL
// with credentials; neither reaches GitHub, in the check run or the PR's
// comment.
func TestSecretLookingValuesAndURLCredentialsNeverReachGitHub(t *testing.T) {
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
