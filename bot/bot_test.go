package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/store"
)

// The test binary doubles as the deployed app.
func TestMain(m *testing.M) {
	if os.Getenv("TESTAPP") != "" {
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getenv("SLUICE_VERSION")) })
		_ = http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const (
	repo     = "Codertocat/Hello-World"
	appID    = 29310
	mainSHA  = "6113728f27ae82c7b1a177c8d03f9e96e0adf246" // push.json "after"
	headSHA  = "ec26c3e57ca3a959ca5aad62de7213c562f8c821" // the PR head of the fixtures
	commentN = 492700400                                  // issue_comment fixture's comment id
)

var secret = []byte("webhook-secret-for-tests")

func appYAML(t *testing.T) string {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("services:\n  hello:\n    run: exec \"$APP\"\n    env: {TESTAPP: \"1\", APP: %q}\n    timeouts: {start: 5s}\n", bin)
}

// clock is a settable time source, so retry backoffs can be skipped.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// world is a real engine (bbolt, processes, router) with the bot in front
// of it, talking to a strict fake GitHub.
type world struct {
	t      *testing.T
	gh     *githubtest.Server
	eng    *rollout.Engine
	db     *store.DB
	bot    *bot.Bot
	hook   *httptest.Server
	router *enginetest.Front
	clock  *clock
	dir    string
	engine *enginetest.World
	f      bot.Clients
	pemKey []byte
	// comments numbers the command comments say posts.
	comments int
	// engineOpts are given to the engine at each start.
	engineOpts []rollout.Option
}

func newWorld(t *testing.T, engineOpts ...rollout.Option) *world {
	t.Helper()
	key, pemKey := githubtest.SharedKey(t)
	gh := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID))
	gh.AddRepo(repo, githubtest.RepoOpts{DefaultBranch: "main", InstallationID: 1})
	gh.SetCommit(repo, mainSHA, map[string]string{"sluice.yaml": appYAML(t), "README.md": "main\n"})
	gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": appYAML(t), "README.md": "pr\n"})
	gh.SetPR(repo, 1, headSHA, "changes")
	gh.SetPermission(repo, "Codertocat", githubtest.PermAdmin)
	gh.AddComment(repo, 1, githubtest.Comment{ID: commentN, User: "Codertocat", Body: "/canary 10%"})

	w := &world{t: t, gh: gh, clock: &clock{t: time.Now()}, dir: t.TempDir(), pemKey: pemKey, engineOpts: engineOpts}
	f, err := ghapp.New(ghapp.Config{AppID: appID, PrivateKey: pemKey, APIURL: gh.URL()})
	if err != nil {
		t.Fatal(err)
	}
	w.start(f)
	return w
}

// start builds engine and bot over w.dir (again, after stop: a restart).
func (w *world) start(f bot.Clients) {
	w.f = f
	w.engine = enginetest.New(w.t, w.dir, append([]rollout.Option{rollout.WithDrainGrace(time.Second)}, w.engineOpts...)...)
	w.eng, w.db, w.router = w.engine.Engine, w.engine.DB, w.engine.Server
	w.bot = bot.New(w.eng, w.db, f, bot.Config{WebhookSecret: secret, PublicURL: "https://sluice.example.com"}, bot.WithClock(w.clock.now))
	e := echo.New()
	w.bot.Register(e)
	w.hook = httptest.NewServer(e)
	w.t.Cleanup(w.hook.Close)
}

// stop shuts the bot's webhook and the engine down, as a stopping sluice.
func (w *world) stop() {
	w.hook.Close()
	w.engine.Close()
}

// deliver posts a signed delivery and returns the status code.
func (w *world) deliver(event string, body []byte, opts ...githubtest.DeliveryOption) int {
	w.t.Helper()
	req := githubtest.Delivery(w.t, w.hook.URL+"/webhooks/github", event, body, secret, opts...)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (w *world) sync() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.bot.Sync(ctx); err != nil {
		w.t.Fatal(err)
	}
}

