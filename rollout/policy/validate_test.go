package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		wantErr string // substring; "" means valid
	}{
		{name: "one version", policy: Policy{Split: map[string]int{"hello-001": 100}}},
		{name: "split with zero weights", policy: Policy{Split: map[string]int{"hello-001": 100, "hello-002": 0}}},
		{name: "90/10", policy: Policy{Split: map[string]int{"hello-001": 90, "hello-002": 10}}},
		{name: "nothing yet", policy: Policy{}},
		{name: "rules and default", policy: Policy{
			Rules: []Rule{{Version: "hello-002", Match: map[string]string{"env": "beta*", "region": "eu-[a-z]*"}}},
			Split: map[string]int{"hello-001": 100},
		}},
		{name: "rule to a version outside the split", policy: Policy{
			Rules: []Rule{{Version: "hello-003", Match: map[string]string{"user": "1?"}}},
			Split: map[string]int{"hello-001": 100},
		}},
		{name: "empty glob", policy: Policy{
			Rules: []Rule{{Version: "hello-002", Match: map[string]string{"debug": ""}}},
			Split: map[string]int{"hello-001": 100},
		}},
		{
			name:    "sum over 100",
			policy:  Policy{Split: map[string]int{"hello-001": 100, "hello-002": 10}},
			wantErr: "split weights sum to 110; they must sum to 100",
		},
		{
			name:    "sum under 100",
			policy:  Policy{Split: map[string]int{"hello-001": 50, "hello-002": 10}},
			wantErr: "split weights sum to 60; they must sum to 100",
		},
		{
			name:    "all zero",
			policy:  Policy{Split: map[string]int{"hello-001": 0}},
			wantErr: "split weights sum to 0",
		},
		{
			name:    "negative weight",
			policy:  Policy{Split: map[string]int{"hello-001": 100, "hello-002": -10}},
			wantErr: `split weight of "hello-002" is -10; weights are whole percent from 0 to 100`,
		},
		{
			name:    "weight over 100",
			policy:  Policy{Split: map[string]int{"hello-001": 150}},
			wantErr: `split weight of "hello-001" is 150`,
		},
		{
			name:    "empty version in split",
			policy:  Policy{Split: map[string]int{"": 100}},
			wantErr: "split names a version with an empty name",
		},
		{
			name: "rules without split",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002", Match: map[string]string{"env": "beta"}}},
			},
			wantErr: "split is empty",
		},
		{
			name: "rule without version",
			policy: Policy{
				Rules: []Rule{
					{Version: "hello-002", Match: map[string]string{"env": "beta"}},
					{Match: map[string]string{"env": "beta"}},
				},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: "rule 2: no version",
		},
		{
			name: "rule without conditions",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002"}},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: "rule 1 (to hello-002): no conditions",
		},
		{
			name: "empty key",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002", Match: map[string]string{"": "beta"}}},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: `rule 1: empty key (with glob "beta")`,
		},
		{
			name: "unclosed class",
			policy: Policy{
				Rules: []Rule{
					{Version: "hello-002", Match: map[string]string{"env": "beta"}},
					{Version: "hello-003", Match: map[string]string{"env": "[a"}},
				},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: `rule 2: invalid glob "[a" for key "env": `,
		},
		{
			name: "unclosed alternatives",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002", Match: map[string]string{"env": "{a,b"}}},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: `rule 1: invalid glob "{a,b" for key "env": `,
		},
		{
			name: "trailing backslash",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002", Match: map[string]string{"env": `beta\`}}},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: `invalid glob "beta\\" for key "env"`,
		},
		{
			name: "class mixing a range and a list",
			policy: Policy{
				Rules: []Rule{{Version: "hello-002", Match: map[string]string{"user": "[a-z0-9]"}}},
				Split: map[string]int{"hello-001": 100},
			},
			wantErr: `invalid glob "[a-z0-9]" for key "user"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			_, cerr := Compile(tt.policy)
			if tt.wantErr == "" {
				if err != nil || cerr != nil {
					t.Fatalf("Validate() = %v, Compile() error = %v; want both nil", err, cerr)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil; want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q; want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("errors.Is(%v, ErrInvalidPolicy) = false", err)
			}
			if cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Compile() error = %v; want the same as Validate(): %v", cerr, err)
			}
		})
	}
}
