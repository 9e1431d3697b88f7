package layout

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/sluicehq/sluice"

// pkgDeps maps each package matched by patterns to everything it links
// (transitively, tests excluded), as `go list -deps` reports it.
func pkgDeps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}"}, patterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	m := make(map[string][]string)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	if len(m) == 0 {
		t.Fatalf("go %s listed no package", strings.Join(args, " "))
	}
	return m
}

// under reports whether path is pkg or a package below it.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

var (
	echo       = "github.com/labstack/echo"
	goGitHub   = "github.com/google/go-github"
	bbolt      = "go.etcd.io/bbolt"
	prometheus = "github.com/prometheus"
	router     = mod + "/rollout/router"
	local      = mod + "/rollout/runtime/local"
	kube       = mod + "/rollout/runtime/kube"
	bot        = mod + "/bot"
)

// TestImportRules asserts the import rules of the house style: each row
// names packages and what none of them may link, directly or not.
func TestImportRules(t *testing.T) {
	t.Parallel()
	for _, rule := range []struct {
		name      string
		patterns  []string
		forbidden []string
	}{
		{"the domain imports no web framework, GitHub client, database, metrics or data path",
			[]string{"../../rollout"}, []string{echo, goGitHub, bbolt, prometheus, router, local, kube}},
		{"the leaf packages of the domain stay leaves",
			[]string{"../../rollout/policy", "../../rollout/routing", "../../rollout/reason", "../../rollout/contain"},
			[]string{echo, goGitHub, bbolt, prometheus, router, mod + "/rollout/runtime", mod + "/store", bot}},
		{"front doors import no runtime driver and no router",
			[]string{"../../bot/..."}, []string{local, kube, router}},
		{"the store imports no front door, router or metrics",
			[]string{"../../store/..."}, []string{bot, router, prometheus}},
		{"the comment grammar imports no router or metrics",
			[]string{"../../bot/command"}, []string{router, prometheus}},
	} {
		for pkg, deps := range pkgDeps(t, rule.patterns...) {
			for _, f := range rule.forbidden {
				if i := slices.IndexFunc(deps, func(d string) bool { return under(d, f) }); i >= 0 {
					t.Errorf("%s: %s links %s", rule.name, pkg, deps[i])
				}
			}
		}
	}
}

// TestCommandGrammarIsLight asserts that the comment grammar links nothing
// heavier than the policy vocabulary: every package it links outside the
// standard library is rollout/policy, the name rules (rollout/names, a
// leaf of the standard library) or something rollout/policy links.
func TestCommandGrammarIsLight(t *testing.T) {
	t.Parallel()
	policy, names := mod+"/rollout/policy", mod+"/rollout/names"
	for _, d := range pkgDeps(t, "../../rollout/names")[names] {
		if !std(d) {
			t.Errorf("%s links %s; the grammar relies on it being a leaf", names, d)
		}
	}
	allowed := append(pkgDeps(t, "../../rollout/policy")[policy], policy, names)
	for pkg, deps := range pkgDeps(t, "../../bot/command") {
		for _, d := range deps {
			if std(d) || slices.Contains(allowed, d) {
				continue
			}
			t.Errorf("%s imports %s, more than %s needs", pkg, d, policy)
		}
	}
}

// std reports whether an import path is the standard library's: its first
// element has no dot (vendored golang.org/x packages of the standard library
// are listed under "vendor/").
func std(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
