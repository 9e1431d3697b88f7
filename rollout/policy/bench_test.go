package policy

import (
	"fmt"
	"testing"
)

// benchPolicy has n rules none of which matches benchQuery, unless
// lastMatches, when the last one does.
func benchPolicy(n int, lastMatches bool) Policy {
	p := Policy{Split: map[string]int{"hello-001": 90, "hello-002": 10}}
	for i := range n {
		p.Rules = append(p.Rules, Rule{
			Version: fmt.Sprintf("hello-%03d", i+3),
			Match:   map[string]string{"env": fmt.Sprintf("canary-%d*", i), "region": "eu-*"},
		})
	}
	if lastMatches {
		p.Rules[n-1].Match = map[string]string{"env": "prod", "region": "eu-*", "user": "1[0-9]*"}
	}
	return p
}

const benchQuery = "env=prod&region=eu-west&user=123"

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		cases := []struct {
			name  string
			query string
			last  bool
		}{
			{"empty", "", false},
			{"nomatch", benchQuery, false},
			{"lastmatch", benchQuery, true},
			{"escaped", "env=pr%6Fd&region=eu+west&user=123", false},
		}
		for _, tc := range cases {
			b.Run(fmt.Sprintf("rules=%d/%s", n, tc.name), func(b *testing.B) {
				c, err := Compile(benchPolicy(n, tc.last))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					c.Decide(tc.query)
				}
			})
		}
	}
}
