package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startTree starts, outside any Local, a detached process group like one a
// killed sluice leaves behind: a server and a child of it that ignores
// SIGTERM, both carrying SLUICE_OWNER=owner. It returns their pids.
func startTree(t *testing.T, owner string) (leader, child int) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c",
		`LOCALTEST_IGNORE_TERM=1 LOCALTEST_PIDFILE=child.pid "$LOCALTEST_BIN" & exec "$LOCALTEST_BIN"`)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"LOCALTEST_BIN=" + testBin(t),
		"LOCALTEST_APP=nolisten",
		EnvOwner + "=" + owner,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }() // reap the leader whoever kills it
	leader = cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-leader, syscall.SIGKILL) })
	pidFile := filepath.Join(dir, "child.pid")
	eventually(t, 5*time.Second, "the child to start", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
	return leader, readPids(t, pidFile)[0]
}

func TestCleanupStopsOrphansOfItsDataDirOnly(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	mineLeader, mineChild := startTree(t, l.dataDir)
	// Same prefix, different data directory: must survive.
	otherLeader, otherChild := startTree(t, l.dataDir+"-other")

	start := time.Now()
	if err := l.Cleanup(ctxT(t)); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	took := time.Since(start)
	for _, pid := range []int{mineLeader, mineChild} {
		if !processGone(pid) {
			t.Errorf("orphan %d of this data directory survived Cleanup", pid)
		}
	}
	for _, pid := range []int{otherLeader, otherChild} {
		if processGone(pid) {
			t.Errorf("process %d of another data directory was killed", pid)
		}
	}
	if took < cleanupGrace {
		t.Errorf("Cleanup took %v; the child ignoring SIGTERM should have needed the %v grace", took, cleanupGrace)
	}

	start = time.Now()
	if err := l.Cleanup(ctxT(t)); err != nil || time.Since(start) > time.Second {
		t.Errorf("second Cleanup = %v after %v, want a quick no-op", err, time.Since(start))
	}
}

func TestHasEntry(t *testing.T) {
	t.Parallel()
	entry := []byte("SLUICE_OWNER=/data")
	tests := []struct {
		env  string
		want bool
	}{
		{"A=1\x00SLUICE_OWNER=/data\x00B=2\x00", true},
		{"SLUICE_OWNER=/data", true},
		{"SLUICE_OWNER=/data-other\x00", false},
		{"SLUICE_OWNER=/dat\x00", false},
		{"X_SLUICE_OWNER=/data\x00", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasEntry([]byte(tt.env), entry); got != tt.want {
			t.Errorf("hasEntry(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
}
