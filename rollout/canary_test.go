package rollout_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const plan = "canary: {steps: [10, 50, 100], interval: 1m, max_error_rate: 5%}"

func TestAutomaticCanaryWalksItsStepsAndPromotes(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	h := newHarness(t, rollout.WithClock(clk.now))
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", plan),
		Strategy: rollout.StrategyCanary, AutoCanary: true, Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	h.eng.Wait()
	want := func(split map[string]int) {
		t.Helper()
		if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, split) {
			t.Fatalf("split %v, want %v", st.Policy.Split, split)
		}
	}
	want(map[string]int{v1.Name: 90, v.Name: 10})
	h.served("hello", 50, "")
	// Before the interval nothing moves.
	clk.add(30 * time.Second)
	h.eng.AdvanceCanaries(ctx)
	want(map[string]int{v1.Name: 90, v.Name: 10})
	clk.add(31 * time.Second)
	h.eng.AdvanceCanaries(ctx)
	want(map[string]int{v1.Name: 50, v.Name: 50})
	h.served("hello", 50, "")
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
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "errors", plan),
		Strategy: rollout.StrategyCanary, AutoCanary: true, Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	h.eng.Wait()
	for range 100 {
		h.get("hello.localhost", "")
	}
	clk.add(2 * time.Minute)
	h.eng.AdvanceCanaries(ctx)
	st := h.status("hello")
	if !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("split after a failing step: %v", st.Policy.Split)
	}
	evs, _ := h.eng.Events("hello", 0, 1000)
	if last := evs[len(evs)-2]; !strings.Contains(last.Message, "5xx rate") || last.Version != v.Name {
		t.Fatalf("history: %+v", last)
	}
	// A stopped plan stays stopped.
	clk.add(2 * time.Minute)
	h.eng.AdvanceCanaries(ctx)
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("plan resumed: %v", st.Policy.Split)
	}
}
