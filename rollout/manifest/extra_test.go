package manifest

import (
	"strings"
	"testing"
)

func TestStickyAndMaxBody(t *testing.T) {
	m, err := Parse(FileName, []byte("services:\n  web:\n    run: ./app\n    sticky: true\n    max_body: 10MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Services[0]; !s.Sticky || s.MaxBodyBytes != 10<<20 {
		t.Fatalf("got sticky=%v max_body=%d", s.Sticky, s.MaxBodyBytes)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"    sticky: yes please\n", "5:13: services.web.sticky: must be true or false"},
		{"    max_body: lots\n", "5:15: services.web.max_body: must be a positive size"},
		{"    max_body: -1KB\n", "services.web.max_body: must be a positive size"},
		{"    max_body: [1]\n", "services.web.max_body: must be a size"},
	} {
		_, err := Parse(FileName, []byte("services:\n  web:\n    run: ./app\n    instances: 1\n"+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestForks(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"services: {web: {run: ./app}}\n", ForksDeny},
		{"services: {web: {run: ./app}}\nforks:\n", ForksDeny},
		{"forks: deny\nservices: {web: {run: ./app}}\n", ForksDeny},
		{"services: {web: {run: ./app}}\nforks: allow\n", ForksAllow},
	} {
		m, err := Parse(FileName, []byte(tc.yaml))
		if err != nil || m.Forks != tc.want {
			t.Errorf("%q: got %+v, %v; want forks %q", tc.yaml, m, err, tc.want)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"services: {web: {run: ./app}}\nforks: yes\n", `sluice.yaml:2:8: forks: must be one of deny, allow, got "yes"`},
		{"services: {web: {run: ./app}}\nforks: [allow]\n", "sluice.yaml:2:8: forks: must be a string"},
		{"services: {web: {run: ./app}}\nfork: allow\n", `sluice.yaml:2:1: fork: unknown field "fork" (did you mean "forks"?)`},
		{"services:\n  web: {run: ./app, forks: allow}\n", `unknown field "forks"`},
	} {
		_, err := Parse(FileName, []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestServiceNamesOfABrokenFile(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"bad values", "services:\n  web:\n    instances: lots\n  worker:\n    run: ./w\n    bogus: 1\n", []string{"web", "worker"}},
		{"bad name skipped", "services:\n  Web_1:\n    run: x\n  api:\n    run: y\n", []string{"api"}},
		{"no services", "service:\n  web: {}\n", nil},
		{"services not a mapping", "services: [web]\n", nil},
		{"not yaml", "services:\n  web: [\n", nil},
		{"empty", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServiceNames([]byte(tc.yaml)); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("ServiceNames = %v, want %v", got, tc.want)
			}
		})
	}
}
