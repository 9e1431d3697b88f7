package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/remote"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/internal/apitest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// remote.Engine is the bot's engine in the Action's event mode.
var _ bot.Engine = (*remote.Engine)(nil)

// client is a remote engine for srv with token; Wait gives up long
// after a loaded machine has started the test app.
func client(srv *apitest.Server, token string) *remote.Engine {
	e := remote.New(srv.URL, token)
	e.WaitTimeout = 5 * time.Minute
	return e
}

func version(t *testing.T, st rollout.ServiceStatus, name string) rollout.VersionStatus {
	t.Helper()
	for _, v := range st.Versions {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("%s has no version %s: %+v", st.Name, name, st.Versions)
	return rollout.VersionStatus{}
}

// must(call())(t) is call's value, or the end of the test with its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantSplit(t *testing.T, st rollout.ServiceStatus, stable string, split map[string]int) {
	t.Helper()
	if st.Stable != stable || !reflect.DeepEqual(st.Policy.Split, split) {
		t.Fatalf("stable %q split %v, want stable %q split %v", st.Stable, st.Policy.Split, stable, split)
	}
	for _, v := range st.Versions {
		if v.Traffic != split[v.Name] {
			t.Fatalf("%s has %d%%, want %d%%", v.Name, v.Traffic, split[v.Name])
		}
	}
}

