package policy

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseMatch(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "env=beta*", want: map[string]string{"env": "beta*"}},
		{in: "env=beta*&region=eu", want: map[string]string{"env": "beta*", "region": "eu"}},
		{in: "debug=", want: map[string]string{"debug": ""}},
		{in: "expr=a=b", want: map[string]string{"expr": "a=b"}},
		{in: "user=1[0-9]?&v={a,b}", want: map[string]string{"user": "1[0-9]?", "v": "{a,b}"}},
		{in: "q=a%20b", want: map[string]string{"q": "a%20b"}}, // literal, not decoded
		{in: "", wantErr: "empty match"},
		{in: "env", wantErr: `condition "env" has no '='`},
		{in: "env=beta&region", wantErr: `condition "region" has no '='`},
		{in: "=beta", wantErr: `condition "=beta" has an empty key`},
		{in: "env=a&env=b", wantErr: `key "env" appears more than once`},
		{in: "env=a&&region=b", wantErr: "empty condition"},
		{in: "env=a&", wantErr: "empty condition"},
		{in: "env=[a", wantErr: `invalid glob "[a" for key "env"`},
		{in: "env={a", wantErr: `invalid glob "{a" for key "env"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMatch(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseMatch(%q) = %v, nil; want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseMatch(%q) error = %q; want it to contain %q", tt.in, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidPolicy) {
					t.Errorf("errors.Is(%v, ErrInvalidPolicy) = false", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMatch(%q) error = %v", tt.in, err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseMatch(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatMatch(t *testing.T) {
	tests := []struct {
		in   map[string]string
		want string
	}{
		{in: map[string]string{"env": "beta*"}, want: "env=beta*"},
		{in: map[string]string{"region": "eu", "env": "beta*", "a": ""}, want: "a=&env=beta*&region=eu"},
		{in: nil, want: ""},
	}
	for _, tt := range tests {
		got := FormatMatch(tt.in)
		if got != tt.want {
			t.Errorf("FormatMatch(%v) = %q; want %q", tt.in, got, tt.want)
		}
		if len(tt.in) == 0 {
			continue
		}
		back, err := ParseMatch(got)
		if err != nil || !maps.Equal(back, tt.in) {
			t.Errorf("ParseMatch(FormatMatch(%v)) = %v, %v; want the map back", tt.in, back, err)
		}
	}
}
