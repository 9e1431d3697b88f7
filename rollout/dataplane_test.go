package rollout_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

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
