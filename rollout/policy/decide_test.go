package policy

import (
	"math"
	"net/url"
	"slices"
	"testing"
)

// decidePolicy exercises every rule semantic; requests no rule matches go
// to hello-001.
var decidePolicy = Policy{
	Rules: []Rule{
		{Version: "hello-002", Match: map[string]string{"env": "beta*"}},                       // 0
		{Version: "hello-003", Match: map[string]string{"env": "prod", "region": "eu-*"}},      // 1
		{Version: "hello-004", Match: map[string]string{"q": "a b"}},                           // 2
		{Version: "hello-005", Match: map[string]string{"flag": ""}},                           // 3
		{Version: "hello-006", Match: map[string]string{"path": "/api/*"}},                     // 4
		{Version: "hello-007", Match: map[string]string{"user": "1[0-9]?"}},                    // 5
		{Version: "hello-008", Match: map[string]string{"any": "*"}},                           // 6
		{Version: "hello-009", Match: map[string]string{"raw": "100%"}},                        // 7
		{Version: "hello-010", Match: map[string]string{"team": "{red,blue}-[!x]"}},            // 8
		{Version: "hello-011", Match: map[string]string{"env": "beta-eu"}},                     // 9: shadowed by 0
		{Version: "hello-012", Match: map[string]string{"lang": "\\*"}},                        // 10
		{Version: "hello-013", Match: map[string]string{"ver": "v?", "tier": "[a-c]"}},         // 11
		{Version: "hello-014", Match: map[string]string{"name": "?t?"}},                        // 12
		{Version: "hello-015", Match: map[string]string{"b": "b*b", "multi": "x"}},             // 13
		{Version: "hello-016", Match: map[string]string{"b": "b*b", "multi": "{[a-z],[0-9]}"}}, // 14
	},
	Split: map[string]int{"hello-001": 100},
}

func TestDecide(t *testing.T) {
	c, err := Compile(decidePolicy)
	if err != nil {
		t.Fatal(err)
	}
	const split = -1
	tests := []struct {
		name  string
		query string
		rule  int
	}{
		{"empty query goes to the split", "", split},
		{"glob prefix", "env=beta", 0},
		{"glob prefix longer", "env=beta-2", 0},
		{"glob is case-sensitive", "env=Beta", split},
		{"key is exact", "ENV=beta", split},
		{"key is not a prefix", "envx=beta", split},
		{"all conditions must match", "env=prod", split},
		{"all conditions match in any order", "region=eu-west&env=prod", 1},
		{"one condition fails", "env=prod&region=us-east", split},
		{"repeated key: any value matches", "env=alpha&env=beta1", 0},
		{"repeated key: first value matches", "env=beta&env=alpha", 0},
		{"repeated key: no value matches", "env=alpha&env=gamma", split},
		{"first matching rule wins", "any=1&env=beta-eu", 0},
		{"a later rule when earlier ones fail", "any=1&env=alpha", 6},
		{"percent-decoded space", "q=a%20b", 2},
		{"plus is a space", "q=a+b", 2},
		{"undecoded value does not match", "q=a%2520b", split},
		{"percent-decoded key", "%65nv=beta", 0},
		{"plus in key", "a+b=1&env=beta", 0},
		{"invalid escape: raw value", "raw=100%", 7},
		{"valid escape of percent", "raw=100%25", 7},
		{"invalid escape elsewhere in value", "raw=100%zz", split},
		{"bare key has the empty value", "flag", 3},
		{"key with = and no value", "flag=", 3},
		{"key with a value", "flag=1", split},
		{"absent key never matches, not even *", "other=1", split},
		{"star matches the empty value of a bare key", "any", 6},
		{"star matches slashes", "path=/api/v1/users", 4},
		{"star matches encoded slashes", "path=%2Fapi%2Fv1", 4},
		{"star needs the prefix", "path=/web/api/x", split},
		{"class and question mark", "user=123", 5},
		{"question mark needs a character", "user=12", split},
		{"class rejects a letter", "user=1a3", split},
		{"escaped class input", "user=1%33x", 5},
		{"alternatives and negated class", "team=blue-a", 8},
		{"negated class rejects", "team=red-x", split},
		{"alternatives reject", "team=green-a", split},
		{"escaped star is literal", "lang=*", 10},
		{"escaped star does not glob", "lang=go", split},
		{"ranges", "ver=v2&tier=b", 11},
		{"range rejects", "ver=v2&tier=d", split},
		{"question mark is one rune", "name=%C3%A9t%C3%A9", 12},
		{"overlapping prefix and suffix need two chars", "b=b&multi=x", split},
		{"prefix and suffix", "b=bob&multi=x", 13},
		{"alternative classes", "b=bb&multi=7", 14},
		{"empty segments are skipped", "&&env=beta&", 0},
		{"semicolon is not a separator", "env=beta;region=eu", 0},
		{"long query beyond the stack pairs", "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12&m=13&n=14&o=15&p=16&q2=17&env=beta", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Decide(tt.query)
			want := Decision{Version: "hello-001", Rule: -1}
			if tt.rule >= 0 {
				want = Decision{Version: decidePolicy.Rules[tt.rule].Version, Rule: tt.rule}
			}
			if got != want {
				t.Errorf("Decide(%q) = %+v; want %+v", tt.query, got, want)
			}
		})
	}
}

