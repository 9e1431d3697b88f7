package bot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
)

// commentOn is comment() on pull request pr.
func commentOn(t *testing.T, pr int, body string, id int64, login string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(comment(t, body, id, login), &m); err != nil {
		t.Fatal(err)
	}
	m["issue"].(map[string]any)["number"] = pr
	out, _ := json.Marshal(m)
	return out
}

// noReadRetries restarts the world with a GitHub client that tries every
// read once, so a failing GitHub call fails the delivery at once.
func (w *world) noReadRetries() {
	w.t.Helper()
	f, err := ghapp.New(ghapp.Config{AppID: appID, PrivateKey: w.pemKey, APIURL: w.gh.URL(), Retry: ghapp.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		w.t.Fatal(err)
	}
	w.stop()
	w.start(f)
}

func (w *world) pending() string {
	w.t.Helper()
	left, err := w.bot.Pending()
	if err != nil {
		w.t.Fatal(err)
	}
	return left
}

// Every fixture goes through the real inbox while GitHub answers 404 to
// the first one's permission lookup: that delivery ends with a reply on
// its PR saying why, and the others are handled in the same round — no
// retry, no backoff, nothing left waiting.
func TestEveryFixtureIsHandledWhileOneGets404(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.FailRoute("GET", "/repos/"+repo+"/collaborators/Codertocat/", 100, http.StatusNotFound, nil)
	for _, f := range []struct{ event, file string }{
		{"issue_comment", "issue_comment.created.pull_request.json"},
		{"pull_request", "pull_request.closed.merged.json"},
		{"push", "push.json"},
		{"check_run", "check_run.rerequested.json"},
		{"installation", "installation.created.json"},
	} {
		if code := w.deliver(f.event, githubtest.Fixture(t, f.file)); code != http.StatusAccepted {
			t.Fatalf("%s answered %d", f.event, code)
		}
	}
	w.sync() // the clock does not move: nothing may wait for a retry
	if left := w.pending(); left != "" {
		t.Fatalf("still pending: %s", left)
	}
	if st := w.status(); st.Stable != "hello-001" || st.Versions[0].Status != rollout.StatusNormal {
		t.Fatalf("the push behind the failing comment was not deployed: %+v", st)
	}
	if cs := checksOn(w.gh, mainSHA); len(cs) != 1 || cs[0].Conclusion != "success" {
		t.Fatalf("merge check runs: %+v", cs)
	}
	s := w.sticky().Body
	if !strings.Contains(s, "was not handled") || !strings.Contains(s, "404 Not Found") || !strings.Contains(s, "/collaborators/Codertocat/permission") {
		t.Fatalf("the failed comment's reply does not say why: %s", s)
	}
	if got := w.gh.Reactions(commentN); strings.Join(got, ",") != "eyes,confused" {
		t.Fatalf("reactions: %v", got)
	}
	if st := w.status(); st.Policy.Split["hello-001"] != 100 || len(st.Versions) != 1 {
		t.Fatalf("the refused comment changed traffic: %+v", st.Policy)
	}
}

// A delivery that keeps failing for a reason that may pass (GitHub 502)
// holds up only its own pull request: another PR's command runs at once,
// a later command on the same PR waits its turn, 👀 is posted once however
// often it is retried, and when GitHub recovers both run in order.
func TestAStuckDeliveryHoldsOnlyItsOwnPullRequest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.noReadRetries()
	w.mergeMain()
	w.gh.SetPR(repo, 2, headSHA, "changes")
	w.gh.SetPermission(repo, "alice", githubtest.PermWrite)
	w.gh.FailRoute("GET", "/repos/"+repo+"/collaborators/alice/", 3, http.StatusBadGateway, nil)

	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 7001, User: "alice", Body: "/deploy"})
	w.deliver("issue_comment", commentOn(t, 1, "/deploy", 7001, "alice"))
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 7002, User: "Codertocat", Body: "/status"})
	w.deliver("issue_comment", commentOn(t, 1, "/status", 7002, "Codertocat"))
	w.gh.AddComment(repo, 2, githubtest.Comment{ID: 7003, User: "Codertocat", Body: "/deploy"})
	w.deliver("issue_comment", commentOn(t, 2, "/deploy", 7003, "Codertocat"))
	w.sync()

	if got := w.gh.Reactions(7003); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("PR 2 waited behind PR 1's failing delivery: reactions %v", got)
	}
	if got := w.gh.Reactions(7002); len(got) != 0 {
		t.Fatalf("PR 1's second command ran before its first: reactions %v", got)
	}
	for i := 0; i < 10 && w.pending() != ""; i++ {
		w.clock.add(10 * time.Minute)
		w.sync()
	}
	if got := w.gh.Reactions(7001); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("the retried command: reactions %v (👀 must be posted once)", got)
	}
	if got := w.gh.Reactions(7002); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("the command behind it: reactions %v", got)
	}
	var eyes int
	for _, r := range w.gh.Requests() {
		if r.Operation == "reactions/create-for-issue-comment" && strings.Contains(r.Path, "/7001/") && strings.Contains(string(r.Body), "eyes") {
			eyes++
		}
	}
	if eyes != 1 {
		t.Fatalf("👀 requested %d times for one comment", eyes)
	}
}

