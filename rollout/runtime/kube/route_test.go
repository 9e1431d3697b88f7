package kube

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gobwas/glob"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/policy"
)

var testPlacement = Placement{Namespace: "web", Gateway: Gateway{Namespace: "infra", Name: "edge"}, BaseDomain: "apps.example.com"}

func exact(name, value string) gwv1.HTTPQueryParamMatch {
	return gwv1.HTTPQueryParamMatch{Type: ptrTo(gwv1.QueryParamMatchExact), Name: gwv1.HTTPHeaderName(name), Value: value}
}

func regex(name, value string) gwv1.HTTPQueryParamMatch {
	return gwv1.HTTPQueryParamMatch{Type: ptrTo(gwv1.QueryParamMatchRegularExpression), Name: gwv1.HTTPHeaderName(name), Value: value}
}

func ref(version string, weight int32) gwv1.HTTPBackendRef {
	r := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
		Name: gwv1.ObjectName(version), Port: ptrTo(gwv1.PortNumber(80)),
	}}}
	if weight >= 0 {
		r.Weight = &weight
	}
	return r
}

func ruleTo(params []gwv1.HTTPQueryParamMatch, refs ...gwv1.HTTPBackendRef) gwv1.HTTPRouteRule {
	return gwv1.HTTPRouteRule{
		Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptrTo(gwv1.PathMatchPathPrefix), Value: ptrTo("/")}, QueryParams: params}},
		BackendRefs: refs,
	}
}

func TestServiceRoute(t *testing.T) {
	tests := []struct {
		name   string
		policy policy.Policy
		rules  []gwv1.HTTPRouteRule
	}{
		{
			name:   "full",
			policy: policy.Policy{Split: map[string]int{"hello-001": 100}},
			rules:  []gwv1.HTTPRouteRule{ruleTo(nil, ref("hello-001", 100))},
		},
		{
			name:   "split 90/10, zero weights left out, versions sorted",
			policy: policy.Policy{Split: map[string]int{"hello-002": 10, "hello-001": 90, "hello-003": 0}},
			rules:  []gwv1.HTTPRouteRule{ruleTo(nil, ref("hello-001", 90), ref("hello-002", 10))},
		},
		{
			name: "rules in order, then the split",
			policy: policy.Policy{
				Rules: []policy.Rule{
					{Version: "hello-003", Match: map[string]string{"region": "eu", "env": "beta*"}},
					{Version: "hello-002", Match: map[string]string{"env": "beta*"}},
					{Version: "hello-004", Match: map[string]string{"user": `a\*b`}},
				},
				Split: map[string]int{"hello-001": 100},
			},
			rules: []gwv1.HTTPRouteRule{
				ruleTo([]gwv1.HTTPQueryParamMatch{regex("env", `(?s)^beta.*$`), exact("region", "eu")}, ref("hello-003", -1)),
				ruleTo([]gwv1.HTTPQueryParamMatch{regex("env", `(?s)^beta.*$`)}, ref("hello-002", -1)),
				ruleTo([]gwv1.HTTPQueryParamMatch{exact("user", "a*b")}, ref("hello-004", -1)),
				ruleTo(nil, ref("hello-001", 100)),
			},
		},
		{
			name:   "no version yet",
			policy: policy.Policy{},
			rules:  []gwv1.HTTPRouteRule{ruleTo(nil)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServiceRoute("hello", tt.policy, testPlacement)
			if err != nil {
				t.Fatalf("ServiceRoute: %v", err)
			}
			want := &gwv1.HTTPRoute{
				TypeMeta: metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute"},
				ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "web", Labels: map[string]string{
					"sluice.dev/service": "hello", "app.kubernetes.io/managed-by": "sluice",
				}},
				Spec: gwv1.HTTPRouteSpec{
					CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
						Namespace: ptrTo(gwv1.Namespace("infra")), Name: "edge",
					}}},
					Hostnames: []gwv1.Hostname{"hello.apps.example.com"},
					Rules:     tt.rules,
				},
			}
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("route differs:\n got %s\nwant %s", dump(got), dump(want))
			}
		})
	}
}

func TestVersionRoute(t *testing.T) {
	got := VersionRoute("hello", "hello-004", testPlacement)
	if got.Name != "hello-004" || got.Namespace != "web" {
		t.Errorf("name = %s/%s; want web/hello-004", got.Namespace, got.Name)
	}
	if !slices.Equal(got.Spec.Hostnames, []gwv1.Hostname{"hello-004.hello.apps.example.com"}) {
		t.Errorf("hostnames = %v; want only the version host", got.Spec.Hostnames)
	}
	if want := []gwv1.HTTPRouteRule{ruleTo(nil, ref("hello-004", -1))}; !equality.Semantic.DeepEqual(got.Spec.Rules, want) {
		t.Errorf("rules = %s; want %s", dump(got.Spec.Rules), dump(want))
	}
	if got.Labels[LabelVersion] != "hello-004" || got.Labels[LabelService] != "hello" {
		t.Errorf("labels = %v", got.Labels)
	}
}

