package bot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/action"
	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/auth/authtest"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/source"
	"github.com/sluicehq/sluice/store"
)

// The world of the front-door test: repository A owns hello and serves it
// at 100%; repository B, whose admin is eve, tries to change it.
const (
	repoA       = "acme/web"
	repoB       = "evil/tools"
	eve         = "eve"
	instA       = 1
	instB       = 2
	doorsAdmin  = "admin-token-of-the-front-door-test"
	doorsAud    = "https://sluice.example.com"
	workflowTok = "ghs_workflow-token-of-evil-tools"
	prB         = 1
	shaA        = "a000000000000000000000000000000000000001" // A's main: hello
	shaBOld     = "b000000000000000000000000000000000000001" // B's PR, when hello was B's
	shaBHead    = "b000000000000000000000000000000000000002" // B's PR head now
	shaBFull    = "b000000000000000000000000000000000000003" // B's main, on_merge: full
	shaBRedo    = "b000000000000000000000000000000000000004" // B's main, on_merge: redeploy
	shaBFull2   = "b000000000000000000000000000000000000005" // the same, pushed again …
	shaBRedo2   = "b000000000000000000000000000000000000006" // … for the Action's event mode
	refusedWhy  = "belongs to " + repoA                      // every refusal names the owner
)

// doors is one sluice as `sluice serve` wires it (the HTTP API and the
// GitHub App's webhook on one server, over a real engine), a strict fake
// GitHub with repositories A and B, and B's credentials.
type doors struct {
	t      *testing.T
	gh     *githubtest.Server
	w      *enginetest.World
	bot    *bot.Bot
	srv    *httptest.Server
	token  string // B's repository token
	idTok  string // an OIDC token of a workflow of B
	nextID int64
}

