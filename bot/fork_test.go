package bot_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
)

const (
	forkRepo = "mallory/Hello-World"
	forkPR   = 7
	forkSHA  = "fa11fa11fa11fa11fa11fa11fa11fa11fa11fa11"
	movedSHA = "bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0"
)

// forkWorld is newWorld plus pull request forkPR from mallory's fork, whose
// own sluice.yaml says "forks: allow". The base repository's main says so
// only when allow is set. mallory can only read the base repository.
func forkWorld(t *testing.T, allow bool) *world {
	w := newWorld(t)
	base := appYAML(t)
	if allow {
		base += "forks: allow\n"
	}
	w.gh.SetCommit(repo, mainSHA, map[string]string{"sluice.yaml": base, "README.md": "main\n"})
	w.gh.SetBranch(repo, "main", mainSHA)
	w.gh.AddRepo(forkRepo, githubtest.RepoOpts{})
	for _, sha := range []string{forkSHA, movedSHA} {
		w.gh.SetCommit(repo, sha, map[string]string{"sluice.yaml": appYAML(t) + "forks: allow\n", "README.md": sha + "\n"})
	}
	w.gh.SetForkPR(repo, forkPR, forkRepo, forkSHA, "patch")
	w.gh.SetPermission(repo, "mallory", githubtest.PermRead)
	return w
}

// forkEvent delivers pull_request/action for the fork's PR as GitHub sends
// it when the head arrives, and returns the head's arrival time.
func (w *world) forkEvent(action, sha string) time.Time {
	w.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(githubtest.Fixture(w.t, "pull_request.closed.merged.json"), &m); err != nil {
		w.t.Fatal(err)
	}
	at := w.gh.PRUpdatedAt(repo, forkPR)
	pr := m["pull_request"].(map[string]any)
	m["action"], m["number"] = action, forkPR
	pr["number"], pr["merged"], pr["state"], pr["updated_at"] = forkPR, false, "open", at.Format(time.RFC3339)
	head := pr["head"].(map[string]any)
	head["sha"] = sha
	head["repo"].(map[string]any)["full_name"] = forkRepo
	body, _ := json.Marshal(m)
	if code := w.deliver("pull_request", body); code != http.StatusAccepted {
		w.t.Fatalf("pull_request answered %d", code)
	}
	w.sync()
	return at
}

// sayOnFork posts a command comment on the fork's PR, written at written.
func (w *world) sayOnFork(body, login string, written time.Time) int64 {
	w.t.Helper()
	w.comments++
	id := int64(7000 + w.comments)
	w.gh.AddComment(repo, forkPR, githubtest.Comment{ID: id, User: login, Body: body, CreatedAt: written})
	var m map[string]any
	if err := json.Unmarshal(comment(w.t, body, id, login), &m); err != nil {
		w.t.Fatal(err)
	}
	m["issue"].(map[string]any)["number"] = forkPR
	c := m["comment"].(map[string]any)
	c["created_at"], c["updated_at"] = written.Format(time.RFC3339), written.Format(time.RFC3339)
	out, _ := json.Marshal(m)
	if code := w.deliver("issue_comment", out); code != http.StatusAccepted {
		w.t.Fatalf("delivery answered %d", code)
	}
	w.sync()
	return id
}

// forkSticky is sluice's comment on the fork's PR.
func (w *world) forkSticky() string {
	w.t.Helper()
	for _, c := range w.gh.Comments(repo, forkPR) {
		if strings.HasPrefix(c.Body, render.Marker) {
			return c.Body
		}
	}
	w.t.Fatal("no sluice comment on the fork's pull request")
	return ""
}

// fetched reports whether sluice downloaded the source of sha.
func fetched(gh *githubtest.Server, sha string) bool {
	for _, r := range gh.Requests() {
		if strings.Contains(r.Path, "/tarball/"+sha) {
			return true
		}
	}
	return false
}

