package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestIndexMatchesScan: the indexed decision picks exactly the rule a scan
// of every rule in order picks (first match wins), on random policies and
// queries: keys repeated, absent or escaped, values escaped, globs with
// literal prefixes of every length, classes, alternatives and escapes.
func TestIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	keys := []string{"env", "region", "user", "a b", "x"}
	lit := func() string {
		const alpha = "abe-1 %"
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteByte(alpha[rng.IntN(len(alpha))])
		}
		return b.String()
	}
	globs := []func() string{
		func() string { return lit() },
		func() string { return lit() + "*" },
		func() string { return lit() + "?" + lit() },
		func() string { return "*" + lit() },
		func() string { return lit() + "[a-e]*" },
		func() string { return "{" + lit() + "," + lit() + "}" },
		func() string { return lit() + "{" + lit() + ",b*}" },
		func() string { return lit() + `\*` + lit() },
		func() string { return "" },
	}
	escape := func(s string) string {
		var b strings.Builder
		for i := range len(s) {
			switch c := s[i]; {
			case c == ' ' && rng.IntN(2) == 0:
				b.WriteByte('+')
			case c == ' ' || c == '%' || rng.IntN(6) == 0:
				fmt.Fprintf(&b, "%%%02X", c)
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	for round := range 300 {
		p := Policy{Split: map[string]int{"v-000": 100}}
		for i := range 1 + rng.IntN(60) {
			m := map[string]string{}
			for range 1 + rng.IntN(3) {
				m[keys[rng.IntN(len(keys))]] = globs[rng.IntN(len(globs))]()
			}
			p.Rules = append(p.Rules, Rule{Version: fmt.Sprintf("v-%03d", i+1), Match: m})
		}
		c, err := Compile(p)
		if err != nil {
			continue // a random glob that does not compile
		}
		for range 200 {
			var parts []string
			for range rng.IntN(5) {
				k := keys[rng.IntN(len(keys))]
				switch rng.IntN(6) {
				case 0:
					parts = append(parts, escape(k))
				case 1:
					parts = append(parts, escape(k)+"="+escape(lit()+lit()))
				case 2:
					parts = append(parts, k+"=%zz"+lit())
				default:
					parts = append(parts, escape(k)+"="+escape(lit()+"b"+lit()))
				}
			}
			raw := strings.Join(parts, "&")
			var buf [stackPairs]queryPair
			want := -1
			if raw != "" {
				want = c.scan(parseQuery(raw, buf[:0]))
			}
			got := c.Decide(raw)
			if got.Rule != want || want >= 0 && got.Version != p.Rules[want].Version {
				t.Fatalf("round %d, query %q: Decide chose rule %d (%s); a scan of every rule chooses %d\npolicy: %+v",
					round, raw, got.Rule, got.Version, want, p.Rules)
			}
		}
	}
}

// TestDecideAllocsManyRules: at a thousand rules, a query no rule matches
// is decided without allocating.
func TestDecideAllocsManyRules(t *testing.T) {
	c := mustCompile(t, benchPolicy(1000, false))
	if n := testing.AllocsPerRun(100, func() { c.Decide(benchQuery) }); n != 0 {
		t.Errorf("Decide at 1000 rules allocates %v times; want 0", n)
	}
	if d := c.Decide(benchQuery); d.Rule != -1 {
		t.Errorf("Decide = %+v; want the split", d)
	}
	c = mustCompile(t, benchPolicy(1000, true))
	if d := c.Decide(benchQuery); d.Rule != 999 {
		t.Errorf("Decide = %+v; want rule 999", d)
	}
}

func mustCompile(t testing.TB, p Policy) *Compiled {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", p, err)
	}
	return c
}
