package kube

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestAutomaticCanaryOnPrometheus runs automatic canaries on this runtime
// with their figures read from Prometheus (a strict stand-in on loopback
// speaking its HTTP API): a healthy step advances, a step without series
// holds and says why, a step whose 5xx rate breaks the plan takes the
// canary out of the route. The HTTPRoute is checked after each step.
func TestAutomaticCanaryOnPrometheus(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	startControllers(t, ns)
	prom := newPromStandIn(t)
	queries, _ := ShippedQueries(GatewayIstio)
	src, err := NewPrometheus(prom.srv.URL, queries, func(string) string { return ns })
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	srv, err := startServer(k8s, filepath.Join(t.TempDir(), "sluice.db"), ns, slog.New(slog.DiscardHandler),
		rollout.WithClock(clk.now), rollout.WithCanaryMetrics(src))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	ctx := context.Background()
	at := Placement{Namespace: ns, Gateway: testGateway, BaseDomain: "apps.example.com"}
	origin := rollout.Origin{Via: "test", Principal: rollout.Principal{Admin: true}}
	const plan = "    canary: {steps: [10, 50, 100], interval: 1m, max_error_rate: 5%, max_p99: 500ms}\n"
	deploy := func(sha string, auto bool) rollout.Version {
		t.Helper()
		src, err := manifestArchiveWith("registry.example/hello:{{.SHA}}", ns, plan)
		if err != nil {
			t.Fatal(err)
		}
		strategy := rollout.StrategyFull
		if auto {
			strategy = rollout.StrategyCanary
		}
		origin.Ref = sha
		v, err := srv.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: src, Strategy: strategy, AutoCanary: auto, Origin: origin})
		if err != nil {
			t.Fatalf("deploy: %v", err)
		}
		srv.eng.Wait()
		return v
	}
	routeIs := func(step string, split map[string]int) {
		t.Helper()
		serviceRouteIs(t, step, "hello", policy.Policy{Split: split}, at)
	}
	// step moves the clock by d and runs a canary round, Prometheus
	// answering for version over the window since start as answers says.
	step := func(version string, start time.Time, d time.Duration, requests, errors, p99 string) {
		t.Helper()
		clk.add(d)
		now := clk.now()
		rq, eq, pq, err := queries.Render(QueryData{Namespace: ns, Service: "hello", Version: version, Window: Window(start, now)})
		if err != nil {
			t.Fatal(err)
		}
		answer := func(v string) string {
			if v == "" {
				return "[]"
			}
			return sample(now, v)
		}
		answers := map[string]string{rq: answer(requests)}
		if requests != "" {
			answers[eq], answers[pq] = answer(errors), answer(p99)
		}
		prom.expect(now, answers)
		if err := srv.eng.AdvanceCanaries(ctx); err != nil {
			t.Fatalf("advance: %v", err)
		}
	}

	v1 := deploy("aaa111", false)
	v2 := deploy("bbb222", true)
	routeIs("first step", map[string]int{v1.Name: 90, v2.Name: 10})
	start := clk.now()
	step(v2.Name, start, 61*time.Second, "120", "1", "80")
	routeIs("healthy step", map[string]int{v1.Name: 50, v2.Name: 50})

	// No series: the step holds, the history and the status say why.
	start = clk.now()
	step(v2.Name, start, 61*time.Second, "", "", "")
	step(v2.Name, start, 30*time.Second, "", "", "")
	routeIs("no figures", map[string]int{v1.Name: 50, v2.Name: 50})
	st, err := srv.eng.Status(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	var hold *rollout.CanaryStep
	for _, v := range st.Versions {
		if v.Name == v2.Name {
			hold = v.Canary
		}
	}
	if hold == nil || !strings.Contains(hold.Hold, "has no series for "+v2.Name) || !strings.Contains(hold.Suggestion, "--gateway-kind") {
		t.Fatalf("status of the held canary: %+v", hold)
	}
	evs, _ := srv.eng.Events(context.Background(), "hello", 0, 1000)
	holds := 0
	for _, e := range evs {
		if strings.Contains(e.Message, "holds at 50%") {
			holds++
		}
	}
	if holds != 1 {
		t.Errorf("%d hold events; want 1", holds)
	}
	// Figures come back, over the whole held window: the last step promotes.
	step(v2.Name, start, time.Second, "300", "0", "120")
	routeIs("promoted", map[string]int{v2.Name: 100})

	// A canary whose 5xx rate breaks the plan leaves the route.
	v3 := deploy("ccc333", true)
	routeIs("next canary", map[string]int{v2.Name: 90, v3.Name: 10})
	step(v3.Name, clk.now(), 61*time.Second, "100", "30", "90")
	routeIs("erroring canary", map[string]int{v2.Name: 100})
	evs, _ = srv.eng.Events(context.Background(), "hello", 0, 1000)
	stopped := false
	for _, e := range evs {
		stopped = stopped || strings.Contains(e.Message, "automatic canary of "+v3.Name+" stopped: 5xx rate 30.0%")
	}
	if !stopped {
		t.Errorf("the history does not say why %s stopped", v3.Name)
	}
}
