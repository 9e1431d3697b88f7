package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"
)

// secretValue returns the secret given directly (flag or environment) or,
// when file is set, the trimmed content of that file, which wins. name is
// the flag's name, for messages. A file that exists but is empty is an
// error: a blank secret would silently switch a protection off.
func secretValue(name, direct, file string, log *slog.Logger) (string, error) {
	if file == "" {
		return direct, nil
	}
	tightenSecretFile(file, log)
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read --%s-file: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("--%s-file %s is empty", name, file)
	}
	return v, nil
}

// tightenSecretFile makes a key or secret file readable by its owner only
// (0600 or stricter). A file anyone may read is logged as a warning, since
// its secret may already be known; a file sluice cannot chmod (another
// owner, a read-only mount) is left as it is, with a warning if it is
// readable beyond its owner.
func tightenSecretFile(path string, log *slog.Logger) {
	st, err := os.Stat(path)
	if err != nil {
		return // the read that follows reports it
	}
	mode := st.Mode().Perm()
	if mode&0o077 == 0 {
		return
	}
	if mode&0o004 != 0 {
		log.Warn("secret file is readable by every local user; treat its secret as exposed and rotate it",
			"path", path, "mode", fmt.Sprintf("%04o", mode))
	}
	if err := os.Chmod(path, mode&^0o077); err != nil {
		log.Warn("could not restrict secret file to its owner", "path", path, "mode", fmt.Sprintf("%04o", mode), "err", err)
		return
	}
	log.Info("restricted secret file to its owner", "path", path, "from", fmt.Sprintf("%04o", mode), "to", fmt.Sprintf("%04o", mode&^0o077))
}

// tightenDir makes dir (created if missing) owner-only: mode 0700, or
// 0711 when children running as another user must traverse it to reach
// their working directories (they still cannot list it).
func tightenDir(dir string, traverse bool) error {
	mode := fs.FileMode(0o700)
	if traverse {
		mode = 0o711
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("restrict data directory: %w", err)
	}
	return nil
}

// secretOnCommandLine names the secret flags given as arguments: every
// local user can read a process's arguments in /proc/<pid>/cmdline.
func secretOnCommandLine(args []string, flags ...string) []string {
	var found []string
	for _, a := range args {
		for _, f := range flags {
			if a == "--"+f || strings.HasPrefix(a, "--"+f+"=") {
				found = append(found, "--"+f)
			}
		}
	}
	return found
}

// logNoFile logs the open-file limits. The Go runtime raises the soft
// limit to (about) the hard one at start and restores the original for
// child processes, so the router, the API and the webhook listener, which
// share this process, get every descriptor the hard limit allows while
// deployed code keeps the usual soft limit.
func logNoFile(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("read open-file limit", "err", err)
		return
	}
	log.Info("open-file limit", "soft", lim.Cur, "hard", lim.Max)
}