// A signed body re-sent under a new delivery id runs nothing again: a
// comment is known by its id and edit time, a push by repository, ref and
// the commits it moves between.
func TestReplayedDeliveriesRunOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// main moves from an earlier commit to mainSHA, whose sluice.yaml
	// deploys merges as canaries (so the replayed push would build again).
	first := "1111111111111111111111111111111111111111"
	w.gh.SetCommit(repo, first, map[string]string{"sluice.yaml": appYAML(t), "README.md": "first\n"})
	w.gh.SetCommit(repo, mainSHA, map[string]string{"sluice.yaml": strings.Replace(appYAML(t), "    timeouts:", "    on_merge: canary\n    timeouts:", 1), "README.md": "main\n"})
	w.deliver("push", pushOf(t, first))
	w.sync()
	w.mergeMain()
	if st := w.status(); len(st.Versions) != 2 {
		t.Fatalf("after two merges: %d versions", len(st.Versions))
	}
	if code := w.deliver("push", githubtest.Fixture(t, "push.json"), githubtest.WithDeliveryID("replayed-push")); code != http.StatusAccepted {
		t.Fatalf("replayed push answered %d", code)
	}
	w.sync()
	if st := w.status(); len(st.Versions) != 2 {
		t.Fatalf("a replayed push built again: %d versions", len(st.Versions))
	}

	w.say("/deploy", "Codertocat")
	w.say("/promote", "Codertocat")
	id := w.say("/rollback", "Codertocat")
	events, err := w.eng.Events(context.Background(), "hello", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	before := w.sticky().Body
	w.deliver("issue_comment", comment(t, "/rollback", id, "Codertocat"), githubtest.WithDeliveryID("replayed-comment"))
	w.sync()
	after, err := w.eng.Events(context.Background(), "hello", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(events) || w.sticky().Body != before {
		t.Fatalf("a replayed comment ran again: %d events before, %d after", len(events), len(after))
	}
}

// predictPanics is the real engine whose Predict panics, standing for a
// bug in any handler.
type predictPanics struct {
	*rollout.Engine
	calls atomic.Int32
}

func (e *predictPanics) Predict(ctx context.Context, service, query string) (rollout.Prediction, error) {
	e.calls.Add(1)
	panic("predict exploded")
}

// A handler that panics fails its delivery — logged with the delivery id,
// answered on the PR — while the server keeps running, later deliveries
// are handled, and a restart does not run the delivery again.
func TestAPanickingHandlerFailsOnlyItsDelivery(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	eng := &predictPanics{Engine: w.eng}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	b := bot.New(eng, w.db, w.f, bot.Config{WebhookSecret: secret}, bot.WithLogger(log))
	runAll := func(b *bot.Bot) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 8001, User: "Codertocat", Body: "/predict env=beta"})
	if code, _, err := b.Accept("issue_comment", "panicking-delivery", comment(t, "/predict env=beta", 8001, "Codertocat")); err != nil || code != http.StatusAccepted {
		t.Fatalf("accept: %d %v", code, err)
	}
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 8002, User: "Codertocat", Body: "/status"})
	b.Accept("issue_comment", "next-delivery", comment(t, "/status", 8002, "Codertocat"))
	runAll(b)
	if left, err := b.Pending(); err != nil || left != "" {
		t.Fatalf("pending after the panic: %q %v", left, err)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if !strings.Contains(text, "panicked") || !strings.Contains(text, "delivery=panicking-delivery") {
		t.Fatalf("the panic is not logged with its delivery id:\n%s", text)
	}
	if got := w.gh.Reactions(8001); strings.Join(got, ",") != "eyes,confused" {
		t.Fatalf("reactions of the panicking command: %v", got)
	}
	if s := w.sticky().Body; !strings.Contains(s, "failed internally") {
		t.Fatalf("no reply on the PR: %s", s)
	}
	if got := w.gh.Reactions(8002); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("the next command: reactions %v", got)
	}
	// A restart finds nothing to run again.
	again := bot.New(eng, w.db, w.f, bot.Config{WebhookSecret: secret})
	runAll(again)
	if n := eng.calls.Load(); n != 1 {
		t.Fatalf("the panicking handler ran %d times", n)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A sluice.yaml with many problems, on a merge: each service it means gets
// its own failed `sluice / <name>` check run (a required check names the
// service), with every reported problem annotated over successive
// requests of 50 and a summary GitHub accepts.
func TestBrokenManifestWithManyProblemsFailsEachServicesCheck(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var y strings.Builder
	y.WriteString("services:\n  web:\n    run: ./web\n")
	for i := range 260 {
		fmt.Fprintf(&y, "    %s%03d: 1\n", strings.Repeat("unknown_field_", 24), i)
	}
	y.WriteString("  worker:\n    run: ./worker\n    instances: lots\n")
	w.gh.SetCommit(repo, mainSHA, map[string]string{"sluice.yaml": y.String()})
	w.mergeMain()
	cs := checksOn(w.gh, mainSHA)
	if len(cs) != 2 || cs[0].Name != "sluice / web" || cs[1].Name != "sluice / worker" {
		t.Fatalf("check runs: %d %v", len(cs), names(cs))
	}
	for _, c := range cs {
		if c.Conclusion != "failure" || len(c.Output.Annotations) != 200 || len(c.Output.Summary) > 65535 ||
			!strings.Contains(c.Output.Summary, "InvalidManifest") {
			t.Fatalf("%s: %s, %d annotations, summary of %d bytes", c.Name, c.Conclusion, len(c.Output.Annotations), len(c.Output.Summary))
		}
	}
	if !strings.Contains(cs[0].Output.Summary, "more problems") && !strings.Contains(cs[0].Output.Summary, "truncated") {
		t.Fatalf("the summary does not say that problems were left out")
	}
}

func names(cs []githubtest.CheckRun) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// deploymentState is the latest status of the deployment of environment env.
func (w *world) deploymentState(env string) string {
	w.t.Helper()
	state := ""
	for _, d := range w.gh.Deployments(repo) {
		if d.Environment != env {
			continue
		}
		sts := w.gh.DeploymentStatuses(repo, d.ID)
		state = "none"
		if len(sts) > 0 {
			state = sts[len(sts)-1].State
		}
	}
	return state
}

// A PR version stopped by the PR closing, or retired for idling, shows
// its GitHub deployment inactive; started again by a rollback, success.
func TestStoppedVersionsDeploymentsGoInactive(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.say("/deploy", "Codertocat")
	if got := w.deploymentState("pr-1"); got != "success" {
		t.Fatalf("pr-1 deployment after /deploy: %s", got)
	}
	if _, err := w.eng.Retire(context.Background(), "hello", 0, rollout.Origin{Via: "sluice", Actor: "retire", Principal: rollout.AdminPrincipal}); err != nil {
		t.Fatal(err)
	}
	w.sync()
	if st := w.status(); st.Versions[1].Status != rollout.StatusStopped {
		t.Fatalf("not retired: %s", st.Versions[1].Status)
	}
	if got := w.deploymentState("pr-1"); got != "inactive" {
		t.Fatalf("pr-1 deployment of a retired version: %s", got)
	}
	w.say("/rollback hello-002", "Codertocat")
	if got := w.deploymentState("pr-1"); got != "success" {
		t.Fatalf("pr-1 deployment of a version started again: %s", got)
	}
	w.say("/abort", "Codertocat")
	w.say("/rollback hello-001", "Codertocat")
	var pr map[string]any
	json.Unmarshal(githubtest.Fixture(t, "pull_request.closed.merged.json"), &pr)
	pr["number"] = 1
	pr["pull_request"].(map[string]any)["merged"] = false
	b, _ := json.Marshal(pr)
	w.deliver("pull_request", b)
	w.sync()
	if st := w.status(); st.Versions[1].Status != rollout.StatusStopped {
		t.Fatalf("closing the PR did not stop its version: %s (%+v)", st.Versions[1].Status, st.Policy)
	}
	if got := w.deploymentState("pr-1"); got != "inactive" {
		t.Fatalf("pr-1 deployment after the PR closed: %s", got)
	}
}

// A person's comment that starts with sluice's marker is never taken for
// the sticky comment: sluice writes its own and leaves theirs alone.
func TestStickyCommentIsOnlySluicesOwn(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	mine := w.gh.AddComment(repo, 1, githubtest.Comment{ID: 9001, User: "Codertocat", Body: render.Marker + "\nmy notes"})
	w.say("/status", "Codertocat")
	var sluices int
	for _, c := range w.gh.Comments(repo, 1) {
		switch {
		case c.ID == mine.ID && (c.Edits != 0 || c.Body != mine.Body):
			t.Fatalf("sluice overwrote a person's comment: %q", c.Body)
		case c.User == w.gh.BotLogin() && strings.HasPrefix(c.Body, render.Marker):
			sluices++
		}
	}
	if sluices != 1 {
		t.Fatalf("sluice's sticky comments: %d", sluices)
	}
	// A later command edits sluice's comment, not the person's.
	w.say("/help", "Codertocat")
	for _, c := range w.gh.Comments(repo, 1) {
		if c.ID == mine.ID && c.Edits != 0 {
			t.Fatalf("sluice edited a person's comment")
		}
	}
}