// comment returns the issue_comment fixture with another body and id.
func comment(t *testing.T, body string, id int64, login string) []byte {
	var m map[string]any
	if err := json.Unmarshal(githubtest.Fixture(t, "issue_comment.created.pull_request.json"), &m); err != nil {
		t.Fatal(err)
	}
	c := m["comment"].(map[string]any)
	c["body"], c["id"] = body, id
	c["user"].(map[string]any)["login"] = login
	out, _ := json.Marshal(m)
	return out
}

// say posts a command comment by login and handles it.
func (w *world) say(body, login string) int64 {
	w.t.Helper()
	w.comments++
	id := int64(5000 + w.comments)
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: id, User: login, Body: body})
	if code := w.deliver("issue_comment", comment(w.t, body, id, login)); code != http.StatusAccepted {
		w.t.Fatalf("delivery answered %d", code)
	}
	w.sync()
	return id
}

// pushOf returns the push fixture moving main to sha.
func pushOf(t *testing.T, sha string) []byte {
	t.Helper()
	var push map[string]any
	if err := json.Unmarshal(githubtest.Fixture(t, "push.json"), &push); err != nil {
		t.Fatal(err)
	}
	push["after"] = sha
	b, _ := json.Marshal(push)
	return b
}

func (w *world) mergeMain() {
	w.t.Helper()
	if code := w.deliver("push", githubtest.Fixture(w.t, "push.json")); code != http.StatusAccepted {
		w.t.Fatalf("push answered %d", code)
	}
	w.sync()
}

func (w *world) status() rollout.ServiceStatus {
	w.t.Helper()
	st, err := w.eng.Status(context.Background(), "hello")
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) served(n int, query string) map[string]int {
	w.t.Helper()
	out := map[string]int{}
	c := &http.Client{Timeout: 5 * time.Second}
	for range n {
		req, _ := http.NewRequest("GET", w.router.URL+"/?"+query, nil)
		req.Host = "hello.localhost"
		resp, err := c.Do(req)
		if err != nil {
			w.t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out[resp.Header.Get("X-Sluice-Version")]++
	}
	return out
}

func (w *world) sticky() githubtest.Comment {
	w.t.Helper()
	var found []githubtest.Comment
	for _, c := range w.gh.Comments(repo, 1) {
		if strings.HasPrefix(c.Body, render.Marker) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		w.t.Fatalf("want one sticky comment, found %d", len(found))
	}
	return found[0]
}

func checksOn(gh *githubtest.Server, sha string) []githubtest.CheckRun {
	var out []githubtest.CheckRun
	for _, c := range gh.CheckRuns(repo) {
		if c.HeadSHA == sha {
			out = append(out, c)
		}
	}
	return out
}

func TestMergeDeploysThenCanaryFromAWriter(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	st := w.status()
	if st.Stable != "hello-001" || st.Policy.Split["hello-001"] != 100 {
		t.Fatalf("after merge: %+v", st.Policy)
	}
	if cs := checksOn(w.gh, mainSHA); len(cs) != 1 || cs[0].Name != "sluice / hello" || cs[0].Conclusion != "success" {
		t.Fatalf("merge check runs: %+v", cs)
	}
	if ds := w.gh.Deployments(repo); len(ds) != 1 || ds[0].Environment != "production" {
		t.Fatalf("deployments: %+v", ds)
	}

	w.deliver("issue_comment", githubtest.Fixture(t, "issue_comment.created.pull_request.json"))
	w.sync()
	st = w.status()
	if st.Policy.Split["hello-001"] != 90 || st.Policy.Split["hello-002"] != 10 {
		t.Fatalf("after /canary 10%%: %+v", st.Policy)
	}
	if got := w.gh.Reactions(commentN); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("reactions: %v", got)
	}
	cs := checksOn(w.gh, headSHA)
	if len(cs) != 1 || cs[0].Conclusion != "success" || cs[0].ExternalID != "hello-002" || !strings.Contains(cs[0].Output.Summary, "hello-002") {
		t.Fatalf("PR check runs: %+v", cs)
	}
	if cs[0].DetailsURL != "https://sluice.example.com/dashboard/services/hello#hello-002" {
		t.Fatalf("details_url: %s", cs[0].DetailsURL)
	}
	if s := w.sticky(); !strings.Contains(s.Body, "10%") || !strings.Contains(s.Body, "hello-002") {
		t.Fatalf("sticky: %s", s.Body)
	}
	got := w.served(2000, "")
	if share := float64(got["hello-002"]) / 20; share < 7 || share > 13 {
		t.Fatalf("canary share %.1f%% (%v)", share, got)
	}
	var envs []string
	for _, d := range w.gh.Deployments(repo) {
		envs = append(envs, d.Environment)
	}
	if strings.Join(envs, ",") != "production,pr-1" {
		t.Fatalf("deployment environments: %v", envs)
	}
}

