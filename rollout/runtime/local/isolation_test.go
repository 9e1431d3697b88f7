package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// probeScript tries, as deployed code would, to read every path in
// $TARGETS (files with cat, directories with ls) and writes READ or DENIED
// per path to the file named by its first argument.
const probeScript = `for f in $TARGETS; do
  if [ -d "$f" ]; then ls "$f" >/dev/null 2>&1 && r=READ || r=DENIED
  else cat "$f" >/dev/null 2>&1 && r=READ || r=DENIED; fi
  echo "$r $f" >> "$1"
done
id -u >> "$1"`

// isolatedSetup is a data directory with a store and a key file in it, a
// key file elsewhere, and a copy of the test binary every user may run,
// all below directories the run-as user may traverse (but not list).
type isolatedSetup struct {
	data, db, key, outsideKey, bin string
}

func newIsolatedSetup(t *testing.T) isolatedSetup {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching builds and instances to another user needs root")
	}
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	s := isolatedSetup{
		data:       filepath.Join(root, "data"),
		outsideKey: filepath.Join(root, "app.pem"),
		bin:        filepath.Join(root, "bin", "app"),
	}
	s.db = filepath.Join(s.data, "sluice.db")
	s.key = filepath.Join(s.data, "webhook-secret")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.data, 0o755); err != nil { // too open: New must tighten it
		t.Fatal(err)
	}
	for _, f := range []string{s.db, s.key, s.outsideKey} {
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile(testBin(t), s.bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// Deployed code runs as the run-as user and cannot read the store, key
// files, sluice's environment or the data directory: a build and an
// instance each try, with and without namespaces.
func TestDeployedCodeCannotReachSluice(t *testing.T) {
	t.Parallel()
	for _, ns := range []bool{true, false} {
		t.Run(map[bool]string{true: "namespaces", false: "no namespaces"}[ns], func(t *testing.T) {
			t.Parallel()
			s := newIsolatedSetup(t)
			runAs := RunAs{UID: DefaultRunAsID, GID: DefaultRunAsID, Name: "test"}
			l, err := New(s.data, WithRunAs(runAs), WithLogger(slog.New(slog.DiscardHandler)),
				WithDrainGrace(500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if !l.ns && ns {
				t.Skip("this kernel refuses new PID and mount namespaces")
			}
			l.ns = ns
			selfEnv := fmt.Sprintf("/proc/%d/environ", os.Getpid())
			targets := []string{s.db, s.key, s.outsideKey, selfEnv, s.data, filepath.Join(s.data, "versions")}
			if ns {
				// Anyone may read a process's arguments; only a PID namespace hides them.
				targets = append(targets, fmt.Sprintf("/proc/%d/cmdline", os.Getpid()))
			}
			spec := appSpec(t, "hello-001", "serve", map[string]string{
				"LOCALTEST_BIN": s.bin,
				"TARGETS":       strings.Join(targets, " ") + " /proc/self/environ",
			})
			spec.Archive = tarGz(t, map[string]string{"sluice.yaml": "services: {}\n", "probe.sh": probeScript})
			spec.Build = "sh probe.sh build.txt"
			spec.Run = `sh probe.sh run.txt && exec "$LOCALTEST_BIN"`
			mustBuild(t, l, spec)
			g, err := l.Start(ctxT(t), spec, nil)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Cleanup(func() { _ = g.Stop(context.Background(), 0) })

			for _, who := range []string{"build.txt", "run.txt"} {
				b, err := os.ReadFile(filepath.Join(l.srcDir(spec.Version, spec.Generation), who))
				if err != nil {
					t.Fatalf("%s: %v", who, err)
				}
				out := string(b)
				for _, target := range targets {
					if !strings.Contains(out, "DENIED "+target+"\n") {
						t.Errorf("%s: deployed code read %s:\n%s", who, target, out)
					}
				}
				// Controls: the probe works, and it ran as the run-as user.
				if !strings.Contains(out, "READ /proc/self/environ\n") || !strings.HasSuffix(out, fmt.Sprintf("%d\n", DefaultRunAsID)) {
					t.Errorf("%s: the probe did not run as uid %d or could not read its own environment:\n%s", who, DefaultRunAsID, out)
				}
			}
			for path, want := range map[string]os.FileMode{s.data: 0o711, filepath.Join(s.data, "versions"): 0o711, l.logDir(spec.Version): 0o700} {
				if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
					t.Errorf("%s: mode %v, err %v; want %04o", path, st.Mode().Perm(), err, want)
				}
			}
		})
	}
}

func TestParseRunAs(t *testing.T) {
	t.Parallel()
	dedicated := fmt.Sprintf("%d:%d", DefaultRunAsID, DefaultRunAsID)
	for _, tc := range []struct {
		spec    string
		euid    int
		want    string // RunAs.Name, or the error's text
		wantErr bool
	}{
		{spec: "", euid: 0, want: dedicated},
		{spec: "root", euid: 0, want: "root"},
		{spec: "0", euid: 0, want: "say --run-as=root", wantErr: true},
		{spec: "0:0", euid: 0, want: "say --run-as=root", wantErr: true},
		{spec: "1234:5678", euid: 0, want: "1234:5678"},
		{spec: "12x:1", euid: 0, want: "uid:gid with numbers", wantErr: true},
		{spec: "no-such-user-here", euid: 0, want: "no-such-user-here", wantErr: true},
		{spec: "1234:5678", euid: 1000, want: "needs sluice to run as root", wantErr: true},
		{spec: "root", euid: 1000, want: "needs sluice to run as root", wantErr: true},
	} {
		r, err := ParseRunAs(tc.spec, tc.euid)
		switch {
		case tc.wantErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseRunAs(%q, %d) = %v, %v; want an error with %q", tc.spec, tc.euid, r, err, tc.want)
		case !tc.wantErr && (err != nil || r.Name != tc.want):
			t.Errorf("ParseRunAs(%q, %d) = %v, %v; want %s", tc.spec, tc.euid, r, err, tc.want)
		}
	}
	if r, err := ParseRunAs("", 0); err == nil && (r.UID == 0 || r.GID == 0) {
		t.Errorf("the default as root is %+v, not a dedicated unprivileged id", r)
	}
	// Not root: children stay sluice's own user.
	if r, err := ParseRunAs("", 4321); err != nil || r.UID != 4321 {
		t.Errorf("ParseRunAs(\"\", 4321) = %+v, %v; want uid 4321", r, err)
	}
}

// A data directory the run-as user cannot reach is refused at start with
// the directory in the way and the fix, not discovered at the first build.
func TestNewRefusesDataDirRunAsCannotReach(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching builds and instances to another user needs root")
	}
	closed := filepath.Join(t.TempDir(), "closed")
	if err := os.MkdirAll(filepath.Join(closed, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := New(filepath.Join(closed, "data"), WithRunAs(RunAs{UID: DefaultRunAsID, GID: DefaultRunAsID, Name: "test"}),
		WithLogger(slog.New(slog.DiscardHandler)))
	if err == nil || !strings.Contains(err.Error(), closed+" is mode 0700") || !strings.Contains(err.Error(), "chmod o+x") {
		t.Fatalf("New = %v; want a refusal naming %s", err, closed)
	}
}
