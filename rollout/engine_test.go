package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// harness is a real engine: bbolt in a temp dir, the local runtime running
// real processes, and the router behind a real HTTP listener.
type harness struct {
	t      *testing.T
	eng    *rollout.Engine
	srv    *enginetest.Front
	client *http.Client
}

var cli = rollout.Origin{Via: "test", Actor: "tester", Principal: rollout.AdminPrincipal}

func newHarness(t *testing.T, opts ...rollout.Option) *harness {
	t.Helper()
	w := enginetest.New(t, t.TempDir(), append([]rollout.Option{rollout.WithDrainGrace(3 * time.Second)}, opts...)...)
	return &harness{t: t, eng: w.Engine, srv: w.Server,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}}
}

// with returns a copy of h that reports failures to t (a subtest).
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// deploy deploys a test app and waits for the outcome.
func (h *harness) deploy(service, mode string, strategy rollout.Strategy, extra string) rollout.VersionStatus {
	h.t.Helper()
	v, err := h.eng.Deploy(context.Background(), rollout.DeployRequest{Service: service,
		Archive: appSource(h.t, service, mode, extra), Strategy: strategy, Origin: cli})
	if err != nil {
		h.t.Fatalf("deploy: %v", err)
	}
	h.eng.Wait()
	return h.version(service, v.Name)
}

func (h *harness) version(service, name string) rollout.VersionStatus {
	h.t.Helper()
	st, err := h.eng.Status(context.Background(), service)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, v := range st.Versions {
		if v.Name == name {
			return v
		}
	}
	h.t.Fatalf("no version %s", name)
	return rollout.VersionStatus{}
}

func (h *harness) status(service string) rollout.ServiceStatus {
	h.t.Helper()
	st, err := h.eng.Status(context.Background(), service)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// get sends one request through the router with a Host header and returns
// the serving version (X-Sluice-Version), body and status code.
func (h *harness) get(host, query string) (string, string, int, error) {
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/?"+query, nil)
	req.Host = host
	resp, err := h.client.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Header.Get("X-Sluice-Version"), string(b), resp.StatusCode, err
}

// served counts which versions serve n requests to the service host.
func (h *harness) served(service string, n int, query string) map[string]int {
	h.t.Helper()
	out := map[string]int{}
	for range n {
		v, _, code, err := h.get(service+".localhost", query)
		if err != nil || code != 200 {
			h.t.Fatalf("request failed: %v %d", err, code)
		}
		out[v]++
	}
	return out
}

func mustNormal(t *testing.T, v rollout.VersionStatus) {
	t.Helper()
	if v.Status != rollout.StatusNormal {
		t.Fatalf("%s is %s: %+v", v.Name, v.Status, v.Reason)
	}
}

func TestCanaryGetsNothingUntilAskedThenItsShare(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	mustNormal(t, v1)
	if got := h.served("hello", 20, ""); got[v1.Name] != 20 {
		t.Fatalf("after full deploy: %v", got)
	}
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	mustNormal(t, v2)
	if got := h.served("hello", 200, ""); got[v1.Name] != 200 {
		t.Fatalf("canary took traffic before being asked: %v", got)
	}
	// Its version URL reaches it directly.
	if v, body, code, _ := h.get(v2.Name+".hello.localhost", ""); v != v2.Name || code != 200 || !strings.HasPrefix(body, v2.Name) {
		t.Fatalf("version URL: %s %d %q", v, code, body)
	}
	if _, err := h.eng.Traffic(context.Background(), "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 90, v2.Name: 10}}, cli); err != nil {
		t.Fatal(err)
	}
	got := h.served("hello", 2000, "")
	share := float64(got[v2.Name]) / 20
	if share < 7 || share > 13 || got[v1.Name]+got[v2.Name] != 2000 {
		t.Fatalf("90/10 split served %v (v2 share %.1f%%)", got, share)
	}
	st := h.status("hello")
	if st.Stable != v1.Name || st.Policy.Split[v1.Name] != 90 || st.URL != "http://hello.localhost:"+h.port()+"/" {
		t.Fatalf("status: %+v", st)
	}
}

func (h *harness) port() string {
	_, p, _ := strings.Cut(h.srv.Listener.Addr().String(), ":")
	return p
}

func TestRuleRoutesMatchingRequestsAndPredictAgrees(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	v3 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	ctx := context.Background()
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 50, v3.Name: 50}}, cli); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v2.Name, Match: map[string]string{"env": "beta*"}}, cli); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v3.Name, Match: map[string]string{"region": "eu-?", "tier": "[ab]*"}}, cli); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"env=beta", "env=beta-2&x=1", "env=prod&env=beta7", "env=beta%20one"} {
		if got := h.served("hello", 10, q); got[v2.Name] != 10 {
			t.Fatalf("%q: %v", q, got)
		}
	}
	envs := []string{"beta", "betamax", "prod", "", "bet", "BETA", "beta%2F1", "x"}
	regions := []string{"eu-1", "eu-12", "us-1", "eu-x"}
	tiers := []string{"a", "b2", "c", "ab"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		var parts []string
		if rng.IntN(3) > 0 {
			parts = append(parts, "env="+envs[rng.IntN(len(envs))])
		}
		if rng.IntN(2) > 0 {
			parts = append(parts, "region="+regions[rng.IntN(len(regions))])
		}
		if rng.IntN(2) > 0 {
			parts = append(parts, "tier="+tiers[rng.IntN(len(tiers))])
		}
		if rng.IntN(5) == 0 {
			parts = append(parts, "env")
		}
		rng.Shuffle(len(parts), func(a, b int) { parts[a], parts[b] = parts[b], parts[a] })
		q := strings.Join(parts, "&")
		p, err := h.eng.Predict(ctx, "hello", q)
		if err != nil {
			t.Fatal(err)
		}
		served, _, code, err := h.get("hello.localhost", q)
		if err != nil || code != 200 {
			t.Fatalf("query %d %q: %v %d", i, q, err, code)
		}
		if p.Version != "" {
			if served != p.Version {
				t.Fatalf("query %q: predicted %s (%s), served %s", q, p.Version, p.Reason, served)
			}
			continue
		}
		if p.Rule != 0 || (served != v1.Name && served != v3.Name) {
			t.Fatalf("query %q: predicted random split (%s), served %s", q, p.Reason, served)
		}
	}
	p, err := h.eng.Predict(ctx, "hello", "?env=beta1")
	if err != nil || p.Version != v2.Name || p.Rule != 1 || !strings.Contains(p.Reason, "env=beta*") {
		t.Fatalf("predict: %+v %v", p, err)
	}
}

