package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/bot/action"
	"github.com/sluicehq/sluice/bot/githubtest"
)

// These tests run action.yml as a runner does (actionrunner_test.go): its
// first step builds the sluice CLI from this checkout, its second runs
// `sluice action` with the inputs mapped through env, against a real
// `sluice serve` and, for event mode, the fake GitHub.

const adminToken = "adm-s3cret"

// apiGet GETs /api/v1<path> with the admin token into out.
func apiGet(t *testing.T, s *server, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.api+"/api/v1"+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func apiStatus(t *testing.T, s *server, service string) statusView {
	t.Helper()
	var st statusView
	apiGet(t, s, "/services/"+service, &st)
	return st
}

// snapshot is everything a refused step must leave as it was: every
// service's status and the whole history log.
func snapshot(t *testing.T, s *server) string {
	t.Helper()
	var svcs, evs map[string]any
	apiGet(t, s, "/services", &svcs)
	apiGet(t, s, "/events?limit=1000", &evs)
	b, _ := json.Marshal([]any{svcs, evs})
	return string(b)
}

type eventView struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Op      string `json:"op"`
	Origin  struct {
		Via, Actor, URL, Ref, Repo string
	} `json:"origin"`
}

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// mustPass fails the test with the run's output when the action failed.
func mustPass(t *testing.T, res actionResult) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("action exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestActionYAMLMapsEveryInputThroughEnv(t *testing.T) {
	t.Parallel()
	m := loadActionMeta(t)
	declared := slices.Sorted(maps.Keys(m.Inputs))
	if want := slices.Sorted(slices.Values(action.InputNames)); !slices.Equal(declared, want) {
		t.Fatalf("action.yml declares inputs %v; sluice action reads %v", declared, want)
	}
	var run *actionStep
	for i, st := range m.Runs.Steps {
		if strings.Contains(st.Run, "${{") {
			t.Errorf("step %q expands an expression inside its script; inputs must reach it through env:\n%s", st.Name, st.Run)
		}
		if st.ID == "sluice" {
			run = &m.Runs.Steps[i]
		}
	}
	if run == nil || !strings.Contains(run.Run, `"$RUNNER_TEMP/sluice" action`) {
		t.Fatalf("no step with id sluice running \"$RUNNER_TEMP/sluice\" action")
	}
	for _, name := range declared {
		if got, want := run.Env[action.EnvName(name)], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("env %s = %q, want %q", action.EnvName(name), got, want)
		}
	}
	if len(run.Env) != len(declared) {
		t.Errorf("the sluice step's env has %d entries, want exactly the %d inputs", len(run.Env), len(declared))
	}
	for _, o := range []string{"version", "url", "status"} {
		if got, want := m.Outputs[o].Value, "${{ steps.sluice.outputs."+o+" }}"; got != want {
			t.Errorf("output %s = %q, want %q", o, got, want)
		}
	}
	if m.Inputs["server"].Default != nil || !m.Inputs["server"].Required {
		t.Error("input server must be required, with no default")
	}
	if d := m.Inputs["github-token"].Default; d == nil || *d != "${{ github.token }}" {
		t.Error("input github-token must default to ${{ github.token }}")
	}
}