func TestCommandsDoWhatTheSpecSays(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.say("/canary 10%", "Codertocat")

	w.say("/route env=beta", "Codertocat")
	if got := w.served(20, "env=beta"); got["hello-002"] != 20 {
		t.Fatalf("/route: %v", got)
	}
	w.say("/predict env=beta", "Codertocat")
	if s := w.sticky().Body; !strings.Contains(s, "env=beta") || !strings.Contains(s, "hello-002") {
		t.Fatalf("/predict answer: %s", s)
	}
	w.say("/status", "Codertocat")
	w.say("/help", "Codertocat")
	if s := w.sticky().Body; !strings.Contains(s, "/canary") || !strings.Contains(s, "/rollback") {
		t.Fatalf("/help answer: %s", s)
	}
	w.say("/abort", "Codertocat")
	if st := w.status(); st.Policy.Split["hello-001"] != 100 || len(st.Policy.Rules) != 0 {
		t.Fatalf("/abort: %+v", st.Policy)
	}
	w.say("/promote", "Codertocat")
	if st := w.status(); st.Stable != "hello-002" || st.Policy.Split["hello-002"] != 100 {
		t.Fatalf("/promote: %+v", st.Policy)
	}
	if got := w.served(20, ""); got["hello-002"] != 20 {
		t.Fatalf("after /promote: %v", got)
	}
	w.say("/rollback", "Codertocat")
	if st := w.status(); st.Stable != "hello-001" || st.Policy.Split["hello-001"] != 100 {
		t.Fatalf("/rollback: %+v", st.Policy)
	}
	// Malformed commands get the usage and change nothing.
	before := w.status().Policy
	id := w.say("/canary 110%\n/route env\n/canary ten", "Codertocat")
	if s := w.sticky().Body; !strings.Contains(s, "/canary N%") || !strings.Contains(s, "/route") {
		t.Fatalf("usage not shown: %s", s)
	}
	if after := w.status().Policy; fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("malformed commands changed the policy: %v -> %v", before, after)
	}
	if got := w.gh.Reactions(id); strings.Join(got, ",") != "eyes,confused" {
		t.Fatalf("reactions to malformed commands: %v", got)
	}
}

func TestReadersQuotesAndBotsChangeNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.gh.SetPermission(repo, "reader", githubtest.PermRead)
	before := w.status()
	id := w.say("/canary 50%", "reader")
	if st := w.status(); len(st.Versions) != len(before.Versions) || fmt.Sprint(st.Policy) != fmt.Sprint(before.Policy) {
		t.Fatalf("a reader's command changed state: %+v", st.Policy)
	}
	if s := w.sticky().Body; !strings.Contains(s, "@reader") || !strings.Contains(strings.ToLower(s), "write") {
		t.Fatalf("refusal: %s", s)
	}
	if got := w.gh.Reactions(id); strings.Join(got, ",") != "eyes,confused" {
		t.Fatalf("reactions: %v", got)
	}
	for _, body := range []string{"> /canary 50%", "```\n/canary 50%\n```", "please run `/canary 50%`"} {
		id := w.say(body, "Codertocat")
		if got := w.gh.Reactions(id); len(got) != 0 {
			t.Fatalf("%q got reactions %v", body, got)
		}
	}
	// A bot's comment and an edited comment are ignored.
	var m map[string]any
	json.Unmarshal(comment(t, "/canary 50%", 777, "sluice[bot]"), &m)
	m["comment"].(map[string]any)["user"].(map[string]any)["type"] = "Bot"
	b, _ := json.Marshal(m)
	w.deliver("issue_comment", b)
	json.Unmarshal(comment(t, "/canary 50%", 778, "Codertocat"), &m)
	m["action"] = "edited"
	b, _ = json.Marshal(m)
	w.deliver("issue_comment", b)
	w.sync()
	if st := w.status(); len(st.Versions) != len(before.Versions) {
		t.Fatalf("ignored comments created versions: %d", len(st.Versions))
	}
}

