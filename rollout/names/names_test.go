package names

import (
	"strings"
	"testing"
)

func TestServiceNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		valid bool
	}{
		{"hello", true},
		{"a", true},
		{"web-api2", true},
		{strings.Repeat("a", MaxServiceLength), true},
		{strings.Repeat("a", MaxServiceLength+1), false},
		{"", false},
		{"Hello", false},
		{"2web", false},
		{"web-", false},
		{"we_b", false},
		{"web.api", false},
	} {
		if got := ValidService(tc.name); got != tc.valid {
			t.Errorf("ValidService(%q) = %v, want %v", tc.name, got, tc.valid)
		}
	}
	if !ServiceShape(strings.Repeat("a", MaxServiceLength+1)) {
		t.Error("ServiceShape checks the length; callers rely on it not to")
	}
}

func TestVersionNames(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"hello-001": true, "web-api-1234": true, "hello-01": false, "hello": false, "Hello-001": false, "-001": false,
	} {
		if got := LooksLikeVersion(s); got != want {
			t.Errorf("LooksLikeVersion(%q) = %v, want %v", s, got, want)
		}
	}
}