func TestServiceRouteRefusesWhatAGatewayCannotExpress(t *testing.T) {
	many := map[string]int{}
	for i := range 17 {
		many[fmt.Sprintf("hello-%03d", i+1)] = 0
	}
	many["hello-001"] = 84
	for i := 2; i <= 17; i++ {
		many[fmt.Sprintf("hello-%03d", i)] = 1
	}
	var sixteen []policy.Rule
	for range 16 {
		sixteen = append(sixteen, policy.Rule{Version: "hello-002", Match: map[string]string{"env": "beta"}})
	}
	tests := []struct {
		name    string
		policy  policy.Policy
		wantErr string
	}{
		{
			name: "a later rule with more conditions",
			policy: policy.Policy{Rules: []policy.Rule{
				{Version: "hello-002", Match: map[string]string{"env": "beta"}},
				{Version: "hello-003", Match: map[string]string{"env": "beta", "region": "eu"}},
			}, Split: map[string]int{"hello-001": 100}},
			wantErr: "rule 2 has more conditions (2) than rule 1 before it (1)",
		},
		{
			name: "a key that is not an HTTP token",
			policy: policy.Policy{Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"a b": "x"}}},
				Split: map[string]int{"hello-001": 100}},
			wantErr: `rule 1: key "a b" cannot be matched by a gateway`,
		},
		{
			name:    "too many rules",
			policy:  policy.Policy{Rules: sixteen, Split: map[string]int{"hello-001": 100}},
			wantErr: "the policy has 16 rules; an HTTPRoute holds at most 15",
		},
		{
			name:    "too many versions in the split",
			policy:  policy.Policy{Split: many},
			wantErr: "the split names 17 versions with traffic",
		},
		{
			name: "a value too long",
			policy: policy.Policy{Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"env": strings.Repeat("a", 1025)}}},
				Split: map[string]int{"hello-001": 100}},
			wantErr: "at most 1024",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := ServiceRoute("hello", tt.policy, testPlacement)
			if err == nil {
				t.Fatalf("ServiceRoute = %s, nil; want an error", dump(rt))
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q; want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, policy.ErrInvalidPolicy) {
				t.Errorf("errors.Is(%v, policy.ErrInvalidPolicy) = false; front doors would not answer 400", err)
			}
		})
	}
}

func TestTranslateGlob(t *testing.T) {
	tests := []struct {
		glob       string
		exact, re  string
		matches    []string
		mismatches []string
	}{
		{glob: "beta", exact: "beta"},
		{glob: `a\*b`, exact: "a*b"},
		{glob: "a,b}", exact: "a,b}"},
		{glob: "", re: `(?s)^$`, matches: []string{""}, mismatches: []string{"a"}},
		{glob: "beta*", re: `(?s)^beta.*$`, matches: []string{"beta", "beta-2\n"}, mismatches: []string{"xbeta"}},
		{glob: "v?.[0-9]", re: `(?s)^v.\.[0-9]$`, matches: []string{"v1.2", "vé.0"}, mismatches: []string{"v12"}},
		{glob: "[!a-c]x", re: `(?s)^[^a-c]x$`, matches: []string{"dx", "\nx"}, mismatches: []string{"bx"}},
		{glob: "{eu,us-*}", re: `(?s)^(?:eu|us-.*)$`, matches: []string{"eu", "us-east"}, mismatches: []string{"ap"}},
		{glob: `[\]^-]`, re: `(?s)^[\]\^\-]$`, matches: []string{"^", "-"}, mismatches: []string{"a"}},
		{glob: "a.b+c", exact: "a.b+c"},
	}
	for _, tt := range tests {
		t.Run(tt.glob, func(t *testing.T) {
			got, err := translateGlob(tt.glob)
			if err != nil {
				t.Fatalf("translateGlob: %v", err)
			}
			if got.Exact != tt.exact || got.Regexp != tt.re {
				t.Fatalf("translateGlob(%q) = %+v; want Exact %q Regexp %q", tt.glob, got, tt.exact, tt.re)
			}
			if tt.re == "" {
				return
			}
			re := regexp.MustCompile(tt.re)
			for _, s := range tt.matches {
				if !re.MatchString(s) {
					t.Errorf("%s does not match %q", tt.re, s)
				}
			}
			for _, s := range tt.mismatches {
				if re.MatchString(s) {
					t.Errorf("%s matches %q", tt.re, s)
				}
			}
		})
	}
}