func TestActionDeploy(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN="+adminToken)
	r := newActionRunner(t)
	r.writeSource("svc", map[string]string{"sluice.yaml": helloYAML()})
	r.writeSource("broken", map[string]string{"sluice.yaml": "services:\n  hello:\n    run: exit 3\n    timeouts: {start: 5s}\n"})
	base := map[string]string{"server": "http://" + s.api, "token": adminToken, "source": "svc"}
	vurl := func(v string) string { return fmt.Sprintf("http://%s.hello.localhost:%s/", v, port(s.route)) }
	// The job's first sluice step builds the CLI; later ones reuse it.
	bin := filepath.Join(r.temp, "sluice")
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}

	// A full deploy takes 100% and is the stable version.
	res := r.run(base, nil)
	mustPass(t, res)
	built, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("the build step left no binary: %v", err)
	}
	runID := r.runID.Load()
	if want := map[string]string{"version": "hello-001", "url": vurl("hello-001"), "status": "normal"}; !maps.Equal(res.outputs, want) {
		t.Fatalf("outputs = %v, want %v", res.outputs, want)
	}
	if row := "| **hello-001** (stable) | normal | 100% | " + vurl("hello-001") + " |"; !strings.Contains(res.summary, row) {
		t.Errorf("summary lacks %q:\n%s", row, res.summary)
	}
	if len(res.errorLines()) != 0 {
		t.Errorf("a good deploy printed %v", res.errorLines())
	}
	var evs struct{ Events []eventView }
	apiGet(t, s, "/services/hello/events", &evs)
	want := struct{ Via, Actor, URL, Ref, Repo string }{"action", "alice", fmt.Sprintf("https://github.com/acme/web/actions/runs/%d", runID),
		r.env["GITHUB_SHA"], "acme/web"}
	if len(evs.Events) == 0 || evs.Events[0].Version != "hello-001" || evs.Events[0].Origin != want {
		t.Fatalf("history of the deploy = %+v, want origin %+v", evs.Events, want)
	}

	// A canary with traffic: 10 takes 10% from the stable version once normal.
	res = r.run(with(base, "strategy", "canary", "traffic", "10%"), nil)
	mustPass(t, res)
	if res.outputs["version"] != "hello-002" || res.outputs["status"] != "normal" || res.outputs["url"] != vurl("hello-002") {
		t.Fatalf("canary outputs = %v", res.outputs)
	}
	st := apiStatus(t, s, "hello")
	if !maps.Equal(st.Policy.Split, map[string]int{"hello-001": 90, "hello-002": 10}) {
		t.Fatalf("split after the canary step = %v, want 90/10", st.Policy.Split)
	}
	for _, row := range []string{"| **hello-002** | normal | 10% | " + vurl("hello-002") + " |", "| hello-001 (stable) | normal | 90% | " + vurl("hello-001") + " |"} {
		if !strings.Contains(res.summary, row) {
			t.Errorf("canary summary lacks %q:\n%s", row, res.summary)
		}
	}

	// An app that exits fails the step with its reason; traffic stays.
	res = r.run(with(base, "source", "broken"), nil)
	if res.code == 0 {
		t.Fatalf("a failed version passed the step:\n%s", res.stdout)
	}
	errs := res.errorLines()
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "::error title=ProcessExited::") || !strings.Contains(errs[0], "exited with status 3") || !strings.Contains(errs[0], " — ") {
		t.Fatalf("error lines = %q, want one ::error title=ProcessExited::<detail> — <suggestion>", errs)
	}
	if res.outputs["version"] != "hello-003" || res.outputs["status"] != "failed" || res.outputs["url"] != vurl("hello-003") {
		t.Fatalf("failure outputs = %v", res.outputs)
	}
	for _, s := range []string{"❌ sluice: hello-003 is failed", "| **hello-003** | failed (ProcessExited) | 0% |", "**ProcessExited**: ", "**Suggestion:** "} {
		if !strings.Contains(res.summary, s) {
			t.Errorf("failure summary lacks %q:\n%s", s, res.summary)
		}
	}
	if after := apiStatus(t, s, "hello"); !maps.Equal(after.Policy.Split, st.Policy.Split) {
		t.Fatalf("a failed deploy changed the split: %v", after.Policy.Split)
	}
	if again, err := os.Stat(bin); err != nil || !os.SameFile(built, again) || !again.ModTime().Equal(built.ModTime()) {
		t.Errorf("later steps of the job built the CLI again")
	}
}

func TestActionBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN="+adminToken)
	r := newActionRunner(t)
	r.githubToken = "ghs_workflow-token"
	r.writeSource("svc", map[string]string{"sluice.yaml": helloYAML()})
	r.writeSource("empty", map[string]string{"README": "no manifest here\n"})
	server := "http://" + s.api
	base := map[string]string{"server": server, "token": adminToken, "source": "svc"}
	mustPass(t, r.run(base, nil))

	token := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(sluiceBin, append(args, "--server", server, "--token", adminToken)...).Output()
		if err != nil {
			t.Fatalf("sluice %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	otherRepo := token("token", "create", "--repo", "acme/other")
	revoked := token("token", "create", "--repo", "acme/web")
	var list struct {
		Tokens []struct{ ID, Repo string }
	}
	if err := json.Unmarshal([]byte(token("token", "list", "--json")), &list); err != nil || len(list.Tokens) != 2 {
		t.Fatalf("token list: %v %+v", err, list)
	}
	token("token", "revoke", list.Tokens[1].ID)
	goDir := filepath.Dir(must(exec.LookPath("go")))
	noGo := strings.Join(slices.DeleteFunc(filepath.SplitList(os.Getenv("PATH")), func(d string) bool { return d == goDir }), string(os.PathListSeparator))

	r.writeSource(".", map[string]string{"event.json": string(githubtest.Fixture(t, "issue_comment.created.pull_request.json"))})
	eventEnv := map[string]string{"GITHUB_EVENT_NAME": "issue_comment", "GITHUB_EVENT_PATH": filepath.Join(r.workspace, "event.json")}

	before := snapshot(t, s)
	// Each refused step is its own process tree against the one server;
	// they run side by side, and the group ends when all of them have.
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			with map[string]string
			env  map[string]string
			want string // the whole ::error line, or a part of it after "…"
		}{
			{"unknown strategy", with(base, "strategy", "blue"), nil, `::error::sluice: input "strategy" must be full or canary, got "blue"`},
			{"missing server", with(base, "server", ""), nil, `…input "server" is required`},
			{"server not a URL", with(base, "server", "sluice.example.com"), nil, `…input "server" must be an http or https URL`},
			{"unknown input", base, map[string]string{"INPUT_COLOUR": "blue"}, `…input "colour" is not an input of this action`},
			{"no token", with(base, "token", ""), nil, `…input "token" is required unless oidc is true`},
			{"token and oidc", with(base, "oidc", "true"), nil, `…input "token" must be empty when oidc is true`},
			{"oidc without id-token permission", with(base, "token", "", "oidc", "true"), nil, "…give the job `permissions: id-token: write`"},
			{"traffic with full", with(base, "traffic", "10"), nil, `…input "traffic" needs strategy canary`},
			{"traffic not a percentage", with(base, "strategy", "canary", "traffic", "ten"), nil, `…input "traffic" must be a whole percentage from 0 to 100, got "ten"`},
			{"bad wait", with(base, "wait", "yes"), nil, `…input "wait" must be true or false, got "yes"`},
			{"bad timeout", with(base, "timeout", "soon"), nil, `…input "timeout" must be a positive duration`},
			{"unknown mode", with(base, "mode", "preview"), nil, `…input "mode" must be deploy or event, got "preview"`},
			{"source without sluice.yaml", with(base, "source", "empty"), nil, `…input "source" names empty, which has no sluice.yaml at its root`},
			{"missing source", with(base, "source", "nope"), nil, `…input "source" names nope, which does not exist`},
			{"unreachable server", with(base, "server", "http://"+unusedAddr(t)), nil, "…cannot reach the sluice server at http://127.0.0.1:"},
			{"wrong token", with(base, "token", "not-the-token"), nil, "…unknown token"},
			{"revoked token", with(base, "token", revoked), nil, "…token revoked"},
			{"token of another repository", with(base, "token", otherRepo), nil, "…this token is scoped to acme/other; service hello belongs to acme/web"},
			{"event mode outside a workflow", with(base, "mode", "event"), nil, "…event mode runs in a workflow: GITHUB_EVENT_NAME and GITHUB_EVENT_PATH are not set"},
			{"event mode without a GitHub token", with(base, "mode", "event", "github-token", ""), eventEnv, `…input "github-token" is required in event mode`},
			{"event mode, wrong token", with(base, "mode", "event", "token", "not-the-token"), eventEnv, "…unknown token"},
			{"no Go on the runner", base, map[string]string{"PATH": noGo}, "::error::sluice: this action builds the sluice CLI with Go; add actions/setup-go before it"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				if tc.env["PATH"] == noGo && filepath.Dir(must(exec.LookPath("bash"))) == goDir {
					t.Skip("bash and go share a directory here; PATH cannot hide one")
				}
				res := r.runIn(t, tc.with, tc.env)
				lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
				want, part := strings.CutPrefix(tc.want, "…")
				ok := len(lines) == 1 && (lines[0] == want || part && strings.HasPrefix(lines[0], "::error::sluice: ") && strings.Contains(lines[0], want))
				if res.code == 0 || !ok {
					t.Fatalf("exit %d, stdout:\n%s\nwant exactly one line %s %q\nstderr:\n%s", res.code, res.stdout, map[bool]string{true: "containing", false: "equal to"}[part], want, res.stderr)
				}
				if len(res.outputs["version"]+res.outputs["status"]) > 0 {
					t.Errorf("a refused step set outputs %v", res.outputs)
				}
			})
		}
	})
	if after := snapshot(t, s); after != before {
		t.Fatalf("refused steps changed the server's state:\n%s\n%s", before, after)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// eventWorld is a repository on the fake GitHub that has not installed
// the App: only the workflow token reaches it. Its PR #1 (head headSHA)
// has the fixture's comment "/canary 10%" by a writer.
type eventWorld struct {
	gh       *githubtest.Server
	r        *actionRunner
	wfToken  string
	repo     string
	mainSHA  string
	headSHA  string
	comment  int64
	fixture  string
	workflow map[string]string // the event step's job environment
}

func newEventWorld(t *testing.T) *eventWorld {
	t.Helper()
	w := &eventWorld{wfToken: "ghs_workflow-token-for-tests", repo: "Codertocat/Hello-World",
		mainSHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", headSHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821", comment: 492700400}
	w.gh = githubtest.NewServer(t, githubtest.WithToken(w.wfToken))
	w.gh.AddRepo(w.repo, githubtest.RepoOpts{}) // no installation: the App is not there
	w.gh.SetCommit(w.repo, w.headSHA, map[string]string{"sluice.yaml": helloYAML(), "CHANGE": "x\n"})
	w.gh.SetPR(w.repo, 1, w.headSHA, "changes")
	w.gh.SetPermission(w.repo, "Codertocat", githubtest.PermWrite)
	w.gh.AddComment(w.repo, 1, githubtest.Comment{ID: w.comment, User: "Codertocat", Body: "/canary 10%"})

	w.r = newActionRunner(t)
	w.r.githubToken = w.wfToken
	w.r.env["GITHUB_REPOSITORY"] = w.repo
	w.r.env["GITHUB_API_URL"] = strings.TrimSuffix(w.gh.URL(), "/")
	w.r.writeSource(".", map[string]string{"sluice.yaml": helloYAML()})
	w.fixture = filepath.Join(w.r.temp, "event.json")
	if err := os.WriteFile(w.fixture, githubtest.Fixture(t, "issue_comment.created.pull_request.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.workflow = map[string]string{"GITHUB_EVENT_NAME": "issue_comment", "GITHUB_EVENT_PATH": w.fixture, "GITHUB_SHA": w.mainSHA}
	return w
}

// canary runs the fixture's "/canary 10%" through the action's event mode
// (after a deploy step made hello-001 the stable version) and checks that
// it did what the App does, with the workflow token only.
func (w *eventWorld) canary(t *testing.T, s *server, cred map[string]string, env map[string]string) actionResult {
	t.Helper()
	server := "http://" + s.api
	mustPass(t, w.r.run(map[string]string{"server": server, "token": adminToken}, map[string]string{"GITHUB_SHA": w.mainSHA}))
	if n := len(w.gh.Requests()); n != 0 {
		t.Fatalf("the deploy step sent %d requests to GitHub", n)
	}
	jobEnv := maps.Clone(w.workflow)
	maps.Copy(jobEnv, env)
	res := w.r.run(with(cred, "server", server, "mode", "event"), jobEnv)
	mustPass(t, res)

	st := apiStatus(t, s, "hello")
	if !maps.Equal(st.Policy.Split, map[string]int{"hello-001": 90, "hello-002": 10}) {
		t.Fatalf("split after /canary 10%% = %v, want hello-001 90, hello-002 10", st.Policy.Split)
	}
	if got := strings.Join(w.gh.Reactions(w.comment), ","); got != "eyes,rocket" {
		t.Errorf("reactions on the command = %q, want eyes,rocket", got)
	}
	var sticky []githubtest.Comment
	for _, c := range w.gh.Comments(w.repo, 1) {
		if c.User == githubtest.ActionsBot {
			sticky = append(sticky, c)
		}
	}
	if len(sticky) != 1 || !strings.Contains(sticky[0].Body, "hello-002") {
		t.Errorf("comments by %s on the PR = %+v, want one sticky comment about hello-002", githubtest.ActionsBot, sticky)
	}
	green := false
	for _, c := range w.gh.CheckRuns(w.repo) {
		if c.HeadSHA == w.mainSHA {
			t.Errorf("a check run on %s: the deploy step's version was reported by the event step", w.mainSHA)
		}
		green = green || c.HeadSHA == w.headSHA && c.Name == "sluice / hello" && c.Conclusion == "success"
	}
	if !green {
		t.Errorf("no successful check run sluice / hello on the PR head; check runs: %+v", w.gh.CheckRuns(w.repo))
	}
	for _, req := range w.gh.Requests() {
		if req.Authorization != "Bearer "+w.wfToken {
			t.Errorf("%s %s carried Authorization %q, want the workflow token", req.Method, req.Path, req.Authorization)
		}
	}
	if res.outputs["version"] != "hello-002" || res.outputs["status"] != "normal" {
		t.Errorf("event outputs = %v, want hello-002 normal", res.outputs)
	}
	for _, want := range []string{"`issue_comment` event handled", "| **hello-002** | normal | 10% |", "| hello-001 (stable) | normal | 90% |"} {
		if !strings.Contains(res.summary, want) {
			t.Errorf("event summary lacks %q:\n%s", want, res.summary)
		}
	}
	return res
}

func TestActionEventModeWithTheWorkflowToken(t *testing.T) {
	t.Parallel()
	w := newEventWorld(t)
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN="+adminToken)
	// GitHub fails the first deployment once: the report waits for its
	// retry, and the step waits for it rather than end with it unsent.
	w.gh.FailRoute(http.MethodPost, "/repos/"+w.repo+"/deployments", 1, http.StatusBadGateway, nil)
	w.canary(t, s, map[string]string{"token": adminToken}, nil)
	failed := slices.ContainsFunc(w.gh.Requests(), func(r githubtest.Request) bool {
		return r.Method == http.MethodPost && r.Path == "/repos/"+w.repo+"/deployments" && r.Status == http.StatusBadGateway
	})
	if !failed || len(w.gh.Deployments(w.repo)) == 0 {
		t.Errorf("deployment failed once: %v; deployments after the step: %d, want the retry sent", failed, len(w.gh.Deployments(w.repo)))
	}

	// "Re-run jobs" on that run: a new job (a fresh RUNNER_TEMP, so a fresh
	// journal) handles the same comment again. The PR's version is reused,
	// the split stays, and the sticky comment is found again, not doubled.
	rerun := maps.Clone(w.workflow)
	rerunTemp := t.TempDir()
	seedBuild(t, rerunTemp)
	maps.Copy(rerun, map[string]string{"RUNNER_TEMP": rerunTemp, "GITHUB_RUN_ID": fmt.Sprint(w.r.runID.Load()), "GITHUB_RUN_ATTEMPT": "2"})
	mustPass(t, w.r.run(map[string]string{"server": "http://" + s.api, "token": adminToken, "mode": "event"}, rerun))
	if st := apiStatus(t, s, "hello"); len(st.Versions) != 2 || !maps.Equal(st.Policy.Split, map[string]int{"hello-001": 90, "hello-002": 10}) {
		t.Fatalf("re-handling the comment changed the service: %+v", st)
	}
	n := 0
	for _, c := range w.gh.Comments(w.repo, 1) {
		if c.User == githubtest.ActionsBot {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d sluice comments on the PR after a re-run, want the one sticky comment", n)
	}
}

func TestActionOIDC(t *testing.T) {
	t.Parallel()
	w := newEventWorld(t)
	is := newIDIssuer(t, w.repo)
	api := freePort(t)
	s := startServer(t, t.TempDir(), api, freePort(t), "SLUICE_TOKEN="+adminToken,
		"SLUICE_PUBLIC_URL=http://"+api, "SLUICE_OIDC_ISSUER="+is.srv.URL, "SLUICE_OIDC_ALLOW="+w.repo)

	// An ID token for another audience is refused, in one line.
	before := snapshot(t, s)
	res := w.r.run(map[string]string{"server": "http://localhost:" + port(api), "oidc": "true"}, is.env())
	if errs := res.errorLines(); res.code == 0 || len(errs) != 1 || !strings.Contains(errs[0], "OIDC token has the wrong audience") {
		t.Fatalf("wrong audience: exit %d, stdout:\n%s", res.code, res.stdout)
	}
	if snapshot(t, s) != before {
		t.Fatal("a refused ID token changed the server's state")
	}
	// The event mode with an ID token: scoped to the repository, it reads
	// each service's history instead of the server-wide one.
	res = w.canary(t, s, map[string]string{"oidc": "true"}, is.env())
	if aud := is.minted(); len(aud) != 2 || aud[1] != "http://"+api {
		t.Errorf("ID tokens minted for audiences %q, want the server URL http://%s", aud, api)
	}
	if !strings.Contains(res.stdout, "::add-mask::") {
		t.Error("the ID token was not masked in the log")
	}
}