func TestBrokenManifestFailsTheCheckWithAnAnnotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": "services:\n  hello:\n    run: ./app\n    instances: lots\n"})
	w.say("/deploy", "Codertocat")
	cs := checksOn(w.gh, headSHA)
	if len(cs) != 1 || cs[0].Conclusion != "failure" || !strings.Contains(cs[0].Output.Title+cs[0].Output.Summary, "InvalidManifest") {
		t.Fatalf("check runs: %+v", cs)
	}
	anns := cs[0].Output.Annotations
	if len(anns) != 1 || anns[0].Path != "sluice.yaml" || anns[0].StartLine != 4 || !strings.Contains(anns[0].Message, "instances") {
		t.Fatalf("annotations: %+v", anns)
	}
}

func TestDeliveriesAreVerifiedAndRunOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	body := githubtest.Fixture(t, "push.json")
	for _, tc := range []struct {
		name string
		opts []githubtest.DeliveryOption
	}{
		{"no signature", []githubtest.DeliveryOption{githubtest.WithHeader("X-Hub-Signature-256", "")}},
		{"wrong signature", []githubtest.DeliveryOption{githubtest.WithHeader("X-Hub-Signature-256", githubtest.Sign([]byte("other"), body))}},
		{"sha1 only", []githubtest.DeliveryOption{githubtest.WithHeader("X-Hub-Signature-256", ""), githubtest.WithHeader("X-Hub-Signature", "sha1=0000")}},
	} {
		if code := w.deliver("push", body, tc.opts...); code != http.StatusUnauthorized {
			t.Fatalf("%s: %d", tc.name, code)
		}
	}
	// Not JSON, and not signed: refused before it is parsed.
	if code := w.deliver("push", []byte("{{{"), githubtest.WithHeader("X-Hub-Signature-256", "sha256=00")); code != http.StatusUnauthorized {
		t.Fatalf("unsigned garbage: %d", code)
	}
	if code := w.deliver("push", []byte("{{{")); code != http.StatusBadRequest {
		t.Fatalf("signed garbage: %d", code)
	}
	if code := w.deliver("star", []byte(`{"action":"created"}`)); code != http.StatusOK {
		t.Fatalf("unknown event: %d", code)
	}
	w.sync()
	if _, err := w.eng.Status(context.Background(), "hello"); err == nil {
		t.Fatal("a refused delivery deployed something")
	}
	for i, want := range []int{http.StatusAccepted, http.StatusOK} {
		if code := w.deliver("push", body, githubtest.WithDeliveryID("d-1")); code != want {
			t.Fatalf("delivery %d: %d", i, code)
		}
	}
	w.sync()
	if st := w.status(); len(st.Versions) != 1 {
		t.Fatalf("a repeated delivery ran %d times", len(st.Versions))
	}
}