func TestPromoteAndRollbackMoveAllTrafficAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 90, v2.Name: 10}}, cli); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v1.Name, Match: map[string]string{"pin": "old"}}, cli); err != nil {
		t.Fatal(err)
	}
	st, err := h.eng.Promote(ctx, "hello", v2.Name, false, cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stable != v2.Name || len(st.Policy.Rules) != 0 {
		t.Fatalf("after promote: %+v", st)
	}
	if got := h.served("hello", 100, "pin=old"); got[v2.Name] != 100 {
		t.Fatalf("after promote: %v", got)
	}
	st, err = h.eng.Rollback(ctx, "hello", "", cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stable != v1.Name || !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("after rollback: %+v", st)
	}
	if got := h.served("hello", 100, ""); got[v1.Name] != 100 {
		t.Fatalf("after rollback: %v", got)
	}
	// Nothing before v1: a second rollback has nowhere to go.
	if _, err := h.eng.Rollback(ctx, "hello", "", cli); !isKind(err, rollout.KindConflict) {
		t.Fatalf("second rollback: %v", err)
	}
	// A named rollback works both ways.
	if st, err = h.eng.Rollback(ctx, "hello", v2.Name, cli); err != nil || st.Stable != v2.Name {
		t.Fatalf("named rollback: %v %+v", err, st)
	}
}

func isKind(err error, k rollout.Kind) bool {
	e, ok := rollout.AsError(err)
	return ok && e.Kind == k
}

func TestFailedDeploysExplainThemselvesAndGetNoTraffic(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	cases := []struct {
		mode, extra, code, inDetail string
	}{
		{"exit", "", "ProcessExited", "cannot open config file"},
		{"nolisten", "", "PortNotListening", "ignoring $PORT"},
		{"unhealthy", "", "HealthCheckFailed", "503"},
		{"serve", `build: "echo compiling; echo 'main.go:3: undefined: x' >&2; exit 2"`, "BuildFailed", "undefined: x"},
	}
	// The failing versions are deployed side by side (the one that never
	// listens takes its whole start timeout); each fails on its own.
	names := make([]string, len(cases))
	for i, tc := range cases {
		v, err := h.eng.Deploy(context.Background(), rollout.DeployRequest{Service: "hello",
			Archive: appSource(t, "hello", tc.mode, tc.extra), Strategy: rollout.StrategyFull, Origin: cli})
		if err != nil {
			t.Fatalf("deploy %s: %v", tc.mode, err)
		}
		names[i] = v.Name
	}
	h.eng.Wait()
	for i, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			h := h.with(t)
			v := h.version("hello", names[i])
			if v.Status != rollout.StatusFailed || string(v.Reason.Code) != tc.code {
				t.Fatalf("got %s %+v", v.Status, v.Reason)
			}
			if !strings.Contains(v.Reason.Detail, tc.inDetail) || v.Reason.Suggestion == "" {
				t.Fatalf("reason lacks detail or suggestion: %+v", v.Reason)
			}
			if len(v.Instances) != 0 {
				t.Fatalf("failed version left instances: %+v", v.Instances)
			}
			if got := h.served("hello", 30, ""); got[v1.Name] != 30 {
				t.Fatalf("traffic moved to a failed version: %v", got)
			}
			if _, err := h.eng.Traffic(context.Background(), "hello", rollout.TrafficRequest{Split: map[string]int{v.Name: 100}}, cli); !isKind(err, rollout.KindConflict) {
				t.Fatalf("traffic to a failed version: %v", err)
			}
		})
	}
}

