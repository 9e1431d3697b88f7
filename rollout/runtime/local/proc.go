package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one started child: /bin/sh -c <command>, leader of its own process
// group, so its pid is also the group id.
type proc struct {
	pid     int
	started time.Time
	logPath string
	logOff  int64         // size of the log before the child wrote to it
	done    chan struct{} // closed once the leader has been reaped
	state   *os.ProcessState
	waitErr error
}

// startProc starts command in dir with env, output appended to logPath after
// a header line, as the run-as identity and, when enabled, under a
// namespace init. The returned proc's done channel closes when the shell
// (or its init) exits.
func (l *Local) startProc(dir, command string, env []string, logPath, header string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, header+"\n"); err != nil {
		return nil, fmt.Errorf("write log header: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat log: %w", err)
	}
	var cmd *exec.Cmd
	if l.ns {
		argv := l.nsArgv(command)
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: nsCloneFlags}
	} else {
		cmd = exec.Command(shell, "-c", command)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: l.credential()}
	}
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = f // an *os.File is handed to the child as is: no copying goroutine to wait for
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		_, _ = fmt.Fprintf(f, "sluice: could not start the command: %v\n", err)
		return nil, fmt.Errorf("start command: %w", err)
	}
	p := &proc{
		pid:     cmd.Process.Pid,
		started: time.Now(),
		logPath: logPath,
		logOff:  st.Size(),
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the leader has exited (and been reaped).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to p's whole process group.
func (p *proc) signal(sig syscall.Signal) {
	killGroup(p.pid, sig)
}

// gone reports whether the leader has been reaped and no live member of its
// process group is left.
func (p *proc) gone() bool {
	return p.exited() && !groupAlive(p.pid)
}

// exitText says how p ended, e.g. "exited with status 3". Only valid once
// done is closed.
func (p *proc) exitText() string {
	return describeExit(p.state, p.waitErr)
}

func describeExit(state *os.ProcessState, waitErr error) string {
	if state == nil {
		if waitErr != nil {
			return fmt.Sprintf("ended: %v", waitErr)
		}
		return "ended"
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", state.ExitCode())
}

// killGroup sends sig to process group pgid, ignoring groups that are gone.
// It never signals group 0 or 1, nor sluice's own group.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid <= 1 || pgid == syscall.Getpgrp() {
		return
	}
	_ = syscall.Kill(-pgid, sig)
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Orphaned members are reparented to an init that may never reap
// them, so a zombie must count as gone; on systems without /proc any
// member counts.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	alive := false
	if !scanProcs(func(pid int) bool {
		st, ok := readStat(pid)
		if ok && st.pgrp == pgid && !st.zombie() {
			alive = true
			return false
		}
		return true
	}) {
		return true
	}
	return alive
}

// waitGone polls until every proc is gone or ctx ends; it reports whether
// all are gone.
func waitGone(ctx context.Context, procs []*proc) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		all := true
		for _, p := range procs {
			if !p.gone() {
				all = false
				break
			}
		}
		if all {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// procStat is the part of /proc/<pid>/stat the runtime needs.
type procStat struct {
	state byte
	ppid  int
	pgrp  int
}

func (s procStat) zombie() bool { return s.state == 'Z' || s.state == 'X' }

// readStat parses /proc/<pid>/stat. The command name may contain spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp}, true
}

// scanProcs calls fn for each pid in /proc until fn returns false. It
// reports false when /proc cannot be read.
func scanProcs(fn func(pid int) bool) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if !fn(pid) {
			break
		}
	}
	return true
}

// readTail returns the last n lines (at most maxBytes) of the file at path
// written after offset off.
func readTail(path string, off int64, n, maxBytes int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	start := off
	if start > st.Size() { // the log was rotated since off
		start = 0
	}
	cut := false
	if st.Size()-start > int64(maxBytes) {
		start = st.Size() - int64(maxBytes)
		cut = true
	}
	if start < 0 {
		start = 0
	}
	b := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	s := string(b)
	if cut {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// withTail appends a labelled log tail to detail.
func withTail(detail, what, tail string) string {
	if strings.TrimSpace(tail) == "" {
		return detail + " " + strings.ToUpper(what[:1]) + what[1:] + " is empty."
	}
	return detail + " Last lines of " + what + ":\n" + tail
}