func TestGitHubOutageDelaysReportsButLosesAndDoublesNone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	// Every write fails for a while; reads still work.
	w.gh.FailRoute("POST", "/repos/", 6, http.StatusBadGateway, nil)
	w.gh.FailRoute("PATCH", "/repos/", 3, http.StatusForbidden, map[string]string{"X-RateLimit-Remaining": "0",
		"X-RateLimit-Reset": fmt.Sprint(time.Now().Add(time.Second).Unix())})
	w.deliver("issue_comment", githubtest.Fixture(t, "issue_comment.created.pull_request.json"))
	w.sync()
	if got := w.gh.Reactions(commentN); strings.Join(got, ",") == "eyes,rocket" {
		t.Fatal("the outage delayed nothing")
	}
	// The traffic change did not wait for GitHub.
	if st := w.status(); st.Policy.Split["hello-002"] != 10 {
		t.Fatalf("traffic change held up by GitHub: %+v", st.Policy)
	}
	// Time passes (the fake clock skips backoffs; go-github also keeps the
	// rate-limit reset on the real clock) until the reports are through.
	for i := 0; i < 100 && strings.Join(w.gh.Reactions(commentN), ",") != "eyes,rocket"; i++ {
		w.clock.add(10 * time.Minute)
		w.sync()
		time.Sleep(50 * time.Millisecond)
	}
	if got := w.gh.Reactions(commentN); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("reactions after the outage: %v", got)
	}
	if cs := checksOn(w.gh, headSHA); len(cs) != 1 || cs[0].Conclusion != "success" {
		t.Fatalf("check runs after the outage: %+v", cs)
	}
	_ = w.sticky() // exactly one
	if ds := w.gh.Deployments(repo); len(ds) != 2 {
		t.Fatalf("deployments after the outage: %d", len(ds))
	}
}

func TestRestartBetweenAcceptingAndProcessing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	if code := w.deliver("push", githubtest.Fixture(t, "push.json"), githubtest.WithDeliveryID("d-restart")); code != http.StatusAccepted {
		t.Fatalf("push: %d", code)
	}
	// Stop before the worker ran (Sync was never called), then start
	// again on the same data directory.
	f := w.f
	w.stop()
	w.start(f)
	w.sync()
	if st := w.status(); len(st.Versions) != 1 || st.Stable != "hello-001" {
		t.Fatalf("after restart: %+v", st)
	}
	if code := w.deliver("push", githubtest.Fixture(t, "push.json"), githubtest.WithDeliveryID("d-restart")); code != http.StatusOK {
		t.Fatalf("redelivery after restart: %d", code)
	}
	w.sync()
	if st := w.status(); len(st.Versions) != 1 {
		t.Fatalf("processed twice: %d versions", len(st.Versions))
	}
}

func TestCheckRunButtonsAndRerun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.say("/canary 10%", "Codertocat")
	var ev map[string]any
	json.Unmarshal(githubtest.Fixture(t, "check_run.rerequested.json"), &ev)
	cr := ev["check_run"].(map[string]any)
	cr["external_id"], cr["head_sha"], cr["name"] = "hello-002", headSHA, "sluice / hello"
	ev["sender"].(map[string]any)["login"] = "Codertocat"

	ev["action"] = "requested_action"
	ev["requested_action"] = map[string]any{"identifier": "promote"}
	b, _ := json.Marshal(ev)
	if code := w.deliver("check_run", b); code != http.StatusAccepted {
		t.Fatalf("check_run: %d", code)
	}
	w.sync()
	if st := w.status(); st.Stable != "hello-002" {
		t.Fatalf("Promote button: %+v", st.Policy)
	}

	// Re-run deploys that commit again, as a new version.
	ev["action"] = "rerequested"
	delete(ev, "requested_action")
	b, _ = json.Marshal(ev)
	w.deliver("check_run", b)
	w.sync()
	st := w.status()
	last := st.Versions[len(st.Versions)-1]
	if len(st.Versions) != 3 || last.CreatedBy.Ref != headSHA || last.Status != rollout.StatusNormal {
		t.Fatalf("re-run: %d versions, last %+v", len(st.Versions), last.Version)
	}

	// A reader's button press changes nothing.
	w.gh.SetPermission(repo, "reader", githubtest.PermRead)
	ev["action"] = "requested_action"
	ev["requested_action"] = map[string]any{"identifier": "rollback"}
	ev["sender"].(map[string]any)["login"] = "reader"
	b, _ = json.Marshal(ev)
	w.deliver("check_run", b)
	w.sync()
	if st := w.status(); st.Stable != "hello-002" {
		t.Fatalf("a reader rolled back: %+v", st.Policy)
	}
}

