package rollout_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/reason"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// gatedPlane is a gateway that, while closed, holds every ApplyPolicy
// (reporting it on calls) until it is opened or the caller gives up.
type gatedPlane struct {
	mu    sync.Mutex
	gate  chan struct{} // nil: open
	calls chan policy.Policy
	last  policy.Policy // the last policy applied
}

func (p *gatedPlane) ApplyPolicy(ctx context.Context, service string, pol policy.Policy) error {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		p.calls <- pol
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = pol
	return nil
}

func (p *gatedPlane) lastApplied() policy.Policy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *gatedPlane) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *gatedPlane) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.gate)
	p.gate = nil
}

// While the data plane takes its time over a full deploy's new policy,
// the service is read and changed by other operations; the deploy's
// outcome then counts once the data plane applied it.
func TestADeployOutcomeWaitsForTheDataPlaneOutsideTheServiceLock(t *testing.T) {
	t.Parallel()
	plane := &gatedPlane{calls: make(chan policy.Policy, 4)}
	h := newHarness(t, rollout.WithDataPlane(plane))
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	plane.close()
	v2, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", ""),
		Strategy: rollout.StrategyFull, Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-plane.calls; !reflect.DeepEqual(got.Split, map[string]int{v2.Name: 100}) {
		t.Fatalf("the data plane was asked for split %v", got.Split)
	}

	other := make(chan error, 1)
	go func() {
		if st, err := h.eng.Status(ctx, "hello"); err != nil || st.Stable != v1.Name {
			other <- errors.Join(err, errors.New("status while the data plane was slow: stable "+st.Stable))
			return
		}
		_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", ""),
			Strategy: rollout.StrategyCanary, Origin: cli})
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitBound):
		t.Fatal("status and deploy waited for another deploy's data plane call")
	}
	if v := h.version("hello", v2.Name); v.Status != rollout.StatusCreating {
		t.Fatalf("%s is %s before the data plane applied its policy", v2.Name, v.Status)
	}
	if got := h.served("hello", 5, ""); got[v1.Name] != 5 {
		t.Fatalf("before the data plane applied the new policy the router served %v", got)
	}

	plane.open()
	h.eng.Wait()
	mustNormal(t, h.version("hello", v2.Name))
	if st := h.status("hello"); st.Stable != v2.Name || !reflect.DeepEqual(st.Policy.Split, map[string]int{v2.Name: 100}) {
		t.Fatalf("after the data plane applied it: stable %s, split %v", st.Stable, st.Policy.Split)
	}
	if got := h.served("hello", 5, ""); got[v2.Name] != 5 {
		t.Fatalf("after the full deploy the router served %v", got)
	}
}

// A full deploy whose new policy the data plane refuses fails with the
// data plane's words: it gets no traffic, its instances are stopped and
// the previous version keeps serving.
func TestADeployTheDataPlaneRefusesFailsAndStopsItsInstances(t *testing.T) {
	t.Parallel()
	plane := &recordingPlane{}
	h := newHarness(t, rollout.WithDataPlane(plane))
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	before := h.status("hello")

	plane.set(errors.New("gateway infra/edge: Accepted=False (NotAllowedByListeners): no listener accepts this route"))
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v2, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSourceGated(t, "hello", "gated", gate, ""),
		Strategy: rollout.StrategyFull, Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	waitStarting(t, h, v2.Name)
	pid, err := os.ReadFile(gate + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(gate)
	h.eng.Wait()

	v := h.version("hello", v2.Name)
	if v.Status != rollout.StatusFailed || v.Reason.Code != reason.DataPlaneFailed ||
		!strings.Contains(v.Reason.Detail, "no listener accepts this route") || v.Reason.Suggestion == "" {
		t.Fatalf("%s after the data plane refused its policy: %s %+v", v2.Name, v.Status, v.Reason)
	}
	if len(v.Instances) != 0 {
		t.Fatalf("a failed version lists %d instances", len(v.Instances))
	}
	n, _ := strconv.Atoi(string(pid))
	if err := syscall.Kill(n, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the refused version's instance (pid %d) still runs: %v", n, err)
	}
	after := h.status("hello")
	if after.Stable != v1.Name || !reflect.DeepEqual(after.Policy, before.Policy) {
		t.Fatalf("after the refusal: stable %s, policy %+v; want %s, %+v", after.Stable, after.Policy, v1.Name, before.Policy)
	}
	if got := h.served("hello", 5, ""); got[v1.Name] != 5 {
		t.Fatalf("after the refusal the router served %v", got)
	}
	evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
	if last := evs[len(evs)-1]; last.Version != v2.Name || last.Reason == nil || last.Reason.Code != reason.DataPlaneFailed {
		t.Fatalf("the history ends with %+v", last)
	}
}

// slowMetrics is a metrics source that answers a step's figures only when
// released (or when its caller gives up), reporting each read on reads.
type slowMetrics struct {
	reads   chan string
	release chan runtime.Served
}

func (m *slowMetrics) Served(ctx context.Context, service, version string, since, until time.Time) (runtime.Served, error) {
	m.reads <- version
	select {
	case s := <-m.release:
		return s, nil
	case <-ctx.Done():
		return runtime.Served{}, ctx.Err()
	}
}

// A canary step is judged outside the service lock: while its figures are
// read, a person can abort the canary; the verdict then changes nothing,
// since the version left its plan meanwhile.
func TestACanaryStepJudgedWhileAPersonActsChangesNothing(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	m := &slowMetrics{reads: make(chan string, 4), release: make(chan runtime.Served)}
	h := newHarness(t, rollout.WithClock(clk.now), rollout.WithCanaryMetrics(m))
	ctx := context.Background()
	v1, v := h.autoCanary("serve")
	clk.add(61 * time.Second)
	stepped := make(chan error, 1)
	go func() { stepped <- h.eng.AdvanceCanaries(ctx) }()
	if got := <-m.reads; got != v.Name {
		t.Fatalf("figures read for %s, want %s", got, v.Name)
	}

	aborted := make(chan error, 1)
	go func() {
		_, err := h.eng.Abort(ctx, "hello", v.Name, cli)
		aborted <- err
	}()
	select {
	case err := <-aborted:
		if err != nil {
			t.Fatalf("abort while a step was judged: %v", err)
		}
	case <-time.After(waitBound):
		t.Fatal("an abort waited for a canary step's metrics")
	}
	evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)

	select {
	case m.release <- runtime.Served{Requests: 100, P99: time.Millisecond, HasP99: true}:
	case <-time.After(waitBound):
		t.Fatal("the step stopped waiting for its figures before the abort returned: the abort waited for it")
	}
	if err := <-stepped; err != nil {
		t.Fatalf("AdvanceCanaries: %v", err)
	}
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("after the abort and a passing verdict the split is %v; want the abort's", st.Policy.Split)
	}
	if evs2, _ := h.eng.Events(context.Background(), "hello", 0, 1000); len(evs2) != len(evs) {
		t.Fatalf("a verdict on an aborted canary recorded %+v", evs2[len(evs):])
	}
}