// versionsFrom lists the refs of hello's versions (none when hello does
// not exist).
func (w *world) versionsFrom() []string {
	st, err := w.eng.Status(context.Background(), "hello")
	if err != nil {
		return nil
	}
	var refs []string
	for _, v := range st.Versions {
		refs = append(refs, v.CreatedBy.Ref)
	}
	return refs
}

func TestForkPullRequestIsNotBuiltUnlessTheBaseOptsIn(t *testing.T) {
	t.Parallel()
	w := forkWorld(t, false)
	at := w.forkEvent("opened", forkSHA)

	// The fork's author, without write permission, asks for a deploy.
	w.sayOnFork("/deploy", "mallory", at.Add(time.Second))
	if s := w.forkSticky(); !strings.Contains(s, "Refused") {
		t.Fatalf("mallory was not refused:\n%s", s)
	}
	// A maintainer asks too: the fork's own "forks: allow" does not count.
	id := w.sayOnFork("/deploy", "Codertocat", at.Add(2*time.Second))
	if refs := w.versionsFrom(); len(refs) != 0 || fetched(w.gh, forkSHA) {
		t.Fatalf("the fork was fetched or built: versions from %v", refs)
	}
	if s := w.forkSticky(); !strings.Contains(s, "from the fork "+forkRepo) || !strings.Contains(s, "forks: allow") {
		t.Fatalf("the reply does not say why:\n%s", s)
	}
	if r := w.gh.Reactions(id); r[len(r)-1] != "confused" {
		t.Fatalf("reactions: %v", r)
	}
	cs := checksOn(w.gh, forkSHA)
	if len(cs) != 1 || cs[0].Name != "sluice" || cs[0].Conclusion != "neutral" || !strings.Contains(cs[0].Output.Summary, "forks: allow") {
		t.Fatalf("check runs on the fork's head: %+v", cs)
	}
}

func TestForkPullRequestAfterOptInBuildsOnlyTheHeadTheCommenterSaw(t *testing.T) {
	t.Parallel()
	w := forkWorld(t, true)
	w.mergeMain()
	at := w.forkEvent("opened", forkSHA)

	// Still no one without write permission.
	w.sayOnFork("/deploy", "mallory", at.Add(time.Second))
	if refs := w.versionsFrom(); len(refs) != 1 || fetched(w.gh, forkSHA) {
		t.Fatalf("mallory's command built something: versions from %v", refs)
	}

	// A maintainer who saw forkSHA: it is built, at exactly that commit.
	w.sayOnFork("/deploy", "Codertocat", at.Add(time.Second))
	refs := w.versionsFrom()
	if len(refs) != 2 || refs[1] != forkSHA {
		t.Fatalf("versions from %v, want the fork's head %s second", refs, forkSHA)
	}
	if st := w.status(); st.Versions[1].Status != rollout.StatusNormal {
		t.Fatalf("fork version: %s %+v", st.Versions[1].Status, st.Versions[1].Reason)
	}

	// mallory pushes; GitHub has not told sluice yet when the maintainer's
	// next command (written before the push) is handled.
	w.gh.SetForkPR(repo, forkPR, forkRepo, movedSHA, "patch")
	moved := w.gh.PRUpdatedAt(repo, forkPR)
	w.sayOnFork("/canary 50%", "Codertocat", moved.Add(-time.Second))
	if s := w.forkSticky(); !strings.Contains(s, "has not seen") {
		t.Fatalf("a head sluice has not seen arrive was not refused:\n%s", s)
	}
	// GitHub's synchronize arrives; a command written before the push is
	// still refused.
	w.forkEvent("synchronize", movedSHA)
	w.sayOnFork("/deploy", "Codertocat", moved.Add(-time.Second))
	if s := w.forkSticky(); !strings.Contains(s, "after this comment") {
		t.Fatalf("a head pushed after the comment was not refused:\n%s", s)
	}
	if refs := w.versionsFrom(); len(refs) != 2 || fetched(w.gh, movedSHA) {
		t.Fatalf("the moved head was fetched or built: versions from %v", refs)
	}
	if st := w.status(); st.Policy.Split[st.Versions[1].Name] != 0 {
		t.Fatalf("traffic moved: %v", st.Policy.Split)
	}
	cs := checksOn(w.gh, movedSHA)
	if len(cs) != 1 || cs[0].Conclusion != "neutral" {
		t.Fatalf("check runs on the moved head: %+v", cs)
	}

	// Once the maintainer comments after seeing it, the new head is built.
	w.sayOnFork("/deploy", "Codertocat", moved.Add(time.Second))
	if refs := w.versionsFrom(); len(refs) != 3 || refs[2] != movedSHA {
		t.Fatalf("versions from %v, want the new head %s third", refs, movedSHA)
	}
}

