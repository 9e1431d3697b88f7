package rollout_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/reason"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const plan = "canary: {steps: [10, 50, 100], interval: 1m, max_error_rate: 5%}"

// autoCanary deploys hello as stable (full), then a version behaving as
// said that follows plan automatically; it returns both.
func (h *harness) autoCanary(behaviour string) (stable rollout.VersionStatus, canary rollout.Version) {
	h.t.Helper()
	stable = h.deploy("hello", "serve", rollout.StrategyFull, "")
	canary, err := h.eng.Deploy(context.Background(), rollout.DeployRequest{Service: "hello", Archive: appSource(h.t, "hello", behaviour, plan),
		Strategy: rollout.StrategyCanary, AutoCanary: true, Origin: cli})
	if err != nil {
		h.t.Fatal(err)
	}
	h.eng.Wait()
	return stable, canary
}

func TestAutomaticCanaryWalksItsStepsAndPromotes(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	h := newHarness(t, rollout.WithClock(clk.now))
	ctx := context.Background()
	v1, v := h.autoCanary("serve")
	want := func(split map[string]int) {
		t.Helper()
		if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, split) {
			t.Fatalf("split %v, want %v", st.Policy.Split, split)
		}
	}
	want(map[string]int{v1.Name: 90, v.Name: 10})
	h.served("hello", 200, "") // the canary surely gets some: none at 10% is 0.9^200
	// Before the interval nothing moves.
	clk.add(30 * time.Second)
	h.eng.AdvanceCanaries(ctx)
	want(map[string]int{v1.Name: 90, v.Name: 10})
	clk.add(31 * time.Second)
	h.eng.AdvanceCanaries(ctx)
	want(map[string]int{v1.Name: 50, v.Name: 50})
	h.served("hello", 200, "")
	clk.add(61 * time.Second)
	h.eng.AdvanceCanaries(ctx)
	want(map[string]int{v.Name: 100})
	if st := h.status("hello"); st.Stable != v.Name {
		t.Fatalf("stable %s after the last step", st.Stable)
	}
}

func TestAutomaticCanaryAbortsOnErrors(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	h := newHarness(t, rollout.WithClock(clk.now))
	ctx := context.Background()
	v1, v := h.autoCanary("errors")
	for range 100 {
		h.get("hello.localhost", "")
	}
	clk.add(2 * time.Minute)
	h.eng.AdvanceCanaries(ctx)
	st := h.status("hello")
	if !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("split after a failing step: %v", st.Policy.Split)
	}
	evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
	if last := evs[len(evs)-2]; !strings.Contains(last.Message, "5xx rate") || last.Version != v.Name ||
		last.Reason == nil || last.Reason.Code != reason.CanaryStopped || !strings.Contains(last.Reason.Detail, "5xx rate") {
		t.Fatalf("history: %+v", last)
	}
	// A stopped plan stays stopped.
	clk.add(2 * time.Minute)
	h.eng.AdvanceCanaries(ctx)
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("plan resumed: %v", st.Policy.Split)
	}
}

// A step that no request reached is not judged: the canary waits at its
// weight, says why once in the history and in its status, and moves on
// once traffic comes.
func TestAutomaticCanaryHoldsWithoutRequests(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	h := newHarness(t, rollout.WithClock(clk.now))
	ctx := context.Background()
	v1, v := h.autoCanary("serve")
	holds := func() (n int) {
		evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)
		for _, e := range evs {
			if e.Version == v.Name && strings.Contains(e.Message, "holds at 10%: no requests reached it") {
				n++
			}
		}
		return n
	}
	for range 3 {
		clk.add(61 * time.Second)
		h.eng.AdvanceCanaries(ctx)
	}
	st := h.status("hello")
	if !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 90, v.Name: 10}) {
		t.Fatalf("split after steps without requests: %v; want it held at 90/10", st.Policy.Split)
	}
	if n := holds(); n != 1 {
		t.Fatalf("%d hold events in the history; want exactly 1", n)
	}
	var cs *rollout.CanaryStep
	for _, vs := range st.Versions {
		if vs.Name == v.Name {
			cs = vs.Canary
		}
	}
	if cs == nil || cs.Hold != "no requests reached it during this step" || cs.Suggestion == "" {
		t.Fatalf("status of the held canary: %+v", cs)
	}
	// Traffic comes: the longer window is judged and the step advances.
	h.served("hello", 200, "") // the canary surely gets some: none at 10% is 0.9^200
	h.eng.AdvanceCanaries(ctx)
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 50, v.Name: 50}) {
		t.Fatalf("split once requests came: %v", st.Policy.Split)
	}
}
