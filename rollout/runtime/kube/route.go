package kube

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/policy"
)

// Limits of the Gateway API (v1.6 standard channel) that a policy must fit.
const (
	maxRouteRules  = 16   // spec.rules
	maxQueryParams = 16   // spec.rules[].matches[].queryParams
	maxBackendRefs = 16   // spec.rules[].backendRefs
	maxMatchValue  = 1024 // queryParams[].value
	maxParamName   = 256  // queryParams[].name
)

// paramNameRE is the pattern the Gateway API imposes on query parameter
// names (an HTTP token).
var paramNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")

// Gateway names the Gateway routes attach to.
type Gateway struct {
	Namespace string
	Name      string
}

// Placement is where a service's routes live and which hosts they answer.
type Placement struct {
	// Namespace holds the routes and the versions' Services.
	Namespace string
	// Gateway is the parent every route attaches to.
	Gateway Gateway
	// BaseDomain: the service answers "<service>.<BaseDomain>" and a version
	// "<version>.<service>.<BaseDomain>".
	BaseDomain string
}

// ServicePort is the port of every version's Service; it forwards to the
// container's port named "http".
const ServicePort = 80

// unsupportedError is a policy the local router accepts but an HTTPRoute
// cannot express. It matches policy.ErrInvalidPolicy, so front doors answer
// it like any other invalid policy (400), and its message names the problem.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string        { return e.msg }
func (e *unsupportedError) Is(target error) bool { return target == policy.ErrInvalidPolicy }

func unsupportedf(format string, args ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, args...)}
}

// ServiceRoute translates a service's traffic policy into the HTTPRoute named
// after the service, answering "<service>.<base>".
//
// Each policy rule becomes one HTTPRoute rule, in order, with one match whose
// queryParams hold the rule's conditions sorted by key (Exact for a literal
// glob, an anchored RegularExpression otherwise) and one backendRef to the
// rule's version; the split comes last, as a rule without conditions whose
// backendRefs carry the versions with a weight above zero, weighted in
// percent. A policy with an empty split gives a last rule with no backendRefs
// (the gateway answers 500, as the Gateway API specifies).
//
// The Gateway API ranks a rule with more query parameter matches above one
// with fewer, whatever their order, and only then keeps list order; so a
// policy whose rules do not have a non-increasing number of conditions would
// route differently and is refused, as is a policy beyond the API's limits
// (15 rules, 16 conditions per rule, 16 split versions, 1,024-character
// values, keys that are not HTTP tokens). Those errors match
// policy.ErrInvalidPolicy. The policy itself must already be valid
// (policy.Policy.Validate). ServiceRoute is pure.
func ServiceRoute(service string, p policy.Policy, at Placement) (*gwv1.HTTPRoute, error) {
	if len(p.Rules) > maxRouteRules-1 {
		return nil, unsupportedf("the policy has %d rules; an HTTPRoute holds at most %d besides the split", len(p.Rules), maxRouteRules-1)
	}
	rules := make([]gwv1.HTTPRouteRule, 0, len(p.Rules)+1)
	for i, r := range p.Rules {
		if i > 0 && len(r.Match) > len(p.Rules[i-1].Match) {
			return nil, unsupportedf("rule %d has more conditions (%d) than rule %d before it (%d): the Gateway API tries rules with more query parameter matches first, so order rules from most to fewest conditions",
				i+1, len(r.Match), i, len(p.Rules[i-1].Match))
		}
		params, err := queryParams(r.Match)
		if err != nil {
			return nil, unsupportedf("rule %d: %s", i+1, err)
		}
		rules = append(rules, gwv1.HTTPRouteRule{
			Matches:     []gwv1.HTTPRouteMatch{{Path: rootPath(), QueryParams: params}},
			BackendRefs: []gwv1.HTTPBackendRef{backendRef(r.Version, nil)},
		})
	}
	split := make([]gwv1.HTTPBackendRef, 0, len(p.Split))
	for _, w := range sortedSplit(p.Split) {
		weight := int32(w.Percent)
		split = append(split, backendRef(w.Version, &weight))
	}
	if len(split) > maxBackendRefs {
		return nil, unsupportedf("the split names %d versions with traffic; an HTTPRoute rule holds at most %d", len(split), maxBackendRefs)
	}
	rules = append(rules, gwv1.HTTPRouteRule{
		Matches:     []gwv1.HTTPRouteMatch{{Path: rootPath()}},
		BackendRefs: split,
	})
	rt := newRoute(service, service, "", at)
	rt.Spec.Hostnames = []gwv1.Hostname{gwv1.Hostname(service + "." + at.BaseDomain)}
	rt.Spec.Rules = rules
	return rt, nil
}