func TestDecideEmptySplit(t *testing.T) {
	c, err := Compile(Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Decide("env=beta"), (Decision{Rule: -1}); got != want {
		t.Errorf("Decide on an empty policy = %+v; want %+v", got, want)
	}
	var nilc *Compiled
	if got, want := nilc.Decide(""), (Decision{Rule: -1}); got != want {
		t.Errorf("Decide on a nil policy = %+v; want %+v", got, want)
	}
}

func TestSplitDistribution(t *testing.T) {
	tests := []map[string]int{
		{"hello-001": 90, "hello-002": 10},
		{"hello-001": 50, "hello-002": 25, "hello-003": 25, "hello-004": 0},
		{"hello-001": 1, "hello-002": 99},
	}
	const n = 10000
	for _, split := range tests {
		c, err := Compile(Policy{Split: split})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for range n {
			d := c.Decide("")
			if d.Rule != -1 {
				t.Fatalf("Decide(\"\").Rule = %d; want -1", d.Rule)
			}
			counts[d.Version]++
		}
		for v, pct := range split {
			got := 100 * float64(counts[v]) / n
			if math.Abs(got-float64(pct)) > 2 {
				t.Errorf("split %v: %s got %.1f%% of %d decisions; want %d%% ± 2", split, v, got, n, pct)
			}
			if pct == 0 && counts[v] > 0 {
				t.Errorf("split %v: %s has weight 0 but got %d decisions", split, v, counts[v])
			}
		}
	}
}

func TestSplit(t *testing.T) {
	c, err := Compile(Policy{Split: map[string]int{"hello-003": 10, "hello-001": 0, "hello-002": 90}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Weight{{"hello-001", 0}, {"hello-002", 90}, {"hello-003", 10}}
	got := c.Split()
	if !slices.Equal(got, want) {
		t.Fatalf("Split() = %v; want %v", got, want)
	}
	got[0].Percent = 100
	if again := c.Split(); !slices.Equal(again, want) {
		t.Errorf("Split() after changing a returned slice = %v; want %v (Compiled is immutable)", again, want)
	}
}

func TestCompileIsIndependentOfPolicy(t *testing.T) {
	p := Policy{
		Rules: []Rule{{Version: "hello-002", Match: map[string]string{"env": "beta"}}},
		Split: map[string]int{"hello-001": 100},
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	p.Rules[0].Version = "hello-009"
	p.Rules[0].Match["env"] = "*"
	p.Split["hello-001"] = 0
	if got, want := c.Decide("env=beta"), (Decision{Version: "hello-002", Rule: 0}); got != want {
		t.Errorf("Decide(env=beta) after editing the policy = %+v; want %+v", got, want)
	}
	if got := c.Decide("env=alpha"); got.Version != "hello-001" {
		t.Errorf("Decide(env=alpha) after editing the policy = %+v; want hello-001", got)
	}
}

func TestDecideAllocs(t *testing.T) {
	c, err := Compile(benchPolicy(100, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "env=prod&region=eu-west&user=123"} {
		if n := testing.AllocsPerRun(200, func() { c.Decide(q) }); n != 0 {
			t.Errorf("Decide(%q) allocates %v times per call; want 0", q, n)
		}
	}
}

func TestUnescapedEqual(t *testing.T) {
	raws := []string{"env", "%65nv", "e+v", "e%20v", "%zz", "%", "%4", "%41%42", "a%2Bb", "a+", "%2", "100%", "%C3%A9"}
	wants := []string{"env", "e v", "%zz", "%", "%4", "AB", "a+b", "a ", "%2", "100%", "é", ""}
	for _, raw := range raws {
		for _, want := range wants {
			got := unescapedEqual(raw, want)
			if ref := queryUnescape(raw) == want; got != ref {
				t.Errorf("unescapedEqual(%q, %q) = %v; want %v", raw, want, got, ref)
			}
		}
	}
}

func FuzzUnescapedEqual(f *testing.F) {
	f.Add("%65nv", "env")
	f.Add("a+b%", "a b%")
	f.Add("%4g", "%4g")
	f.Fuzz(func(t *testing.T, raw, want string) {
		ref := want
		if u, err := url.QueryUnescape(raw); err == nil {
			ref = u
		} else {
			ref = raw
		}
		if got := unescapedEqual(raw, want); got != (ref == want) {
			t.Errorf("unescapedEqual(%q, %q) = %v; want %v", raw, want, got, ref == want)
		}
	})
}