// TestRemoteDrivesEveryOperationThroughTheAPI runs each operation of
// remote.Engine against the real API and checks what it answers with
// what the engine on the server then holds.
func TestRemoteDrivesEveryOperationThroughTheAPI(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	eng := client(srv, apitest.AdminToken)
	ctx := context.Background()
	who := rollout.Origin{Via: "action", Actor: "octocat", URL: "https://github.com/acme/web/actions/runs/1", Ref: "abc123", PR: 7, Repo: "acme/web"}

	v := must(eng.Deploy(ctx, rollout.DeployRequest{Service: "web", Archive: apitest.AppSource(t, "web", apitest.Serve), Strategy: rollout.StrategyFull, Origin: who}))(t)
	if v.Name != "web-001" || v.Status != rollout.StatusCreating {
		t.Fatalf("deploy answered %s %s, want web-001 creating", v.Name, v.Status)
	}
	eng.Wait()
	must(eng.Deploy(ctx, rollout.DeployRequest{Service: "web", Archive: apitest.AppSource(t, "web", apitest.Serve), Strategy: rollout.StrategyCanary, Origin: who}))(t)
	eng.Wait()
	st := must(eng.Status(ctx, "web"))(t)
	if version(t, st, "web-002").Status != rollout.StatusNormal || st.Repo != "acme/web" {
		t.Fatalf("after two deploys: %+v", st)
	}
	wantSplit(t, st, "web-001", map[string]int{"web-001": 100})

	st = must(eng.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-001": 90, "web-002": 10}}, who))(t)
	wantSplit(t, st, "web-001", map[string]int{"web-001": 90, "web-002": 10})

	st = must(eng.Route(ctx, "web", policy.Rule{Version: "web-002", Match: map[string]string{"env": "beta*"}}, who))(t)
	if len(st.Policy.Rules) != 1 || st.Policy.Rules[0].Version != "web-002" || st.Policy.Rules[0].Match["env"] != "beta*" {
		t.Fatalf("route: rules %+v", st.Policy.Rules)
	}
	p := must(eng.Predict(ctx, "web", "env=beta2&x=1"))(t)
	if p.Version != "web-002" || p.Rule != 1 {
		t.Fatalf("predict env=beta2: %+v", p)
	}
	if p = must(eng.Predict(ctx, "web", "env=prod"))(t); p.Version != "" || p.Rule != 0 || len(p.Split) != 2 {
		t.Fatalf("predict env=prod: %+v", p)
	}
	if st = must(eng.ClearRoutes(ctx, "web", "web-002", who))(t); len(st.Policy.Rules) != 0 {
		t.Fatalf("clear routes: rules %+v", st.Policy.Rules)
	}

	st = must(eng.Promote(ctx, "web", "web-002", false, who))(t)
	wantSplit(t, st, "web-002", map[string]int{"web-002": 100})
	st = must(eng.Rollback(ctx, "web", "", who))(t)
	wantSplit(t, st, "web-001", map[string]int{"web-001": 100})
	must(eng.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-001": 80, "web-002": 20}}, who))(t)
	st = must(eng.Abort(ctx, "web", "web-002", who))(t)
	wantSplit(t, st, "web-001", map[string]int{"web-001": 100})

	// In place: a JSON body, then a new source with the overrides as
	// query parameters.
	greeting := "hello"
	v = must(eng.Redeploy(ctx, "web", "web-001", rollout.RedeployRequest{Env: map[string]string{"GREETING": greeting}, Origin: who}))(t)
	if v.Name != "web-001" {
		t.Fatalf("redeploy answered %s", v.Name)
	}
	n := 2
	must(eng.Redeploy(ctx, "web", "web-002", rollout.RedeployRequest{Archive: apitest.AppSource(t, "web", apitest.Serve),
		Env: map[string]string{"GREETING": "a=b"}, Instances: &n, Origin: who}))(t)
	eng.Wait()
	st = must(eng.Status(ctx, "web"))(t)
	if c := version(t, st, "web-001").Config; c.Env["GREETING"] != greeting {
		t.Fatalf("web-001 after a JSON redeploy: env %v", c.Env)
	}
	if v2 := version(t, st, "web-002"); v2.Status != rollout.StatusNormal || v2.Config.Env["GREETING"] != "a=b" || v2.Config.Instances != 2 {
		t.Fatalf("web-002 after an archive redeploy: %s env %v instances %d", v2.Status, v2.Config.Env, v2.Config.Instances)
	}

	if err := eng.StopVersion(ctx, "web", "web-002", who); err != nil {
		t.Fatal(err)
	}
	if s := version(t, must(eng.Status(ctx, "web"))(t), "web-002").Status; s != rollout.StatusStopped {
		t.Fatalf("web-002 after stop: %s", s)
	}

	if names := must(eng.Services(context.Background()))(t); !slices.Equal(names, []string{"web"}) {
		t.Fatalf("services: %v", names)
	}
	evs := must(eng.Events(context.Background(), "web", 0, 0))(t)
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	if o := evs[0].Origin; o.Via != who.Via || o.Actor != who.Actor || o.URL != who.URL || o.Ref != who.Ref || o.PR != who.PR || o.Repo != who.Repo {
		t.Fatalf("the first event's origin is %+v, want the one sent: %+v", o, who)
	}
	if page := must(eng.Events(context.Background(), "web", evs[1].Seq, 2))(t); len(page) != 2 || page[0].Seq != evs[2].Seq {
		t.Fatalf("events after %d, limit 2: %+v", evs[1].Seq, page)
	}
	if last := must(eng.LastEvent(context.Background()))(t); last != evs[len(evs)-1].Seq {
		t.Fatalf("last event %d, want %d", last, evs[len(evs)-1].Seq)
	}

	var raw []byte
	if err := eng.Call(ctx, wire.GetVersion, []string{"web", "web-001"}, nil, nil, "", nil, &raw); err != nil {
		t.Fatal(err)
	}
	var got rollout.VersionStatus
	if err := json.Unmarshal(raw, &got); err != nil || got.Name != "web-001" || got.URL == "" {
		t.Fatalf("raw answer %s: %v", raw, err)
	}
}

// TestRemoteTurnsRefusalsIntoEngineErrors checks that each refusal of
// the API comes back as what a local engine would return: a
// *rollout.Error of the right kind and code, or a refused credential the
// bot does not retry; and that none of them changed anything.
func TestRemoteTurnsRefusalsIntoEngineErrors(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	admin := client(srv, apitest.AdminToken)
	ctx := context.Background()
	who := rollout.Origin{Via: "cli", Repo: "acme/web"}
	must(admin.Deploy(ctx, rollout.DeployRequest{Service: "web", Archive: apitest.AppSource(t, "web", apitest.Exit), Origin: who}))(t)
	admin.Wait()
	if s := version(t, must(admin.Status(ctx, "web"))(t), "web-001").Status; s == rollout.StatusNormal || s == rollout.StatusCreating {
		t.Fatalf("web-001 is %s, want failed", s)
	}
	other, _, err := srv.Auth.Issue("acme/other", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger := client(srv, other)
	big := bytes.Repeat([]byte{0}, apitest.MaxUpload+1)

	for _, tc := range []struct {
		name string
		call func() error
		kind rollout.Kind
		code string
	}{
		{"404 unknown service", func() error { _, err := admin.Status(ctx, "nope"); return err }, rollout.KindNotFound, rollout.ErrCodeUnknownService},
		{"404 unknown version", func() error {
			_, err := admin.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-404": 100}}, who)
			return err
		}, rollout.KindNotFound, rollout.ErrCodeUnknownVersion},
		{"409 version not normal", func() error {
			_, err := admin.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-001": 100}}, who)
			return err
		}, rollout.KindConflict, "version_not_normal"},
		{"409 no stable version", func() error { _, err := admin.Rollback(ctx, "web", "", who); return err }, rollout.KindConflict, "no_stable_version"},
		{"400 split does not sum to 100", func() error {
			_, err := admin.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-001": 50}}, who)
			return err
		}, rollout.KindInvalid, "invalid_policy"},
		{"400 promote names no version", func() error { _, err := admin.Promote(ctx, "web", "", false, who); return err }, rollout.KindInvalid, "invalid_parameter"},
		{"400 bad glob", func() error {
			_, err := admin.Route(ctx, "web", policy.Rule{Version: "web-001", Match: map[string]string{"env": "[x"}}, who)
			return err
		}, rollout.KindInvalid, "invalid_rule"},
		{"413 upload too large", func() error {
			_, err := admin.Deploy(ctx, rollout.DeployRequest{Service: "web", Archive: big, Origin: who})
			return err
		}, rollout.KindInvalid, "source_too_large"},
		{"403 another repository's service", func() error {
			_, err := stranger.Traffic(ctx, "web", rollout.TrafficRequest{Split: map[string]int{"web-001": 100}}, who)
			return err
		}, rollout.KindForbidden, "forbidden"},
		{"403 another repository's version", func() error { return stranger.StopVersion(ctx, "web", "web-001", who) }, rollout.KindForbidden, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := must(srv.World.Engine.Status(ctx, "web"))(t)
			err := tc.call()
			re, ok := rollout.AsError(err)
			if !ok || re.Kind != tc.kind || re.Code != tc.code || re.Message == "" {
				t.Fatalf("got %#v (%v), want a *rollout.Error of kind %v with code %s and a message", err, err, tc.kind, tc.code)
			}
			after := must(srv.World.Engine.Status(ctx, "web"))(t)
			if len(after.Versions) != len(before.Versions) || !reflect.DeepEqual(after.Policy, before.Policy) {
				t.Fatalf("a refusal changed the service: %+v -> %+v", before, after)
			}
		})
	}
}

// TestRemoteSaysWhyItCannotTalkToTheAPI covers the answers that are not
// the engine's: a refused credential, the router's port, no server.
func TestRemoteSaysWhyItCannotTalkToTheAPI(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t)
	for _, tc := range []struct{ token, code string }{{"", "unauthorized"}, {"wrong", "unknown_token"}} {
		_, err := client(srv, tc.token).Services(context.Background())
		var perm interface {
			Permanent() bool
			Code() string
		}
		if !errors.Is(err, remote.ErrRefused) || !errors.As(err, &perm) || !perm.Permanent() || perm.Code() != tc.code {
			t.Fatalf("token %q: got %v, want a permanent credential refusal with code %s", tc.token, err, tc.code)
		}
		if _, ok := rollout.AsError(err); ok {
			t.Fatalf("token %q: a refused credential came back as an engine error: %v", tc.token, err)
		}
	}

	if _, err := remote.New(srv.World.Server.URL, apitest.AdminToken).Services(context.Background()); !errors.Is(err, remote.ErrRouter) {
		t.Fatalf("the router's address: got %v, want ErrRouter", err)
	}

	gone := httptest.NewServer(nil)
	gone.Close()
	_, err := remote.New(gone.URL, apitest.AdminToken).Services(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the sluice server at "+gone.URL) {
		t.Fatalf("a closed address: got %v", err)
	}
}

// A server that accepts a read and never answers holds the caller only as
// long as the caller's context (or Wait's timeout) allows, not for the
// HTTP client's ten minutes.
func TestRemoteReadsEndWithTheirContext(t *testing.T) {
	t.Parallel()
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hung:
		}
	}))
	t.Cleanup(func() { close(hung); srv.Close() })
	eng := remote.New(srv.URL, apitest.AdminToken)
	const bound = 10 * time.Second // far below the HTTP client's timeout
	for name, read := range map[string]func(context.Context) error{
		"Services":  func(ctx context.Context) error { _, err := eng.Services(ctx); return err },
		"Events":    func(ctx context.Context) error { _, err := eng.Events(ctx, "hello", 0, 10); return err },
		"LastEvent": func(ctx context.Context) error { _, err := eng.LastEvent(ctx); return err },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := read(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > bound {
			t.Errorf("%s against a server that never answers: %v after %s; want the context's deadline", name, err, time.Since(start))
		}
	}
	eng.WaitTimeout = 100 * time.Millisecond
	start := time.Now()
	eng.Wait()
	if d := time.Since(start); d > bound {
		t.Errorf("Wait with a 100ms timeout took %s against a server that never answers", d)
	}
}