// rerun delivers check_run.rerequested ("Re-run") on the check of version,
// built from sha, pressed by login.
func (w *world) rerun(version, sha, login string) {
	w.t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(githubtest.Fixture(w.t, "check_run.rerequested.json"), &ev); err != nil {
		w.t.Fatal(err)
	}
	cr := ev["check_run"].(map[string]any)
	cr["external_id"], cr["head_sha"], cr["name"] = version, sha, "sluice / hello"
	ev["sender"].(map[string]any)["login"] = login
	b, _ := json.Marshal(ev)
	if code := w.deliver("check_run", b); code != http.StatusAccepted {
		w.t.Fatalf("check_run answered %d", code)
	}
	w.sync()
}

// TestRerunOfAForkVersionAsksTheBaseAgain: "Re-run" on the check of a
// fork's version builds the fork again only while the base repository's
// default branch still says `forks: allow`; once the opt-in is withdrawn
// the re-run is refused, nothing is fetched or built, and the pull request
// and a neutral check run say why.
func TestRerunOfAForkVersionAsksTheBaseAgain(t *testing.T) {
	t.Parallel()
	w := forkWorld(t, true)
	w.mergeMain()
	at := w.forkEvent("opened", forkSHA)
	w.sayOnFork("/deploy", "Codertocat", at.Add(time.Second))
	if refs := w.versionsFrom(); len(refs) != 2 || refs[1] != forkSHA {
		t.Fatalf("versions from %v, want the fork's head second", refs)
	}
	fork := w.status().Versions[1].Name

	// While the base opts in, a maintainer's re-run builds the fork again.
	w.rerun(fork, forkSHA, "Codertocat")
	if refs := w.versionsFrom(); len(refs) != 3 || refs[2] != forkSHA {
		t.Fatalf("re-run with forks: allow: versions from %v, want a third from %s", refs, forkSHA)
	}

	// The base withdraws the opt-in; the same button now builds nothing.
	withdrawn := "0123456789abcdef0123456789abcdef01234567"
	w.gh.SetCommit(repo, withdrawn, map[string]string{"sluice.yaml": appYAML(t), "README.md": "main\n"})
	w.gh.SetBranch(repo, "main", withdrawn)
	tarballs := func() int {
		n := 0
		for _, r := range w.gh.Requests() {
			if strings.Contains(r.Path, "/tarball/"+forkSHA) {
				n++
			}
		}
		return n
	}
	fetchedBefore, before := tarballs(), w.status()
	w.rerun(fork, forkSHA, "Codertocat")
	if after := w.status(); len(after.Versions) != len(before.Versions) || tarballs() != fetchedBefore {
		t.Fatalf("re-run after the opt-in was withdrawn: %d versions (was %d), tarball fetched %d times (was %d)",
			len(after.Versions), len(before.Versions), tarballs(), fetchedBefore)
	}
	if s := w.forkSticky(); !strings.Contains(s, "Re-run refused") || !strings.Contains(s, "forks: allow") {
		t.Fatalf("the pull request is not told why:\n%s", s)
	}
	var neutral bool
	for _, c := range checksOn(w.gh, forkSHA) {
		neutral = neutral || c.Name == "sluice" && c.Conclusion == "neutral" && strings.Contains(c.Output.Summary, "forks: allow")
	}
	if !neutral {
		t.Fatalf("no neutral check run naming forks: allow on %s: %+v", forkSHA, checksOn(w.gh, forkSHA))
	}
}