func TestInPlaceRedeploy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	before := v1.Config

	// A failing redeploy: the new instances never get healthy.
	mode := "unhealthy"
	if _, err := h.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Env: map[string]string{"TESTAPP_MODE": mode}, Origin: cli}); err != nil {
		t.Fatal(err)
	}
	h.eng.Wait()
	v := h.version("hello", v1.Name)
	if v.Status != rollout.StatusDeployFailed || v.Reason.Code != "HealthCheckFailed" || v.Reason.Suggestion == "" {
		t.Fatalf("failed redeploy: %s %+v", v.Status, v.Reason)
	}
	if !reflect.DeepEqual(v.Config, before) || v.Generation != 1 {
		t.Fatalf("config changed by a failed redeploy: %+v", v.Config)
	}
	if _, body, code, _ := h.get("hello.localhost", ""); code != 200 || body != v1.Name+" hi" {
		t.Fatalf("old instances stopped serving: %d %q", code, body)
	}

	// A successful one serves the new configuration; weights unchanged.
	two := 2
	if _, err := h.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Env: map[string]string{"GREETING": "bonjour"}, Instances: &two, Origin: cli}); err != nil {
		t.Fatal(err)
	}
	h.eng.Wait()
	v = h.version("hello", v1.Name)
	mustNormal(t, v)
	if v.Config.Env["GREETING"] != "bonjour" || v.Config.Instances != 2 || len(v.Instances) != 2 || v.Generation != 2 {
		t.Fatalf("after redeploy: %+v gen %d, %d instances", v.Config, v.Generation, len(v.Instances))
	}
	for range 20 {
		if _, body, code, _ := h.get("hello.localhost", ""); code != 200 || body != v1.Name+" bonjour" {
			t.Fatalf("new config not served: %d %q", code, body)
		}
	}
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("redeploy changed weights: %v", st.Policy.Split)
	}
}

func TestNoRequestFailsDuringChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	var (
		stop   atomic.Bool
		total  atomic.Int64
		failed atomic.Int64
		first  sync.Once
		ferr   error
		wg     sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				q := ""
				if i%3 == 0 {
					q = fmt.Sprintf("env=beta%d", w)
				}
				if i%7 == 0 {
					q += "&sleep=20ms"
				}
				_, _, code, err := h.get("hello.localhost", q)
				total.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
					first.Do(func() { ferr = fmt.Errorf("code %d: %v", code, err) })
				}
			}
		}()
	}
	step := func(f func() error) {
		if err := f(); err != nil {
			t.Error(err)
		}
	}
	for i := range 30 {
		a := rand.IntN(101)
		step(func() error {
			_, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: a, v2.Name: 100 - a}}, cli)
			return err
		})
		step(func() error {
			_, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v2.Name, Match: map[string]string{"env": "beta*"}}, cli)
			return err
		})
		switch i % 3 {
		case 0:
			step(func() error { _, err := h.eng.Promote(ctx, "hello", v2.Name, false, cli); return err })
		case 1:
			step(func() error { _, err := h.eng.Rollback(ctx, "hello", v1.Name, cli); return err })
		default:
			step(func() error { _, err := h.eng.ClearRoutes(ctx, "hello", "", cli); return err })
		}
		if i%10 == 0 {
			step(func() error {
				_, err := h.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Env: map[string]string{"GREETING": fmt.Sprint("g", i)}, Origin: cli})
				return err
			})
			step(func() error {
				_, err := h.eng.Redeploy(ctx, "hello", v2.Name, rollout.RedeployRequest{Env: map[string]string{"GREETING": fmt.Sprint("g", i)}, Origin: cli})
				return err
			})
			h.eng.Wait()
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 || total.Load() < 200 {
		t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), total.Load(), ferr)
	}
	t.Logf("%d requests, none failed", total.Load())
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	failedV := h.deploy("hello", "exit", rollout.StrategyCanary, "")
	before := h.status("hello")
	evBefore, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
	split := func(m map[string]int) error {
		_, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: m}, cli)
		return err
	}
	for _, tc := range []struct {
		name string
		kind rollout.Kind
		do   func() error
	}{
		{"sum 110", rollout.KindInvalid, func() error { return split(map[string]int{v1.Name: 110}) }},
		{"sum 90", rollout.KindInvalid, func() error { return split(map[string]int{v1.Name: 90}) }},
		{"negative", rollout.KindInvalid, func() error { return split(map[string]int{v1.Name: 105, failedV.Name: -5}) }},
		{"unknown version", rollout.KindNotFound, func() error { return split(map[string]int{"hello-999": 100}) }},
		{"failed version", rollout.KindConflict, func() error { return split(map[string]int{failedV.Name: 100}) }},
		{"unknown service", rollout.KindNotFound, func() error {
			_, err := h.eng.Traffic(ctx, "nope", rollout.TrafficRequest{Split: map[string]int{v1.Name: 100}}, cli)
			return err
		}},
		{"empty rule", rollout.KindInvalid, func() error {
			_, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v1.Name}, cli)
			return err
		}},
		{"bad glob", rollout.KindInvalid, func() error {
			_, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v1.Name, Match: map[string]string{"env": "[beta"}}, cli)
			return err
		}},
		{"rule to failed version", rollout.KindConflict, func() error {
			_, err := h.eng.Route(ctx, "hello", policy.Rule{Version: failedV.Name, Match: map[string]string{"env": "x"}}, cli)
			return err
		}},
		{"not a tar.gz", rollout.KindInvalid, func() error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: []byte("hello world"), Origin: cli})
			return err
		}},
		{"manifest unknown field", rollout.KindInvalid, func() error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", "instancs: 2"), Origin: cli})
			if e, ok := rollout.AsError(err); !ok || len(e.Problems) == 0 || e.Problems[0].Line == 0 || !strings.Contains(e.Message, "sluice.yaml:") {
				return fmt.Errorf("manifest error without position: %v", err)
			}
			return err
		}},
		{"manifest impossible value", rollout.KindInvalid, func() error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", "instances: -1"), Origin: cli})
			return err
		}},
		{"service not in manifest", rollout.KindInvalid, func() error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "other", Archive: appSource(t, "hello", "serve", ""), Origin: cli})
			return err
		}},
		{"redeploy bad instances", rollout.KindInvalid, func() error {
			n := 0
			_, err := h.eng.Redeploy(ctx, "hello", v1.Name, rollout.RedeployRequest{Instances: &n, Origin: cli})
			return err
		}},
		{"redeploy failed version", rollout.KindConflict, func() error {
			_, err := h.eng.Redeploy(ctx, "hello", failedV.Name, rollout.RedeployRequest{Origin: cli})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			err := tc.do()
			if !isKind(err, tc.kind) {
				t.Fatalf("want a %s error, got %v", tc.kind, err)
			}
			var re *rollout.Error
			if errors.As(err, &re) && (re.Message == "" || re.Code == "") {
				t.Fatalf("error without message or code: %+v", re)
			}
			h.eng.Wait()
			after := h.status("hello")
			if !reflect.DeepEqual(stripInstances(after), stripInstances(before)) {
				t.Fatalf("state changed:\nbefore %+v\nafter  %+v", before, after)
			}
			evAfter, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
			if len(evAfter) != len(evBefore) {
				t.Fatalf("history grew by %d events", len(evAfter)-len(evBefore))
			}
			if got := h.served("hello", 5, "env=x"); got[v1.Name] != 5 {
				t.Fatalf("router changed: %v", got)
			}
		})
	}
}

func stripInstances(s rollout.ServiceStatus) rollout.ServiceStatus {
	for i := range s.Versions {
		s.Versions[i].Instances = nil
		s.Versions[i].Served = rollout.Served{}
	}
	return s
}

func TestAbortGivesStableItsShareBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 70, v2.Name: 30}}, cli); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v2.Name, Match: map[string]string{"env": "beta"}}, cli); err != nil {
		t.Fatal(err)
	}
	st, err := h.eng.Abort(ctx, "hello", v2.Name, cli)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) || len(st.Policy.Rules) != 0 {
		t.Fatalf("after abort: %+v", st.Policy)
	}
	if got := h.served("hello", 30, "env=beta"); got[v1.Name] != 30 {
		t.Fatalf("after abort: %v", got)
	}
	// A second abort changes nothing, says so, and records nothing.
	before, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
	_, err = h.eng.Abort(ctx, "hello", v2.Name, cli)
	if re, ok := rollout.AsError(err); !ok || re.Code != rollout.ErrCodeUnchanged || !strings.Contains(re.Message, "nothing changed") {
		t.Fatalf("second abort: %v, want %s saying nothing changed", err, rollout.ErrCodeUnchanged)
	}
	if after, _ := h.eng.Events(context.Background(), "hello", 0, 1000); len(after) != len(before) {
		t.Errorf("second abort recorded %d events", len(after)-len(before))
	}
}

func TestRetireStopsIdleVersionsAndRollbackStartsThemAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	if got := h.served("hello", 10, ""); got[v2.Name] != 10 {
		t.Fatalf("full deploy of v2: %v", got)
	}
	stopped, err := h.eng.Retire(ctx, "hello", time.Hour, cli)
	if err != nil || len(stopped) != 0 {
		t.Fatalf("retire before idle time: %v %v", stopped, err)
	}
	stopped, err = h.eng.Retire(ctx, "hello", 0, cli)
	if err != nil || !reflect.DeepEqual(stopped, []string{v1.Name}) {
		t.Fatalf("retire: %v %v", stopped, err)
	}
	v := h.version("hello", v1.Name)
	if v.Status != rollout.StatusStopped || len(v.Instances) != 0 {
		t.Fatalf("retired version: %s %d instances", v.Status, len(v.Instances))
	}
	if _, body, code, _ := h.get(v1.Name+".hello.localhost", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopped") {
		t.Fatalf("stopped version URL answered %d %q, want 503 saying it is stopped", code, body)
	}
	st, err := h.eng.Rollback(ctx, "hello", "", cli)
	if err != nil || st.Stable != v1.Name {
		t.Fatalf("rollback to a stopped version: %v %+v", err, st)
	}
	mustNormal(t, h.version("hello", v1.Name))
	if got := h.served("hello", 10, ""); got[v1.Name] != 10 {
		t.Fatalf("after rollback: %v", got)
	}
	evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
	var ops []string
	for _, e := range evs {
		ops = append(ops, string(e.Op))
	}
	if !strings.Contains(strings.Join(ops, ","), "retire,start,rollback") {
		t.Fatalf("history: %v", ops)
	}
}

func TestTrafficAndRedeployStartARetiredVersion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v3 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	if stopped, err := h.eng.Retire(ctx, "hello", 0, cli); err != nil || len(stopped) != 2 {
		t.Fatalf("retire: %v %v", stopped, err)
	}
	// A policy refused for its own sake starts nothing.
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 50}}, cli); err == nil {
		t.Fatal("a split summing to 50 was accepted")
	}
	if v := h.version("hello", v1.Name); v.Status != rollout.StatusStopped {
		t.Fatalf("a refused policy started %s: %s", v1.Name, v.Status)
	}
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 50, v3.Name: 50}}, cli); err != nil {
		t.Fatalf("traffic to a retired version: %v", err)
	}
	mustNormal(t, h.version("hello", v1.Name))
	if got := h.served("hello", 20, ""); got[v1.Name] == 0 {
		t.Fatalf("the retired version got no traffic: %v", got)
	}
	// Redeploy starts a retired version, then redeploys it in place.
	if _, err := h.eng.Redeploy(ctx, "hello", v2.Name, rollout.RedeployRequest{Env: map[string]string{"X": "1"}, Origin: cli}); err != nil {
		t.Fatalf("redeploy of a retired version: %v", err)
	}
	h.eng.Wait()
	v := h.version("hello", v2.Name)
	mustNormal(t, v)
	if v.Config.Env["X"] != "1" || len(v.Instances) == 0 {
		t.Fatalf("redeployed retired version: env %v, %d instances", v.Config.Env, len(v.Instances))
	}
	if _, _, code, _ := h.get(v2.Name+".hello.localhost", ""); code != http.StatusOK {
		t.Fatalf("the redeployed version's URL answered %d", code)
	}
}

func TestStatusShowsWhatEachVersionServed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	h.served("hello", 25, "")
	v := h.version("hello", v1.Name)
	if v.Served.Requests != 25 || v.Served.ErrorRate != 0 || v.Served.P99Ms <= 0 {
		t.Fatalf("served: %+v", v.Served)
	}
}
