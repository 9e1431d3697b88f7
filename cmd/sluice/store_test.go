package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// serveOnce runs `sluice serve` on data and returns its output and
// whether it exited on its own (it is expected to refuse to start).
func serveOnce(t *testing.T, data string, args ...string) (string, error) {
	t.Helper()
	traversable(t, data)
	cmd := exec.Command(sluiceBin, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// shutdown stops the server with SIGTERM and waits for it.
func (s *server) shutdown() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
}

// lastLine is what serve printed last: its error.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestServeRefusesAnEmptyStoreBesideVersions: a sluice.db truncated to 0
// bytes (a full disk, a botched copy) next to the builds of earlier
// versions is refused, not initialized as a new store that forgets every
// service; the file stays as it was.
func TestServeRefusesAnEmptyStoreBesideVersions(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "versions", "0123456789abcdef", "hello-001", "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(data, "sluice.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := serveOnce(t, data)
	if err == nil {
		t.Fatalf("serve started with an empty store beside versions:\n%s", out)
	}
	last := lastLine(out)
	for _, want := range []string{"sluice: open store " + db, "empty (0 bytes)", "versions"} {
		if !strings.Contains(last, want) {
			t.Errorf("error line %q does not say %q", last, want)
		}
	}
	if st, err := os.Stat(db); err != nil || st.Size() != 0 {
		t.Errorf("the refused store changed: %v, %v", st, err)
	}
}

// TestServeReportsACorruptStoreInOneLine: a damaged sluice.db stops serve
// with one error line naming `bbolt check` and the backup taken at the
// previous start, and no panic trace.
func TestServeReportsACorruptStoreInOneLine(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	src := fastSource(t, "")
	s.ok("deploy", "hello", "--source", src, "--wait")
	s.shutdown()
	db := filepath.Join(data, "sluice.db")
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad", os.Getpagesize())), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := serveOnce(t, data)
	if err == nil {
		t.Fatalf("serve started on a corrupt store:\n%s", out)
	}
	for _, bad := range []string{"panic", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Errorf("serve's output has a Go trace (%q):\n%s", bad, out)
		}
	}
	last := lastLine(out)
	for _, want := range []string{"corrupt", "bbolt check " + db, db + ".bak"} {
		if !strings.Contains(last, want) {
			t.Errorf("error line %q does not say %q", last, want)
		}
	}
}

// greetingSource is a hello whose greeting comes out of its build step.
func greetingSource(t *testing.T, greeting string) string {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf("services:\n  hello:\n    build: echo %s > greeting\n    run: GREETING=$(cat greeting) exec %q\n    health: /healthz\n    timeouts: {start: 5s}\n", greeting, helloBin)
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeAfterAStoreResetBuildsAfresh: an operator who removes sluice.db
// to start over gets a store whose first version is named hello-001 again;
// it must run its own build, not the one the previous store's hello-001
// left in the data directory.
func TestServeAfterAStoreResetBuildsAfresh(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	if v := s.ok("deploy", "hello", "--source", greetingSource(t, "old-build"), "--wait"); v != "hello-001" {
		t.Fatalf("first deploy made %q", v)
	}
	if _, body, err := s.get("hello.localhost", ""); err != nil || !strings.Contains(body, "old-build") {
		t.Fatalf("first version answers %q, %v", body, err)
	}
	s.shutdown()
	for _, f := range []string{"sluice.db", "sluice.db.bak"} {
		if err := os.Remove(filepath.Join(data, f)); err != nil {
			t.Fatal(err)
		}
	}

	s = startServer(t, data, api, route)
	if v := s.ok("deploy", "hello", "--source", greetingSource(t, "new-build"), "--wait"); v != "hello-001" {
		t.Fatalf("deploy after the reset made %q, want hello-001 again", v)
	}
	if _, body, err := s.get("hello.localhost", ""); err != nil || !strings.Contains(body, "new-build") {
		t.Errorf("hello-001 of the new store answers %q, %v; want its own build (new-build)", body, err)
	}
}

// TestServeRefusesABadPortRange: a --port-range serve cannot use stops it
// with a message naming the flag, before anything is stored.
func TestServeRefusesABadPortRange(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	out, err := serveOnce(t, data, "--port-range", "30000-20000")
	if err == nil || !strings.Contains(lastLine(out), "--port-range") {
		t.Fatalf("serve with --port-range 30000-20000: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "sluice.db")); err == nil {
		t.Error("the refused serve created a store")
	}
}
