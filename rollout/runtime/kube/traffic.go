package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/policy"
)

// DefaultAcceptTimeout bounds how long ApplyPolicy waits for the gateway to
// report on a new route generation.
const DefaultAcceptTimeout = 30 * time.Second

// ErrRouteRejected is matched (errors.Is) by the error ApplyPolicy returns
// when the gateway refused the route or never reported on it; the error's
// message carries the gateway's own words.
var ErrRouteRejected = errors.New("route rejected by the gateway")

// Traffic writes services' policies as HTTPRoutes attached to one Gateway.
// Safe for concurrent use; calls for one service must be serialized by the
// caller (the engine holds the service's lock).
type Traffic struct {
	c       client.Client
	gateway Gateway
	base    string
	ns      func(service string) string
	poll    time.Duration
	timeout time.Duration
}

// NewTraffic returns a writer of HTTPRoutes that attach to gateway and answer
// "<service>.<baseDomain>". namespace tells the namespace of a service's
// routes (the one its versions run in; see Kube.Namespace).
func NewTraffic(c client.Client, gateway Gateway, baseDomain string, namespace func(service string) string) *Traffic {
	return &Traffic{c: c, gateway: gateway, base: baseDomain, ns: namespace, poll: DefaultPoll, timeout: DefaultAcceptTimeout}
}

// WithAcceptTimeout sets how long ApplyPolicy waits for the gateway (default
// DefaultAcceptTimeout).
func (t *Traffic) WithAcceptTimeout(d time.Duration) *Traffic { t.timeout = d; return t }

// WithPoll sets how often ApplyPolicy reads the route's status (default
// DefaultPoll).
func (t *Traffic) WithPoll(d time.Duration) *Traffic { t.poll = d; return t }

func (t *Traffic) placement(service string) Placement {
	return Placement{Namespace: t.ns(service), Gateway: t.gateway, BaseDomain: t.base}
}

// ApplyPolicy writes the service's HTTPRoute for p (see ServiceRoute), only
// if it differs from the live one, and returns once the gateway reports the
// route's current generation Accepted and its references resolved. A policy
// an HTTPRoute cannot express is an error matching policy.ErrInvalidPolicy
// and writes nothing. When the gateway reports either condition False, or
// reports nothing before the accept timeout, ApplyPolicy writes the previous
// route back and returns an error matching ErrRouteRejected with the
// gateway's reason and message.
func (t *Traffic) ApplyPolicy(ctx context.Context, service string, p policy.Policy) error {
	at := t.placement(service)
	desired, err := ServiceRoute(service, p, at)
	if err != nil {
		return err
	}
	prev := &gwv1.HTTPRoute{}
	switch err := t.c.Get(ctx, client.ObjectKeyFromObject(desired), prev); {
	case apierrors.IsNotFound(err):
		prev = nil
	case err != nil:
		return fmt.Errorf("get httproute %s: %w", service, err)
	}
	live := &gwv1.HTTPRoute{}
	if _, err := apply(ctx, t.c, desired, live, func() bool {
		return equality.Semantic.DeepDerivative(desired.Spec, live.Spec)
	}); err != nil {
		return err
	}
	werr := t.waitAccepted(ctx, live)
	if werr == nil {
		return nil
	}
	if prev != nil && prev.Generation != live.Generation {
		undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		old := desired.DeepCopy()
		old.Spec = prev.Spec
		if _, err := apply(undo, t.c, old, &gwv1.HTTPRoute{}, func() bool { return false }); err != nil {
			return fmt.Errorf("%w (and writing the previous route back failed: %v)", werr, err)
		}
	}
	return werr
}

// ApplyVersionRoute writes the route of a version's own URL (see
// VersionRoute) without waiting for the gateway.
func (t *Traffic) ApplyVersionRoute(ctx context.Context, service, version string) error {
	desired := VersionRoute(service, version, t.placement(service))
	live := &gwv1.HTTPRoute{}
	_, err := apply(ctx, t.c, desired, live, func() bool {
		return equality.Semantic.DeepDerivative(desired.Spec, live.Spec)
	})
	return err
}

// DeleteVersionRoute removes the route of a version's own URL, so that the
// URL of a retired or failed version answers nothing rather than routing
// to a Service without pods. A route that is already gone is fine.
func (t *Traffic) DeleteVersionRoute(ctx context.Context, service, version string) error {
	rt := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(service), Name: version}}
	if err := t.c.Delete(ctx, rt); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete httproute %s: %w", version, err)
	}
	return nil
}

// waitAccepted polls the route until the gateway's status for its
// generation says Accepted and ResolvedRefs, or one of them False.
func (t *Traffic) waitAccepted(ctx context.Context, rt *gwv1.HTTPRoute) error {
	deadline := time.NewTimer(t.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	key := client.ObjectKeyFromObject(rt)
	for {
		live := &gwv1.HTTPRoute{}
		if err := t.c.Get(ctx, key, live); err != nil {
			return fmt.Errorf("get httproute %s: %w", key.Name, err)
		}
		done, err := t.verdict(live, rt.Generation)
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for gateway %s/%s: %w", t.gateway.Namespace, t.gateway.Name, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("%w: gateway %s/%s did not report on route %s (generation %d) within %s; is its controller running, and does it allow routes from namespace %s?",
				ErrRouteRejected, t.gateway.Namespace, t.gateway.Name, key.Name, rt.Generation, t.timeout, key.Namespace)
		case <-tick.C:
		}
	}
}

// verdict reads the status the gateway wrote for generation gen: done when
// both conditions are known, with an error naming a False one.
func (t *Traffic) verdict(rt *gwv1.HTTPRoute, gen int64) (bool, error) {
	for _, ps := range rt.Status.Parents {
		if string(ps.ParentRef.Name) != t.gateway.Name ||
			ps.ParentRef.Namespace != nil && string(*ps.ParentRef.Namespace) != t.gateway.Namespace {
			continue
		}
		var failed []string
		known := 0
		for _, typ := range []gwv1.RouteConditionType{gwv1.RouteConditionAccepted, gwv1.RouteConditionResolvedRefs} {
			c := findCondition(ps.Conditions, string(typ))
			if c == nil || c.ObservedGeneration != gen {
				continue
			}
			known++
			if c.Status != metav1.ConditionTrue {
				failed = append(failed, fmt.Sprintf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, c.Message))
			}
		}
		if len(failed) > 0 {
			return true, fmt.Errorf("%w: gateway %s/%s: %s", ErrRouteRejected, t.gateway.Namespace, t.gateway.Name, strings.Join(failed, "; "))
		}
		if known == 2 {
			return true, nil
		}
	}
	return false, nil
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}
