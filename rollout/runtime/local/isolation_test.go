package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Secrets sluice holds in its own environment (the admin token, the webhook
// secret, cloud credentials of its host) never reach a build or an
// instance: children get the allow-listed variables and their Spec's env.
func TestChildrenDoNotInheritSluiceSecrets(t *testing.T) {
	secrets := map[string]string{
		"SLUICE_TOKEN":                 "admin-s3cret",
		"SLUICE_GITHUB_WEBHOOK_SECRET": "hook-s3cret",
		"AWS_SECRET_ACCESS_KEY":        "aws-s3cret",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	l := newLocal(t)
	spec := appSpec(t, "hello-001", "serve", map[string]string{"GREETING": "hi"})
	spec.Build = "env > build-env.txt"
	mustBuild(t, l, spec)
	b, err := os.ReadFile(filepath.Join(l.srcDir(spec.Version, spec.Generation), "build-env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if !strings.Contains(env, "GREETING=hi") || !strings.Contains(env, "PATH=") {
		t.Fatalf("build environment lacks the spec's env or PATH:\n%s", env)
	}
	for k, v := range secrets {
		if strings.Contains(env, k) || strings.Contains(env, v) {
			t.Errorf("build saw sluice's %s:\n%s", k, env)
		}
	}
}
