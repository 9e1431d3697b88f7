package local

import (
	"context"
	"github.com/sluicehq/sluice/rollout/reason"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

func TestLogsAreCappedWhateverIsAsked(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	if err := os.MkdirAll(l.logDir("hello-001"), 0o700); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat(strings.Repeat("b", 99)+"\n", 3*MaxLogsBytes/100)
	if err := os.WriteFile(filepath.Join(l.logDir("hello-001"), "build.log"), []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{0, -1, 1 << 30} {
		out, err := l.Logs(context.Background(), "hello-001", max)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > MaxLogsBytes || len(out) < MaxLogsBytes/2 {
			t.Errorf("Logs(%d) returned %d bytes, want at most (and near) %d", max, len(out), MaxLogsBytes)
		}
	}
}

func TestRunLogIsRotatedPastItsLimit(t *testing.T) {
	t.Parallel()
	l, err := New(t.TempDir(), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithLogLimit(64<<10), WithWatchInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	spec := appSpec(t, "hello-001", "chatty", nil)
	mustBuild(t, l, spec)
	g, err := l.Start(ctxT(t), spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background(), time.Second) })
	path := filepath.Join(l.logDir("hello-001"), runLogName(1, 0))
	eventually(t, 15*time.Second, "the run log to be rotated twice", func() bool {
		st, err := os.Stat(path + ".1")
		// Rotated twice: the copy no longer starts with the first header.
		if err != nil || st.Size() <= 64<<10 {
			return false
		}
		b, err := os.ReadFile(path + ".1")
		return err == nil && !strings.HasPrefix(string(b), "==== sluice:")
	})
	// The app keeps writing into the emptied file, which stays near the limit.
	eventually(t, 15*time.Second, "the app to write into the rotated log", func() bool {
		st, err := os.Stat(path)
		return err == nil && st.Size() > 0
	})
	if err := g.Stop(ctxT(t), time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Between two rounds the app writes about 2 KiB; the file never grew
	// far past the limit.
	if st.Size() > 4*(64<<10) {
		t.Errorf("run log is %d bytes with a limit of %d", st.Size(), 64<<10)
	}
}

func TestOldVersionDirectoriesArePruned(t *testing.T) {
	t.Parallel()
	l, err := New(t.TempDir(), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithDrainGrace(500*time.Millisecond), WithKeepVersions(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	start := func(version string) runtime.Group {
		t.Helper()
		spec := appSpec(t, version, "serve", nil)
		mustBuild(t, l, spec)
		g, err := l.Start(ctx, spec, nil)
		if err != nil {
			t.Fatalf("Start %s: %v", version, err)
		}
		return g
	}
	running := start("hello-001") // serves throughout
	t.Cleanup(func() { _ = running.Stop(context.Background(), time.Second) })
	for _, v := range []string{"hello-002", "hello-003", "hello-004"} {
		if err := start(v).Stop(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		// Distinct creation times, whatever the file system's clock grain.
		past := time.Now().Add(-time.Hour)
		for _, older := range []string{"hello-001", "hello-002", "hello-003"} {
			if older < v {
				_ = os.Chtimes(filepath.Join(l.versionDir(older), serviceFile), past, past)
				past = past.Add(time.Minute)
			}
		}
	}
	for v, want := range map[string]bool{"hello-001": true, "hello-002": false, "hello-003": true, "hello-004": true} {
		_, err := os.Stat(l.versionDir(v))
		if got := err == nil; got != want {
			t.Errorf("%s kept = %v, want %v (keep 2 newest and the running one)", v, got, want)
		}
	}
	spec := appSpec(t, "hello-002", "serve", nil)
	_, err = l.Start(ctx, spec, nil)
	if f := asFailure(t, err); f.Code != reason.SourceUnavailable {
		t.Errorf("Start of a pruned version: %s, want %s", f.Code, reason.SourceUnavailable)
	}
}