// VersionRoute is the HTTPRoute named after a version that serves its own URL,
// "<version>.<service>.<base>", bypassing the policy. It is a route of its
// own rather than an extra hostname of the service's route: hostnames of one
// route share its rules, so the version host would get the split.
func VersionRoute(service, version string, at Placement) *gwv1.HTTPRoute {
	rt := newRoute(version, service, version, at)
	rt.Spec.Hostnames = []gwv1.Hostname{gwv1.Hostname(version + "." + service + "." + at.BaseDomain)}
	rt.Spec.Rules = []gwv1.HTTPRouteRule{{
		Matches:     []gwv1.HTTPRouteMatch{{Path: rootPath()}},
		BackendRefs: []gwv1.HTTPBackendRef{backendRef(version, nil)},
	}}
	return rt
}

func newRoute(name, service, version string, at Placement) *gwv1.HTTPRoute {
	gwNS := gwv1.Namespace(at.Gateway.Namespace)
	return &gwv1.HTTPRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: at.Namespace,
			Labels:    labels(service, version),
		},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
				Name:      gwv1.ObjectName(at.Gateway.Name),
				Namespace: &gwNS,
			}}},
		},
	}
}

func rootPath() *gwv1.HTTPPathMatch {
	t := gwv1.PathMatchPathPrefix
	v := "/"
	return &gwv1.HTTPPathMatch{Type: &t, Value: &v}
}

func backendRef(version string, weight *int32) gwv1.HTTPBackendRef {
	port := gwv1.PortNumber(ServicePort)
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{
		BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(version), Port: &port},
		Weight:                 weight,
	}}
}

// queryParams translates a rule's conditions, sorted by key.
func queryParams(match map[string]string) ([]gwv1.HTTPQueryParamMatch, error) {
	if len(match) > maxQueryParams {
		return nil, fmt.Errorf("%d conditions; an HTTPRoute match holds at most %d", len(match), maxQueryParams)
	}
	keys := make([]string, 0, len(match))
	for k := range match {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	params := make([]gwv1.HTTPQueryParamMatch, 0, len(keys))
	for _, k := range keys {
		if len(k) > maxParamName || !paramNameRE.MatchString(k) {
			return nil, fmt.Errorf("key %q cannot be matched by a gateway: keys must be HTTP tokens (letters, digits and !#$%%&'*+-.^_`|~) of at most %d characters", k, maxParamName)
		}
		g, err := translateGlob(match[k])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		typ, value := gwv1.QueryParamMatchExact, g.Exact
		if g.Exact == "" {
			typ, value = gwv1.QueryParamMatchRegularExpression, g.Regexp
		}
		if len(value) > maxMatchValue {
			return nil, fmt.Errorf("key %q: the match value is %d characters long; a gateway takes at most %d", k, len(value), maxMatchValue)
		}
		params = append(params, gwv1.HTTPQueryParamMatch{Type: &typ, Name: gwv1.HTTPHeaderName(k), Value: value})
	}
	return params, nil
}

// sortedSplit returns the split's versions with a weight above zero, sorted
// by name, so the route is the same for the same policy.
func sortedSplit(split map[string]int) []policy.Weight {
	out := make([]policy.Weight, 0, len(split))
	for v, pct := range split {
		if pct > 0 {
			out = append(out, policy.Weight{Version: v, Percent: pct})
		}
	}
	slices.SortFunc(out, func(a, b policy.Weight) int { return strings.Compare(a.Version, b.Version) })
	return out
}
