package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// recordingPlane is a data plane that records the policies it is given and
// refuses them while reject is set, the way a gateway rejecting a route does.
type recordingPlane struct {
	mu      sync.Mutex
	applied []policy.Policy
	reject  error
}

func (p *recordingPlane) ApplyPolicy(_ context.Context, service string, pol policy.Policy) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reject != nil {
		return p.reject
	}
	p.applied = append(p.applied, pol)
	return nil
}

func (p *recordingPlane) set(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reject = err
}

func (p *recordingPlane) last() policy.Policy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied[len(p.applied)-1]
}

func TestAPolicyChangeCountsOnlyOnceTheDataPlaneAppliesIt(t *testing.T) {
	t.Parallel()
	plane := &recordingPlane{}
	h := newHarness(t, rollout.WithDataPlane(plane))
	ctx := context.Background()
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	if got := plane.last().Split; !reflect.DeepEqual(got, map[string]int{v1.Name: 100}) {
		t.Fatalf("the full deploy gave the data plane split %v", got)
	}

	// The gateway refuses: the change fails with its words, nothing moves.
	plane.set(fmt.Errorf("gateway infra/edge: Accepted=False (UnsupportedValue): RegularExpression is not supported"))
	split := map[string]int{v1.Name: 90, v2.Name: 10}
	_, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: split}, cli)
	e, ok := rollout.AsError(err)
	if !ok || e.Code != rollout.ErrCodeDataPlane || !strings.Contains(e.Message, "RegularExpression is not supported") {
		t.Fatalf("Traffic error = %v; want %s with the gateway's message", err, rollout.ErrCodeDataPlane)
	}
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy.Split, map[string]int{v1.Name: 100}) {
		t.Fatalf("after a rejection the stored split is %v; want the previous one", st.Policy.Split)
	}
	if got := h.served("hello", 20, ""); got[v1.Name] != 20 {
		t.Fatalf("after a rejection the router served %v", got)
	}

	// A policy the data plane cannot express is invalid input (400).
	plane.set(fmt.Errorf("rule 1: key %q cannot be matched by a gateway: %w", "a b", policy.ErrInvalidPolicy))
	if _, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v2.Name, Match: map[string]string{"a b": "x"}}, cli); !isKind(err, rollout.KindInvalid) {
		t.Fatalf("Route error = %v; want invalid", err)
	}

	// Accepted: committed.
	plane.set(nil)
	if _, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: split}, cli); err != nil {
		t.Fatalf("Traffic: %v", err)
	}
	if !reflect.DeepEqual(plane.last().Split, split) || !reflect.DeepEqual(h.status("hello").Policy.Split, split) {
		t.Fatalf("data plane %v, stored %v; want both %v", plane.last().Split, h.status("hello").Policy.Split, split)
	}
}

// stallingPlane is a gateway that, once stalled, takes until its caller
// gives up: it reports each stalled call on calls and returns ctx's error
// when ctx ends. Until then it accepts every policy at once.
type stallingPlane struct {
	mu      sync.Mutex
	stalled bool
	calls   chan policy.Policy
}

func (p *stallingPlane) ApplyPolicy(ctx context.Context, service string, pol policy.Policy) error {
	p.mu.Lock()
	stalled := p.stalled
	p.mu.Unlock()
	if !stalled {
		return nil
	}
	p.calls <- pol
	<-ctx.Done()
	return ctx.Err()
}

// A policy change waits for the data plane with its caller's context and
// outside the service's lock: other operations on the service go on
// meanwhile, and a cancelled change returns the context's error and
// commits nothing.
func TestAPolicyChangeWaitsForTheDataPlaneWithItsContext(t *testing.T) {
	t.Parallel()
	plane := &stallingPlane{calls: make(chan policy.Policy, 4)}
	h := newHarness(t, rollout.WithDataPlane(plane))
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	before := h.status("hello")
	plane.mu.Lock()
	plane.stalled = true
	plane.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := h.eng.Traffic(ctx, "hello", rollout.TrafficRequest{Split: map[string]int{v1.Name: 90, v2.Name: 10}}, cli)
		done <- err
	}()
	<-plane.calls
	other := make(chan error, 1)
	go func() {
		_, err := h.eng.Deploy(context.Background(), rollout.DeployRequest{Service: "hello",
			Archive: appSource(t, "hello", "serve", ""), Strategy: rollout.StrategyCanary, Origin: cli})
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("deploy while the data plane was slow: %v", err)
		}
	case <-time.After(waitBound):
		t.Fatal("a deploy waited for another operation's data plane call")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled traffic change: %v, want context.Canceled", err)
		}
	case <-time.After(waitBound):
		t.Fatal("a cancelled traffic change kept waiting for the data plane")
	}
	if st := h.status("hello"); !reflect.DeepEqual(st.Policy, before.Policy) {
		t.Fatalf("a cancelled change left the policy %+v, want %+v", st.Policy, before.Policy)
	}
	h.eng.Wait()
}