// barrierMetrics answers a read only once want reads are waiting at the
// same time (or gives up when its caller does): it passes only if the
// canaries of several services are judged side by side.
type barrierMetrics struct {
	mu      sync.Mutex
	waiting int
	want    int
	all     chan struct{}
}

func (m *barrierMetrics) Served(ctx context.Context, service, version string, since, until time.Time) (runtime.Served, error) {
	m.mu.Lock()
	m.waiting++
	if m.waiting == m.want {
		close(m.all)
	}
	m.mu.Unlock()
	select {
	case <-m.all:
		return runtime.Served{Requests: 100, P99: time.Millisecond, HasP99: true}, nil
	case <-ctx.Done():
		return runtime.Served{}, ctx.Err()
	}
}

// The canaries of different services are judged side by side: one whose
// metrics source is slow does not hold up the others' steps.
func TestCanariesOfServicesAreJudgedSideBySide(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	services := []string{"hello", "world"}
	m := &barrierMetrics{want: len(services), all: make(chan struct{})}
	h := newHarness(t, rollout.WithClock(clk.now), rollout.WithCanaryMetrics(m))
	ctx := context.Background()
	canaries := map[string]string{}
	for _, svc := range services {
		h.deploy(svc, "serve", rollout.StrategyFull, "")
		v, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: svc, Archive: appSource(t, svc, "serve", plan),
			Strategy: rollout.StrategyCanary, AutoCanary: true, Origin: cli})
		if err != nil {
			t.Fatal(err)
		}
		canaries[svc] = v.Name
	}
	h.eng.Wait()
	clk.add(61 * time.Second)
	start := time.Now()
	if err := h.eng.AdvanceCanaries(ctx); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		if st := h.status(svc); st.Policy.Split[canaries[svc]] != 50 {
			t.Errorf("%s's canary after a passing step judged beside another service's: split %v (after %s)",
				svc, st.Policy.Split, time.Since(start).Round(time.Millisecond))
		}
	}
}

// A canary step whose version left its plan while the data plane applied
// the step's policy (here an in-place redeploy made it updating) commits
// nothing, and the data plane is given the committed policy back.
func TestACanaryStepThatFindsNothingLeftPutsTheCommittedPolicyBack(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	plane := &gatedPlane{calls: make(chan policy.Policy, 4)}
	h := newHarness(t, rollout.WithClock(clk.now), rollout.WithDataPlane(plane))
	ctx := context.Background()
	v1, v := h.autoCanary("serve")
	committed := h.status("hello").Policy
	if !reflect.DeepEqual(committed.Split, map[string]int{v1.Name: 90, v.Name: 10}) {
		t.Fatalf("canary started at %v", committed.Split)
	}
	h.served("hello", 200, "")
	clk.add(61 * time.Second)
	plane.close()
	stepped := make(chan error, 1)
	go func() { stepped <- h.eng.AdvanceCanaries(ctx) }()
	if got := <-plane.calls; got.Split[v.Name] != 50 {
		t.Fatalf("the step asked the data plane for %v", got.Split)
	}

	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Redeploy(ctx, "hello", v.Name, rollout.RedeployRequest{Archive: appSourceGated(t, "hello", "gated", gate, plan), Origin: cli}); err != nil {
		t.Fatalf("redeploy while the step waited for the data plane: %v", err)
	}
	plane.open()
	if err := <-stepped; err != nil {
		t.Fatalf("AdvanceCanaries: %v", err)
	}
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, committed.Split) {
		t.Fatalf("a step whose version left its plan committed split %v", st.Policy.Split)
	}
	if got := plane.lastApplied(); !reflect.DeepEqual(got.Split, committed.Split) {
		t.Fatalf("the data plane was left routing by %v; want the committed %v", got.Split, committed.Split)
	}
	os.Remove(gate)
	h.eng.Wait()
}
