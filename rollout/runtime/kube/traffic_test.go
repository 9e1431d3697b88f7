package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/policy"
)

var testGateway = Gateway{Namespace: "infra", Name: "edge"}

func newTraffic(c client.Client, ns string) *Traffic {
	return NewTraffic(c, testGateway, "apps.example.com", func(string) string { return ns }).WithPoll(20 * time.Millisecond)
}

// route waits for the service's HTTPRoute to reach generation gen.
func route(t *testing.T, ns string, gen int64) *gwv1.HTTPRoute {
	t.Helper()
	rt := &gwv1.HTTPRoute{}
	eventually(t, "httproute generation", func() (bool, error) {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "hello"}, rt)
		return err == nil && rt.Generation == gen, err
	})
	return rt
}

// judge plays the gateway controller: it reports on the route's current
// generation.
func judge(t *testing.T, ns string, gen int64, accepted metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	rt := route(t, ns, gen)
	gwNS := gwv1.Namespace(testGateway.Namespace)
	rt.Status.Parents = []gwv1.RouteParentStatus{{
		ParentRef:      gwv1.ParentReference{Namespace: &gwNS, Name: gwv1.ObjectName(testGateway.Name)},
		ControllerName: "example.com/gateway-controller",
		Conditions: []metav1.Condition{
			{Type: "Accepted", Status: accepted, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.Now()},
			{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs", ObservedGeneration: gen, LastTransitionTime: metav1.Now()},
		},
	}}
	if err := k8s.Status().Update(context.Background(), rt); err != nil {
		t.Fatalf("write route status: %v", err)
	}
}

func applyAsync(tr *Traffic, p policy.Policy) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- tr.ApplyPolicy(context.Background(), "hello", p) }()
	return ch
}

// returned reports whether ApplyPolicy has already returned; callers fail
// the test when it has, so the value read is not needed again.
func returned(ch <-chan error) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatal("ApplyPolicy did not return")
	}
	return nil
}

var (
	full   = policy.Policy{Split: map[string]int{"hello-001": 100}}
	canary = policy.Policy{
		Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"env": "beta*"}}},
		Split: map[string]int{"hello-001": 90, "hello-002": 10},
	}
)

// TestApplyPolicyCountsOnlyWhenTheGatewayAccepts plays the gateway by
// writing status.parents, and checks the route the apiserver stored field by
// field against the translation.
func TestApplyPolicyCountsOnlyWhenTheGatewayAccepts(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	tr := newTraffic(k8s, ns)

	ch := applyAsync(tr, full)
	route(t, ns, 1)
	if returned(ch) {
		t.Fatal("ApplyPolicy returned before the gateway reported on the route")
	}
	judge(t, ns, 1, metav1.ConditionTrue, "Accepted", "")
	if err := wait(t, ch); err != nil {
		t.Fatalf("ApplyPolicy: %v", err)
	}

	// A new generation: the status of generation 1 no longer counts.
	ch = applyAsync(tr, canary)
	rt := route(t, ns, 2)
	want, err := ServiceRoute("hello", canary, Placement{Namespace: ns, Gateway: testGateway, BaseDomain: "apps.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepDerivative(want.Spec, rt.Spec) {
		t.Errorf("stored route differs from the translation:\nstored %s\n  want %s", dump(rt.Spec), dump(want.Spec))
	}
	if got := rt.Spec.Rules[1].BackendRefs; len(got) != 2 || *got[0].Weight != 90 || *got[1].Weight != 10 || string(got[1].Name) != "hello-002" {
		t.Errorf("split backendRefs = %s", dump(got))
	}
	if q := rt.Spec.Rules[0].Matches[0].QueryParams[0]; *q.Type != gwv1.QueryParamMatchRegularExpression || q.Value != `(?s)^beta.*$` {
		t.Errorf("rule match = %s", dump(q))
	}
	if returned(ch) {
		t.Fatal("ApplyPolicy returned on the status of an older generation")
	}
	judge(t, ns, 2, metav1.ConditionTrue, "Accepted", "")
	if err := wait(t, ch); err != nil {
		t.Fatalf("ApplyPolicy: %v", err)
	}
}

func TestApplyPolicyRejectedKeepsThePreviousRoute(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	tr := newTraffic(k8s, ns)
	ch := applyAsync(tr, full)
	judge(t, ns, 1, metav1.ConditionTrue, "Accepted", "")
	if err := wait(t, ch); err != nil {
		t.Fatalf("ApplyPolicy: %v", err)
	}
	before := route(t, ns, 1).Spec

	ch = applyAsync(tr, canary)
	judge(t, ns, 2, metav1.ConditionFalse, "UnsupportedValue", "RegularExpression query parameter matches are not supported")
	err := wait(t, ch)
	if !errors.Is(err, ErrRouteRejected) || !strings.Contains(err.Error(), "RegularExpression query parameter matches are not supported") {
		t.Fatalf("ApplyPolicy error = %v; want ErrRouteRejected with the gateway's message", err)
	}
	after := route(t, ns, 3) // the previous spec written back
	if !equality.Semantic.DeepEqual(before, after.Spec) {
		t.Errorf("after a rejection the route is\n%s\nwant the previous one\n%s", dump(after.Spec), dump(before))
	}
}

func TestApplyPolicyUnchangedWritesNothing(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	c, writes := countingClient(t)
	tr := newTraffic(c, ns)
	ch := applyAsync(tr, canary)
	judge(t, ns, 1, metav1.ConditionTrue, "Accepted", "")
	if err := wait(t, ch); err != nil {
		t.Fatalf("ApplyPolicy: %v", err)
	}
	writes.Store(0)
	if err := tr.ApplyPolicy(context.Background(), "hello", canary); err != nil {
		t.Fatalf("ApplyPolicy again: %v", err)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("applying the same policy again sent %d writes; want none", n)
	}
}

func TestApplyPolicyRefusesWhatARouteCannotExpress(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	p := policy.Policy{Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"bad key": "x"}}}, Split: full.Split}
	err := newTraffic(k8s, ns).ApplyPolicy(context.Background(), "hello", p)
	if !errors.Is(err, policy.ErrInvalidPolicy) {
		t.Fatalf("ApplyPolicy error = %v; want policy.ErrInvalidPolicy", err)
	}
	var list gwv1.HTTPRouteList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil || len(list.Items) != 0 {
		t.Errorf("a refused policy wrote %d routes (err %v)", len(list.Items), err)
	}
}