// newDoors builds the world and its history: B's pull request created
// hello (hello-001) while hello was B's; the admin then gave hello to A;
// A's merge made hello-002 stable at 100%; B's pull request moved on.
// B's check run on hello-001 keeps its buttons.
func newDoors(t *testing.T) *doors {
	t.Helper()
	key, pemKey := githubtest.SharedKey(t)
	gh := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID), githubtest.WithToken(workflowTok))
	gh.AddRepo(repoA, githubtest.RepoOpts{DefaultBranch: "main", InstallationID: instA})
	gh.AddRepo(repoB, githubtest.RepoOpts{DefaultBranch: "main", InstallationID: instB})
	hello := appYAML(t)
	gh.SetCommit(repoA, shaA, map[string]string{"sluice.yaml": hello, "README.md": "A\n"})
	for sha, y := range map[string]string{shaBOld: hello, shaBHead: hello,
		shaBFull: hello + "    on_merge: full\n", shaBRedo: hello + "    on_merge: redeploy\n",
		shaBFull2: hello + "    on_merge: full\n", shaBRedo2: hello + "    on_merge: redeploy\n"} {
		gh.SetCommit(repoB, sha, map[string]string{"sluice.yaml": y, "README.md": "B " + sha + "\n"})
	}
	gh.SetPR(repoB, prB, shaBOld, "evil")
	gh.SetPermission(repoB, eve, githubtest.PermAdmin)

	w := enginetest.New(t, t.TempDir(), rollout.WithDrainGrace(time.Second))
	quiet := slog.New(slog.DiscardHandler)
	iss := authtest.NewIssuer(t)
	allow, err := auth.ParseAllowList([]string{repoB}) // --oidc-allow evil/tools
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.New(w.DB, auth.WithAdminToken(doorsAdmin), auth.WithOIDC(iss.Server.URL, doorsAud, allow))
	f, err := ghapp.New(ghapp.Config{AppID: appID, PrivateKey: pemKey, APIURL: gh.URL(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	d := &doors{t: t, gh: gh, w: w, nextID: 9000,
		bot: bot.New(w.Engine, w.DB, f, bot.Config{WebhookSecret: secret, PublicURL: doorsAud}, bot.WithLogger(quiet))}
	e := echo.New()
	api.Register(e, w.Engine, api.WithAuthenticator(authn), api.WithLogger(quiet))
	d.bot.Register(e)
	d.srv = httptest.NewServer(e)
	t.Cleanup(d.srv.Close)

	d.comment(eve, "/deploy hello")
	if st := d.status(); st.Repo != repoB || len(st.Versions) != 1 || st.Versions[0].Status != rollout.StatusNormal {
		t.Fatalf("setup: B's pull request did not create hello-001: %+v", st)
	}
	if code, b := d.call(doorsAdmin, "PUT", "/services/hello/repo", "application/json", []byte(`{"repo":"`+repoA+`"}`)); code != http.StatusOK {
		t.Fatalf("setup: the admin gives hello to A: %d %s", code, b)
	}
	d.deliver("push", d.payload("push.json", repoA, instA, func(m map[string]any) { m["after"] = shaA }))
	if st := d.status(); st.Stable != "hello-002" || st.Policy.Split["hello-002"] != 100 || st.Repo != repoA {
		t.Fatalf("setup: A's merge did not make hello-002 stable: %+v", st.Policy)
	}
	gh.SetPR(repoB, prB, shaBHead, "evil")
	if d.token, _, err = authn.Issue(repoB, "", time.Hour); err != nil {
		t.Fatal(err)
	}
	d.idTok = iss.ActionsToken(doorsAud, repoB, eve)
	return d
}

func (d *doors) status() rollout.ServiceStatus {
	d.t.Helper()
	st, err := d.w.Engine.Status(context.Background(), "hello")
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// snapshot is everything a refused operation must leave as it was: the
// services, each one's record, versions and policy, the instances running
// (addresses and process ids) and the length of the history.
func (d *doors) snapshot() string {
	d.t.Helper()
	d.w.Engine.Wait()
	names, err := d.w.Engine.Services(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	all := []any{names}
	for _, n := range names {
		st, err := d.w.Engine.Status(context.Background(), n)
		if err != nil {
			d.t.Fatal(err)
		}
		for i := range st.Versions {
			st.Versions[i].Served = rollout.Served{}
		}
		all = append(all, st)
	}
	evs, err := d.w.Engine.Events(context.Background(), "", 0, 100000)
	if err != nil {
		d.t.Fatal(err)
	}
	b, _ := json.Marshal(append(all, len(evs)))
	return string(b)
}

// call sends one request to the API with a bearer token.
func (d *doors) call(token, method, path, ctype string, body []byte) (int, []byte) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.srv.URL+"/api/v1"+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	d.w.Engine.Wait()
	return resp.StatusCode, b
}

// api is an API call that must be refused with 403; it returns the answer.
func (d *doors) api(token, method, path string, body []byte) string {
	d.t.Helper()
	ctype := "application/json"
	if method == "POST" && strings.HasSuffix(path, "/versions") {
		ctype = "application/gzip"
	}
	code, b := d.call(token, method, path, ctype, body)
	if code != http.StatusForbidden {
		d.t.Errorf("%s %s answered %d, want 403", method, path, code)
	}
	return string(b)
}

// helloSource is a source archive of B declaring hello.
func helloSource(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(appYAML(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// payload is a webhook fixture as repository repo (installation inst)
// would send it, edited by edit.
func (d *doors) payload(fixture, repo string, inst int64, edit func(map[string]any)) []byte {
	d.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(githubtest.Fixture(d.t, fixture), &m); err != nil {
		d.t.Fatal(err)
	}
	m["repository"].(map[string]any)["full_name"] = repo
	m["installation"] = map[string]any{"id": inst}
	edit(m)
	b, _ := json.Marshal(m)
	return b
}

// deliver sends a signed delivery to the App's webhook and lets the bot
// finish everything it leads to.
func (d *doors) deliver(event string, body []byte) {
	d.t.Helper()
	resp, err := http.DefaultClient.Do(githubtest.Delivery(d.t, d.srv.URL+"/webhooks/github", event, body, secret))
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		d.t.Fatalf("%s delivery answered %d", event, resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.bot.Sync(ctx); err != nil {
		d.t.Fatal(err)
	}
}

// commentEvent is issue_comment.created on B's pull request by login.
func (d *doors) commentEvent(login, body string) (int64, []byte) {
	d.nextID++
	id := d.nextID
	d.gh.AddComment(repoB, prB, githubtest.Comment{ID: id, User: login, Body: body})
	return id, d.payload("issue_comment.created.pull_request.json", repoB, instB, func(m map[string]any) {
		m["issue"].(map[string]any)["number"] = prB
		c := m["comment"].(map[string]any)
		c["body"], c["id"] = body, id
		c["user"].(map[string]any)["login"] = login
	})
}

// comment posts a PR comment on B's pull request through the App.
func (d *doors) comment(login, body string) int64 {
	d.t.Helper()
	id, ev := d.commentEvent(login, body)
	d.deliver("issue_comment", ev)
	return id
}

// sticky is sluice's sticky comment on B's pull request that was written
// last (the App's, or event mode's), "" when there is none.
func (d *doors) sticky() string {
	var last githubtest.Comment
	for _, c := range d.gh.Comments(repoB, prB) {
		if strings.HasPrefix(c.Body, render.Marker) && strings.HasSuffix(c.User, "[bot]") && !c.UpdatedAt.Before(last.UpdatedAt) {
			last = c
		}
	}
	return last.Body
}

// replied runs try and returns the entry it added on top of sluice's sticky
// comment on B's pull request.
func (d *doors) replied(try func()) string {
	d.t.Helper()
	before := d.sticky()
	try()
	after := d.sticky()
	parts := strings.Split(after, "<!-- sluice:entry -->")
	if after == before || len(parts) < 2 {
		d.t.Errorf("sluice said nothing new on %s#%d: %+v", repoB, prB, d.gh.Comments(repoB, prB))
		return ""
	}
	return parts[1]
}

// prComment is a command on B's pull request through the App: it must be
// answered with 😕 and a reply.
func (d *doors) prComment(cmd string) string {
	d.t.Helper()
	var id int64
	said := d.replied(func() { id = d.comment(eve, cmd) })
	if r := d.gh.Reactions(id); len(r) == 0 || r[len(r)-1] != "confused" {
		d.t.Errorf("reactions to %q: %v, want 😕 last", cmd, r)
	}
	return said
}

// button presses a button (requested_action identifier, or "" for Re-run)
// on B's check run of hello-001.
func (d *doors) button(identifier string) string {
	d.t.Helper()
	return d.replied(func() {
		d.deliver("check_run", d.payload("check_run.rerequested.json", repoB, instB, func(m map[string]any) {
			cr := m["check_run"].(map[string]any)
			cr["external_id"], cr["head_sha"], cr["name"] = "hello-001", shaBOld, "sluice / hello"
			m["sender"].(map[string]any)["login"] = eve
			if identifier != "" {
				m["action"], m["requested_action"] = "requested_action", map[string]any{"identifier": identifier}
			}
		}))
	})
}

// refusedCheck is the failed check run "sluice / hello" on sha.
func (d *doors) refusedCheck(sha string) string {
	d.t.Helper()
	for _, c := range d.gh.CheckRuns(repoB) {
		if c.HeadSHA == sha && c.Name == "sluice / hello" {
			if c.Conclusion != "failure" {
				d.t.Errorf("check run on %s: conclusion %q, want failure", sha, c.Conclusion)
			}
			return c.Output.Title + "\n" + c.Output.Summary
		}
	}
	d.t.Errorf("no check run sluice / hello on %s; check runs: %+v", sha, d.gh.CheckRuns(repoB))
	return ""
}

// push is a push to B's default branch through the App.
func (d *doors) push(sha string) string {
	d.t.Helper()
	d.deliver("push", d.payload("push.json", repoB, instB, func(m map[string]any) { m["after"] = sha }))
	return d.refusedCheck(sha)
}

// action runs the GitHub Action in event mode in a workflow of B, with B's
// repository token and the workflow's token, on event with payload.
func (d *doors) action(event string, payload []byte) {
	d.t.Helper()
	temp := d.t.TempDir()
	path := filepath.Join(temp, "event.json")
	if err := os.WriteFile(path, payload, 0o600); err != nil {
		d.t.Fatal(err)
	}
	d.nextID++
	env := map[string]string{
		"INPUT_SERVER": d.srv.URL, "INPUT_TOKEN": d.token, "INPUT_MODE": "event", "INPUT_GITHUB_TOKEN": workflowTok,
		"GITHUB_REPOSITORY": repoB, "GITHUB_API_URL": strings.TrimSuffix(d.gh.URL(), "/"),
		"GITHUB_EVENT_NAME": event, "GITHUB_EVENT_PATH": path, "RUNNER_TEMP": temp,
		"GITHUB_RUN_ID": fmt.Sprint(d.nextID), "GITHUB_RUN_ATTEMPT": "1",
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	var out bytes.Buffer
	code := action.Run(context.Background(), action.Config{
		Getenv: func(k string) string { return env[k] }, Environ: environ, Stdout: &out,
		Logger: slog.New(slog.DiscardHandler),
		OpenJournal: func(dir string) (rollout.Journal, io.Closer, error) {
			db, err := store.Open(filepath.Join(dir, "sluice.db"), store.WithLogger(slog.New(slog.DiscardHandler)))
			return db, db, err
		},
	})
	if code != 0 {
		d.t.Errorf("event mode exited %d (a refused command is answered on GitHub, exit 0):\n%s", code, out.String())
	}
	d.w.Engine.Wait()
}

// actionComment is a command on B's pull request through event mode.
func (d *doors) actionComment(cmd string) string {
	d.t.Helper()
	id, ev := d.commentEvent(eve, cmd)
	said := d.replied(func() { d.action("issue_comment", ev) })
	if r := d.gh.Reactions(id); len(r) == 0 || r[len(r)-1] != "confused" {
		d.t.Errorf("reactions to %q: %v, want 😕 last", cmd, r)
	}
	return said
}

// actionPush is a push to B's default branch through event mode.
func (d *doors) actionPush(sha string) string {
	d.t.Helper()
	d.action("push", d.payload("push.json", repoB, 0, func(m map[string]any) { m["after"] = sha }))
	return d.refusedCheck(sha)
}

// TestEveryFrontDoorRefusesAForeignRepository: repository B tries every
// operation that changes a service on hello, which belongs to repository
// A, through every front door where the operation exists. Each attempt is
// refused in the door's own way (403, a 😕 reply on the pull request, a
// failed check run) naming A as the owner, and changes nothing: the
// services, versions, policy, running instances and history are as they
// were, and hello-002 still serves every request.
func TestEveryFrontDoorRefusesAForeignRepository(t *testing.T) {
	t.Parallel()
	d := newDoors(t)
	src := helloSource(t)
	two := []byte(`{"instances":2}`)
	apiOps := func(tok string) map[string]func() string {
		return map[string]func() string{
			"deploy":   func() string { return d.api(tok, "POST", "/services/hello/versions", src) },
			"redeploy": func() string { return d.api(tok, "POST", "/services/hello/versions/hello-002/redeploy", two) },
			"redeploy source": func() string {
				return d.api(tok, "POST", "/services/hello/versions/hello-002/redeploy", src)
			},
			"traffic": func() string {
				return d.api(tok, "PUT", "/services/hello/policy", []byte(`{"split":{"hello-001":50,"hello-002":50}}`))
			},
			"route": func() string {
				return d.api(tok, "POST", "/services/hello/rules", []byte(`{"version":"hello-001","match":{"env":"x"}}`))
			},
			"unroute": func() string { return d.api(tok, "DELETE", "/services/hello/rules", nil) },
			"promote": func() string { return d.api(tok, "POST", "/services/hello/promote", []byte(`{"version":"hello-001"}`)) },
			"rollback": func() string {
				return d.api(tok, "POST", "/services/hello/rollback", []byte(`{"version":"hello-001"}`))
			},
			"abort":  func() string { return d.api(tok, "POST", "/services/hello/abort", []byte(`{"version":"hello-002"}`)) },
			"retire": func() string { return d.api(tok, "POST", "/services/hello/retire", []byte(`{"older_than":"0s"}`)) },
			"stop":   func() string { return d.api(tok, "POST", "/services/hello/versions/hello-002/stop", nil) },
		}
	}
	commands := map[string]string{
		"deploy": "/deploy hello", "traffic": "/canary 50% hello", "route": "/route env=x hello", "unroute": "/unroute hello",
		"promote": "/promote hello", "rollback": "/rollback hello-001 hello", "abort": "/abort hello", "redeploy": "/redeploy hello",
	}
	doorOps := map[string]map[string]func() string{
		"API, repository token": apiOps(d.token),
		"API, OIDC token":       apiOps(d.idTok),
		"PR comment":            {},
		"check run button": {
			"deploy (Re-run)": func() string { return d.button("") },
			"promote":         func() string { return d.button("promote") },
			"abort":           func() string { return d.button("abort") },
			"rollback":        func() string { return d.button("rollback") },
		},
		"push": {
			"deploy (on_merge: full)":       func() string { return d.push(shaBFull) },
			"redeploy (on_merge: redeploy)": func() string { return d.push(shaBRedo) },
		},
		"Action event mode": {
			"deploy (push, on_merge: full)":       func() string { return d.actionPush(shaBFull2) },
			"redeploy (push, on_merge: redeploy)": func() string { return d.actionPush(shaBRedo2) },
		},
	}
	// B's head back at the commit hello-001 was built from: "already runs"
	// is no answer once hello is A's.
	doorOps["PR comment"]["deploy (the head of B's own old version)"] = func() string {
		d.gh.SetPR(repoB, prB, shaBOld, "evil")
		defer d.gh.SetPR(repoB, prB, shaBHead, "evil")
		return d.prComment("/deploy hello")
	}
	for op, cmd := range commands {
		doorOps["PR comment"][op] = func() string { return d.prComment(cmd) }
		doorOps["Action event mode"][op] = func() string { return d.actionComment(cmd) }
	}

	before, parent := d.snapshot(), t
	for _, door := range []string{"API, repository token", "API, OIDC token", "PR comment", "check run button", "push", "Action event mode"} {
		for _, op := range slices.Sorted(maps.Keys(doorOps[door])) {
			try := doorOps[door][op]
			t.Run(door+"/"+op, func(t *testing.T) {
				d.t = t // the doors' own checks fail this case
				defer func() { d.t = parent }()
				if said := try(); !strings.Contains(said, refusedWhy) {
					t.Errorf("the refusal does not say the service %s:\n%s", refusedWhy, said)
				}
				if after := d.snapshot(); after != before {
					t.Fatalf("a refused operation changed hello:\nbefore %s\nafter  %s", before, after)
				}
			})
		}
	}
	got := map[string]int{}
	for range 20 {
		req, _ := http.NewRequest("GET", d.w.Server.URL+"/", nil)
		req.Host = "hello.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got[resp.Header.Get("X-Sluice-Version")]++
	}
	if got["hello-002"] != 20 {
		t.Errorf("hello served %v after the refusals, want hello-002 only", got)
	}
}
