package local

import (
	"github.com/sluicehq/sluice/rollout/reason"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		archive  []byte
		build    string
		timeout  time.Duration
		code     reason.Code // "" for success
		detail   []string    // substrings of the failure detail
		suggests string      // substring of the suggestion
		files    []string    // files in src after a successful build
	}{
		{
			name:  "success",
			build: `echo compiling "$GREETING"; cat README > built.txt`,
			files: []string{"README", "built.txt"},
		},
		{
			name:  "no build command",
			build: "",
			files: []string{"README"},
		},
		{
			name:     "non-zero exit",
			build:    `echo "main.go:3: undefined: foo"; exit 7`,
			code:     reason.BuildFailed,
			detail:   []string{"exited with status 7", "main.go:3: undefined: foo"},
			suggests: "Run `echo",
		},
		{
			name:     "timeout kills the whole group",
			build:    `sleep 30 & echo $! > ../bg.pid; echo waiting; sleep 30`,
			timeout:  300 * time.Millisecond,
			code:     reason.BuildTimeout,
			detail:   []string{"build timeout of 300ms", "waiting"},
			suggests: "timeouts.build",
		},
		{
			name:     "archive that cannot be unpacked",
			archive:  []byte("this is not a tar.gz"),
			build:    "true",
			code:     reason.SourceUnavailable,
			detail:   []string{"could not be unpacked"},
			suggests: "deploy again",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLocal(t)
			spec := appSpec(t, "hello-001", "serve", map[string]string{"GREETING": "hi"})
			spec.Build = tt.build
			if tt.archive != nil {
				spec.Archive = tt.archive
			}
			if tt.timeout > 0 {
				spec.BuildTimeout = tt.timeout
			}
			start := time.Now()
			err := l.Build(ctxT(t), spec)
			took := time.Since(start)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				for _, f := range tt.files {
					if _, err := os.Stat(filepath.Join(l.srcDir("hello-001", 1), f)); err != nil {
						t.Errorf("file %s missing after build: %v", f, err)
					}
				}
				if tt.build != "" {
					log, _ := os.ReadFile(filepath.Join(l.logDir("hello-001"), "build.log"))
					for _, want := range []string{"hello-001 generation 1: build started", "compiling hi", "build succeeded"} {
						if !strings.Contains(string(log), want) {
							t.Errorf("build.log lacks %q:\n%s", want, log)
						}
					}
				}
				return
			}
			f := asFailure(t, err)
			if f.Code != tt.code {
				t.Fatalf("code = %s, want %s (detail %q)", f.Code, tt.code, f.Detail)
			}
			for _, want := range tt.detail {
				if !strings.Contains(f.Detail, want) {
					t.Errorf("detail lacks %q:\n%s", want, f.Detail)
				}
			}
			if !strings.Contains(f.Suggestion, tt.suggests) {
				t.Errorf("suggestion %q lacks %q", f.Suggestion, tt.suggests)
			}
			if _, err := os.Stat(l.builtMarker("hello-001", 1)); err == nil {
				t.Error("a failed build marked the generation built")
			}
			if tt.code == reason.BuildTimeout {
				if took > 3*time.Second {
					t.Errorf("timed-out build returned after %v", took)
				}
				for _, pid := range readPids(t, filepath.Join(l.genDir("hello-001", 1), "bg.pid")) {
					if !processGone(pid) {
						t.Errorf("background process %d of the build survived", pid)
					}
				}
			}
		})
	}
}

func TestBuildIsIdempotent(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	spec := appSpec(t, "hello-001", "serve", nil)
	// Fails the first time, leaving junk in the work directory; succeeds
	// the second time; must not run a third time.
	spec.Build = `touch junk; echo run >> ../../runs; if [ ! -f ../../failed-once ]; then touch ../../failed-once; exit 1; fi`
	ctx := ctxT(t)
	if err := l.Build(ctx, spec); err == nil {
		t.Fatal("first build succeeded, want failure")
	}
	if err := l.Build(ctx, spec); err != nil {
		t.Fatalf("second build: %v", err)
	}
	if err := os.Remove(filepath.Join(l.srcDir("hello-001", 1), "junk")); err != nil {
		t.Fatalf("junk of the second build: %v", err)
	}
	if err := l.Build(ctx, spec); err != nil {
		t.Fatalf("third build: %v", err)
	}
	runs, _ := os.ReadFile(filepath.Join(l.versionDir("hello-001"), "runs"))
	if got := strings.Count(string(runs), "run"); got != 2 {
		t.Errorf("build command ran %d times, want 2 (retry after failure, none after success)", got)
	}
	if _, err := os.Stat(filepath.Join(l.srcDir("hello-001", 1), "junk")); err == nil {
		t.Error("an already built generation was rebuilt")
	}
}

func TestBuildReusesBaseGeneration(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ctx := ctxT(t)
	base := appSpec(t, "hello-001", "serve", nil)
	base.Build = `echo artifact > app.bin; mkdir -p sub; echo nested > sub/file`
	mustBuild(t, l, base)

	next := base
	next.Generation, next.Archive, next.BaseGeneration = 2, nil, 1
	next.Build = "exit 1" // must not run: the base's build output is reused
	if err := l.Build(ctx, next); err != nil {
		t.Fatalf("Build generation 2: %v", err)
	}
	src2 := l.srcDir("hello-001", 2)
	for name, want := range map[string]string{"app.bin": "artifact\n", "sub/file": "nested\n", "README": "hello\n"} {
		b, err := os.ReadFile(filepath.Join(src2, name))
		if err != nil || string(b) != want {
			t.Errorf("gen-2 %s = %q, %v; want %q", name, b, err, want)
		}
	}
	// The new generation's own files stay its own, and it survives the
	// removal of the base.
	if err := os.WriteFile(filepath.Join(src2, "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.srcDir("hello-001", 1), "new")); err == nil {
		t.Error("a file created in generation 2 appeared in generation 1")
	}
	if err := os.RemoveAll(l.genDir("hello-001", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(src2, "app.bin")); err != nil {
		t.Errorf("generation 2 lost its files with generation 1: %v", err)
	}
	// It starts.
	next.Env["LOCALTEST_APP"] = "serve"
	g, err := l.Start(ctx, next, nil)
	if err != nil {
		t.Fatalf("Start generation 2: %v", err)
	}
	if err := g.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}

	// A base that is gone (or was never built) is reported, not rebuilt.
	third := next
	third.Generation, third.BaseGeneration = 3, 1
	f := asFailure(t, l.Build(ctx, third))
	if f.Code != reason.SourceUnavailable {
		t.Errorf("code = %s, want %s", f.Code, reason.SourceUnavailable)
	}
	log, _ := os.ReadFile(filepath.Join(l.logDir("hello-001"), "build.log"))
	if !strings.Contains(string(log), "generation 2: reusing the build of generation 1") {
		t.Errorf("build.log does not record the reuse:\n%s", log)
	}
}
