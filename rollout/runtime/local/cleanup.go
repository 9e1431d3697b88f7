package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// cleanupPoll is how often Cleanup looks for processes that are still there.
const cleanupPoll = 50 * time.Millisecond

// Cleanup stops every process whose environment holds exactly
// SLUICE_OWNER=<this Local's data directory>: builds and instances a
// previous sluice with the same data directory left behind when it was
// killed. It sends SIGTERM to their process groups, SIGKILL after a short
// grace, and returns once none is left, or with ctx's error. Processes of
// other data directories are not touched. Without /proc (non-Linux) it
// does nothing. Call it once at start-up, before any Start: it would stop
// this Local's own instances too.
func (l *Local) Cleanup(ctx context.Context) error {
	marker := []byte(EnvOwner + "=" + l.dataDir)
	orphans, ok := findMarked(marker)
	if !ok || len(orphans) == 0 {
		return nil
	}
	l.log.Warn("stopping processes left behind by a previous run", "processes", len(orphans))
	sig := syscall.SIGTERM
	killAt := time.Now().Add(cleanupGrace)
	t := time.NewTicker(cleanupPoll)
	defer t.Stop()
	signalled := map[int]bool{}
	groups := map[int]bool{} // process groups signalled as a whole
	for {
		for _, o := range orphans {
			if sig == syscall.SIGTERM && signalled[o.pid] {
				continue
			}
			signalled[o.pid] = true
			if sig == syscall.SIGTERM {
				l.log.Info("stopping orphaned process", "pid", o.pid)
			}
			if o.pgrp > 1 && o.pgrp != syscall.Getpgrp() {
				groups[o.pgrp] = true
				killGroup(o.pgrp, sig)
			} else {
				_ = syscall.Kill(o.pid, sig)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop processes left behind: %w", ctx.Err())
		case <-t.C:
		}
		// A process that is exiting no longer shows its environment but
		// is not gone yet: done when every signalled process and group is
		// gone too (or, should a pid have been reused, a grace after the
		// SIGKILL).
		if orphans, _ = findMarked(marker); len(orphans) == 0 && (allGone(signalled, groups) || time.Now().After(killAt.Add(cleanupGrace))) {
			l.log.Info("processes left behind stopped")
			return nil
		}
		if sig == syscall.SIGTERM && time.Now().After(killAt) {
			sig = syscall.SIGKILL
		}
	}
}

// allGone reports whether every process in pids and every member of the
// process groups in pgrps has exited (or is a zombie, which runs nothing).
func allGone(pids, pgrps map[int]bool) bool {
	for pid := range pids {
		if st, ok := readStat(pid); ok && !st.zombie() {
			return false
		}
	}
	for pgrp := range pgrps {
		if groupAlive(pgrp) {
			return false
		}
	}
	return true
}

// marked is a live process that carries the owner marker.
type marked struct {
	pid, pgrp int
}

// findMarked lists live (non-zombie) processes other than this one whose
// environment contains the entry marker exactly. It reports false when
// /proc cannot be read. Zombies have no readable environment, so they are
// never listed.
func findMarked(marker []byte) ([]marked, bool) {
	self := os.Getpid()
	var out []marked
	ok := scanProcs(func(pid int) bool {
		if pid == self {
			return true
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil || !hasEntry(env, marker) {
			return true
		}
		st, ok := readStat(pid)
		if !ok || st.zombie() {
			return true
		}
		out = append(out, marked{pid: pid, pgrp: st.pgrp})
		return true
	})
	return out, ok
}

// hasEntry reports whether the NUL-separated environment env contains
// entry exactly.
func hasEntry(env, entry []byte) bool {
	for len(env) > 0 {
		var e []byte
		if i := bytes.IndexByte(env, 0); i >= 0 {
			e, env = env[:i], env[i+1:]
		} else {
			e, env = env, nil
		}
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}