func TestMergeOfAPromotedTreeIsNotRebuiltAndTheMergedPRIsTold(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.say("/canary 10%", "Codertocat")
	w.say("/promote", "Codertocat")
	// The PR merges: its merge commit has the PR head's tree.
	merge := "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
	w.gh.SetCommit(repo, merge, map[string]string{"sluice.yaml": appYAML(t), "README.md": "pr\n"})
	w.deliver("pull_request", githubtest.Fixture(t, "pull_request.closed.merged.json"))
	w.deliver("push", pushOf(t, merge))
	w.sync()
	if st := w.status(); len(st.Versions) != 2 || st.Stable != "hello-002" {
		t.Fatalf("the promoted tree was rebuilt: %d versions, stable %s", len(st.Versions), st.Stable)
	}
	if cs := checksOn(w.gh, merge); len(cs) != 1 || cs[0].Conclusion != "success" {
		t.Fatalf("merge check: %+v", cs)
	}

	// A merge with a new tree deploys at 100% and the merged PR (#2 in the
	// fixture) hears how it went.
	w.mergePR2("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", appYAML(t))
	if st := w.status(); st.Stable != "hello-003" || st.Policy.Split["hello-003"] != 100 {
		t.Fatalf("merge deploy: %+v", st.Policy)
	}
	var told bool
	for _, c := range w.gh.Comments(repo, 2) {
		told = told || (strings.HasPrefix(c.Body, render.Marker) && strings.Contains(c.Body, "hello-003"))
	}
	if !told {
		t.Fatalf("merged PR not told: %+v", w.gh.Comments(repo, 2))
	}
}

// mergePR2 merges PR #2 (the fixture's) as commit merge, whose
// sluice.yaml is manifest, and handles the pull_request and push events.
func (w *world) mergePR2(merge, manifest string) {
	w.t.Helper()
	w.gh.SetCommit(repo, "ec26c3e57ca3a959ca5aad62de7213c562f8c822", map[string]string{"README.md": "x\n"})
	w.gh.SetPR(repo, 2, "ec26c3e57ca3a959ca5aad62de7213c562f8c822", "other")
	w.gh.SetCommit(repo, merge, map[string]string{"sluice.yaml": manifest, "README.md": "new\n"})
	var pr map[string]any
	json.Unmarshal(githubtest.Fixture(w.t, "pull_request.closed.merged.json"), &pr)
	pr["pull_request"].(map[string]any)["merge_commit_sha"] = merge
	b, _ := json.Marshal(pr)
	w.deliver("pull_request", b)
	w.deliver("push", pushOf(w.t, merge))
	w.sync()
}

func TestNewerPushSupersedesAQueuedOlderOne(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	newer := "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	w.gh.SetCommit(repo, newer, map[string]string{"sluice.yaml": appYAML(t), "README.md": "newer\n"})
	w.deliver("push", githubtest.Fixture(t, "push.json"))
	w.deliver("push", pushOf(t, newer))
	w.sync()
	st := w.status()
	if len(st.Versions) != 1 || st.Versions[0].CreatedBy.Ref != newer {
		t.Fatalf("versions: %+v", st.Versions)
	}
}

func TestClosedPRVersionsWithoutTrafficStop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	w.say("/deploy", "Codertocat")
	var pr map[string]any
	json.Unmarshal(githubtest.Fixture(t, "pull_request.closed.merged.json"), &pr)
	pr["number"] = 1
	pr["pull_request"].(map[string]any)["merged"] = false
	b, _ := json.Marshal(pr)
	w.deliver("pull_request", b)
	w.sync()
	st := w.status()
	if st.Versions[1].Status != rollout.StatusStopped || st.Versions[0].Status != rollout.StatusNormal {
		t.Fatalf("after close: %s %s", st.Versions[0].Status, st.Versions[1].Status)
	}
}