// TestServiceRouteRoutesLikeTheRouter checks the translation against the
// local router itself: for random policies, the route sluice writes, evaluated
// the way the Gateway API specifies, sends the same 1,000+ random queries to
// the same rule as policy.Compiled.Decide. Queries repeat no key: for a
// repeated key the Gateway API leaves the behaviour to each gateway (see the
// README), while the router matches any of its values.
func TestServiceRouteRoutesLikeTheRouter(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	queries, byRule := 0, 0
	for range 40 {
		p := randomPolicy(rng)
		compiled, err := policy.Compile(p)
		if err != nil {
			t.Fatalf("random policy invalid: %v", err)
		}
		rt, err := ServiceRoute("hello", p, testPlacement)
		if err != nil {
			t.Fatalf("ServiceRoute(%+v): %v", p, err)
		}
		gw := compileRoute(t, rt)
		for range 30 {
			q := randomQuery(rng)
			want := compiled.Decide(q).Rule
			got := gw.decide(q)
			if got == len(p.Rules) {
				got = -1 // the split rule
			}
			if got != want {
				t.Fatalf("query %q: the HTTPRoute picks rule %d, the router rule %d\npolicy %+v\nroute %s", q, got, want, p.Rules, dump(rt.Spec.Rules))
			}
			queries++
			if want >= 0 {
				byRule++
			}
		}
	}
	if queries < 1000 || byRule < queries/10 || byRule > queries*9/10 {
		t.Fatalf("%d queries, %d of them matched by a rule: the sample does not exercise both outcomes", queries, byRule)
	}
	t.Logf("%d queries, %d routed by a rule", queries, byRule)
}

// gatewayRoute evaluates an HTTPRoute whose matches differ only in query
// parameters, as the Gateway API specifies: rules with more query parameter
// matches first, ties in list order; Exact compares the value, RegularExpression
// matches it (RE2); the first value of a parameter is used.
type gatewayRoute struct {
	order []int // rule indexes in precedence order
	rules [][]paramMatcher
}

type paramMatcher struct {
	name  string
	exact *string
	re    *regexp.Regexp
}

func compileRoute(t *testing.T, rt *gwv1.HTTPRoute) gatewayRoute {
	var g gatewayRoute
	for i, r := range rt.Spec.Rules {
		if len(r.Matches) != 1 {
			t.Fatalf("rule %d has %d matches; want 1", i, len(r.Matches))
		}
		var ms []paramMatcher
		for _, q := range r.Matches[0].QueryParams {
			m := paramMatcher{name: string(q.Name)}
			switch *q.Type {
			case gwv1.QueryParamMatchExact:
				m.exact = ptrTo(q.Value)
			case gwv1.QueryParamMatchRegularExpression:
				m.re = regexp.MustCompile(q.Value)
			}
			ms = append(ms, m)
		}
		g.rules = append(g.rules, ms)
		g.order = append(g.order, i)
	}
	slices.SortStableFunc(g.order, func(a, b int) int { return len(g.rules[b]) - len(g.rules[a]) })
	return g
}

func (g gatewayRoute) decide(rawQuery string) int {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		panic(err)
	}
	for _, i := range g.order {
		ok := true
		for _, m := range g.rules[i] {
			vs, present := q[m.name]
			if !present {
				ok = false
				break
			}
			v := vs[0]
			if m.exact != nil && v != *m.exact || m.re != nil && !m.re.MatchString(v) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

var (
	testKeys    = []string{"env", "region", "v", "user.id"}
	valueRunes  = []string{"a", "a", "b", "b", "c", "-", ".", "*", "?", "[", "]", "{", "}", ",", " ", "é", "\n", "%", "&", "="}
	globPieces  = []string{"a", "b", "-", ".", "é", "*", "*", "*", "?", "[ab]", "[!a]", "[a-c]", "{a,b*}", `\*`, `\?`, `\[`, "*a*", "*b"}
	splitShapes = []map[string]int{{"hello-001": 100}, {"hello-001": 90, "hello-002": 10}, {"hello-001": 50, "hello-002": 0, "hello-003": 50}}
)

func randomPolicy(rng *rand.Rand) policy.Policy {
	var rules []policy.Rule
	for i := range 1 + rng.IntN(4) {
		m := map[string]string{}
		for _, k := range rng.Perm(len(testKeys))[:1+rng.IntN(2)] {
			m[testKeys[k]] = randomGlob(rng)
		}
		rules = append(rules, policy.Rule{Version: fmt.Sprintf("hello-%03d", 10+i), Match: m})
	}
	// Most conditions first: the order an HTTPRoute can express.
	slices.SortStableFunc(rules, func(a, b policy.Rule) int { return len(b.Match) - len(a.Match) })
	return policy.Policy{Rules: rules, Split: splitShapes[rng.IntN(len(splitShapes))]}
}

func randomGlob(rng *rand.Rand) string {
	for {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(globPieces[rng.IntN(len(globPieces))])
		}
		if _, err := glob.Compile(b.String()); err == nil {
			return b.String()
		}
	}
}

func randomQuery(rng *rand.Rand) string {
	var parts []string
	for _, k := range rng.Perm(len(testKeys))[:rng.IntN(len(testKeys)+1)] {
		if rng.IntN(8) == 0 {
			parts = append(parts, url.QueryEscape(testKeys[k])) // "?key": the value ""
			continue
		}
		var v strings.Builder
		for range rng.IntN(5) {
			v.WriteString(valueRunes[rng.IntN(len(valueRunes))])
		}
		parts = append(parts, url.QueryEscape(testKeys[k])+"="+url.QueryEscape(v.String()))
	}
	if rng.IntN(4) == 0 {
		parts = append(parts, "other=a")
	}
	return strings.Join(parts, "&")
}
