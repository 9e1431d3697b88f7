package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The admin token can come from a file, so it is neither in sluice's
// arguments nor in its environment; a file other users could read is
// restricted to its owner and the exposure is logged.
func TestServeReadsTokenFromFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file-s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN_FILE="+file)
	if _, errs, code := s.cli("services"); code == 0 || !strings.Contains(errs, "token") {
		t.Fatalf("no token accepted: %d %s", code, errs)
	}
	if _, errs, code := s.cli("services", "--token", "from-file-s3cret"); code != 0 {
		t.Fatalf("the file's token refused: %d %s", code, errs)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %04o after start, want 0600", st.Mode().Perm())
	}
	// The log buffer is written until the server exits.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	if !strings.Contains(s.logs.String(), "secret file is readable by every local user") {
		t.Fatalf("no warning about the world-readable token file:\n%s", s.logs.String())
	}
}

func TestServeRefusesEmptySecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sluiceBin, "serve", "--data", filepath.Join(dir, "data"), "--token-file", empty,
		"--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--token-file") || !strings.Contains(string(out), "empty") {
		t.Fatalf("serve with an empty token file: %v %s", err, out)
	}
}

func TestSecretOnCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--token", "x"}, "--token"},
		{[]string{"serve", "--token=x"}, "--token"},
		{[]string{"serve", "--token-file", "f"}, ""},
		{[]string{"serve", "--github-webhook-secret=x"}, "--github-webhook-secret"},
		{[]string{"serve", "--github-webhook-secret-file=f"}, ""},
	} {
		got := strings.Join(secretOnCommandLine(tc.args, "token", "github-webhook-secret"), ",")
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.args, got, tc.want)
		}
	}
}