func TestSecretsNeverReachGitHub(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	y := "services:\n  hello:\n    run: echo \"connecting with $DB_PASSWORD\"; exit 1\n    env: {DB_PASSWORD: hunter2-very-secret}\n    timeouts: {start: 2s}\n"
	w.gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": y})
	w.say("/deploy", "Codertocat")
	cs := checksOn(w.gh, headSHA)
	if len(cs) != 1 || cs[0].Conclusion != "failure" {
		t.Fatalf("checks: %+v", cs)
	}
	for _, r := range w.gh.Requests() {
		if strings.Contains(string(r.Body), "hunter2-very-secret") || strings.Contains(string(r.Body), string(secret)) {
			t.Fatalf("a secret went to GitHub in %s %s", r.Method, r.Path)
		}
	}
	if !strings.Contains(cs[0].Output.Text+cs[0].Output.Summary, "connecting with ***") {
		t.Fatalf("log tail missing or not redacted: %s", cs[0].Output.Text)
	}
}

func TestRedeployAppliesThePRConfigurationToTheStableVersion(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.mergeMain()
	y := strings.Replace(appYAML(t), `TESTAPP: "1"`, `TESTAPP: "1", FLAG: "on"`, 1)
	w.gh.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": y})
	w.say("/redeploy", "Codertocat")
	st := w.status()
	v := st.Versions[0]
	if len(st.Versions) != 1 || v.Status != rollout.StatusNormal || v.Config.Env["FLAG"] != "on" || v.Generation != 2 {
		t.Fatalf("after /redeploy: %d versions, %s, env %v, generation %d", len(st.Versions), v.Status, v.Config.Env, v.Generation)
	}
	if s := w.sticky().Body; !strings.Contains(s, "hello-001") {
		t.Fatalf("sticky: %s", s)
	}
}

func TestOversizedDeliveryIsRefusedAndNothingStored(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	small, srv := w.otherBot(bot.Config{WebhookSecret: secret, MaxBody: 1024})
	body := []byte(`{"pad":"` + strings.Repeat("x", 2048) + `"}`)
	resp, err := http.DefaultClient.Do(githubtest.Delivery(t, srv.URL+"/webhooks/github", "push", body, secret))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized delivery: %d", resp.StatusCode)
	}
	if left, err := small.Pending(); err != nil || left != "" {
		t.Fatalf("something was stored: %q %v", left, err)
	}
}

// A merge deploy that follows an automatic canary plan tells the merged PR
// each step the engine takes, up to the promotion.
func TestTheMergedPRHearsItsAutomaticCanarySteps(t *testing.T) {
	t.Parallel()
	engClock := &clock{t: time.Now()}
	w := newWorld(t, rollout.WithClock(engClock.now))
	w.mergeMain()

	canaryYAML := strings.Replace(appYAML(t), "    timeouts:",
		"    on_merge: canary\n    canary: {steps: [10, 50, 100], interval: 1m, max_error_rate: 5%}\n    timeouts:", 1)
	w.mergePR2("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", canaryYAML)
	if st := w.status(); st.Policy.Split["hello-001"] != 90 || st.Policy.Split["hello-002"] != 10 {
		t.Fatalf("after the canary merge: %+v", st.Policy)
	}

	told := func(what string) bool {
		for _, c := range w.gh.Comments(repo, 2) {
			if strings.HasPrefix(c.Body, render.Marker) && strings.Contains(c.Body, what) {
				return true
			}
		}
		return false
	}
	for _, step := range []string{"automatic canary of hello-002: 10% → 50%", "automatic canary of hello-002 passed every step: promoted"} {
		w.served(200, "")
		engClock.add(61 * time.Second)
		if err := w.eng.AdvanceCanaries(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.sync()
		if !told(step) {
			t.Fatalf("the merged PR was not told %q: %+v", step, w.gh.Comments(repo, 2))
		}
	}
	if st := w.status(); st.Stable != "hello-002" {
		t.Fatalf("stable %s after the last step", st.Stable)
	}
	if told("Automatic canary of hello-001") || len(w.gh.Comments(repo, 1)) != 1 {
		t.Fatalf("another PR heard of the canary: %+v", w.gh.Comments(repo, 1))
	}
}
