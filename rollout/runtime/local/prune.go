package local

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Defaults of what the runtime keeps on disk.
const (
	// DefaultKeepVersions is how many version directories of one service
	// are kept, newest first, besides those with running instances.
	DefaultKeepVersions = 10
	// DefaultLogLimit is the size past which a log file is rotated: its
	// content moves to <name>.1 (replacing the previous one) and the file
	// starts again empty.
	DefaultLogLimit = 10 << 20
	// MaxLogsBytes caps what one Logs call returns, whatever it asks for.
	MaxLogsBytes = 1 << 20
)

// serviceFile, in a version directory, names the service the version
// belongs to; its modification time is when the version was first built.
const serviceFile = "service"

// WithKeepVersions sets how many version directories (builds and logs) of
// one service are kept: the n newest, plus every version with instances
// running. Starting a removed version again fails with
// reason.SourceUnavailable; deploying it again rebuilds it. n < 1 keeps
// DefaultKeepVersions.
func WithKeepVersions(n int) Option {
	return func(l *Local) {
		if n > 0 {
			l.keep = n
		}
	}
}

// WithLogLimit sets the size in bytes past which a build or run log is
// rotated (one old copy, <name>.1, is kept). n < 1 keeps DefaultLogLimit.
func WithLogLimit(n int64) Option {
	return func(l *Local) {
		if n > 0 {
			l.logLimit = n
		}
	}
}

// markService records the version's service in its directory, once.
func (l *Local) markService(service, version string) error {
	path := filepath.Join(l.versionDir(version), serviceFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte(service+"\n"), 0o600); err != nil {
		return fmt.Errorf("mark version's service: %w", err)
	}
	return nil
}

// liveKey names one started generation in Local.live.
func liveKey(version string, gen int) string { return version + "/" + strconv.Itoa(gen) }

// setLive counts a started group of version's generation in (delta 1) or
// out (delta -1).
func (l *Local) setLive(version string, gen, delta int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := liveKey(version, gen)
	l.live[k] += delta
	if l.live[k] <= 0 {
		delete(l.live, k)
	}
}

// runningVersion reports whether any generation of version has a live group.
func (l *Local) runningVersion(version string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.live {
		if strings.HasPrefix(k, version+"/") {
			return true
		}
	}
	return false
}

// prune removes what a successful start of version's generation gen made
// obsolete: the version's older generations that run no instances, and
// the directories of service's versions beyond the newest keep, except
// those with instances running. It only logs what it cannot remove.
func (l *Local) prune(service, version string, gen int) {
	for g := 1; g < gen; g++ {
		l.mu.Lock()
		running := l.live[liveKey(version, g)] > 0
		l.mu.Unlock()
		if running {
			continue
		}
		dir := l.genDir(version, g)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			l.log.Warn("remove old generation", "version", version, "generation", g, "err", err)
			continue
		}
		l.removeRunLogs(version, g)
	}

	type versionDir struct {
		name string
		made int64
	}
	entries, err := os.ReadDir(l.versionsRoot())
	if err != nil {
		return
	}
	var mine []versionDir
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(l.versionsRoot(), e.Name(), serviceFile))
		if err != nil || strings.TrimSpace(string(b)) != service {
			continue
		}
		st, err := os.Stat(filepath.Join(l.versionsRoot(), e.Name(), serviceFile))
		if err != nil {
			continue
		}
		mine = append(mine, versionDir{e.Name(), st.ModTime().UnixNano()})
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].made != mine[j].made {
			return mine[i].made > mine[j].made
		}
		return mine[i].name > mine[j].name
	})
	for i, v := range mine {
		if i < l.keep || v.name == version || l.runningVersion(v.name) {
			continue
		}
		if err := os.RemoveAll(l.versionDir(v.name)); err != nil {
			l.log.Warn("remove old version directory", "version", v.name, "err", err)
			continue
		}
		l.log.Info("old version directory removed", "service", service, "version", v.name, "kept", l.keep)
	}
}

// removeRunLogs removes the run logs of version's generation gen.
func (l *Local) removeRunLogs(version string, gen int) {
	entries, err := os.ReadDir(l.logDir(version))
	if err != nil {
		return
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".1")
		if g, _, ok := parseRunLog(name); ok && g == gen {
			_ = os.Remove(filepath.Join(l.logDir(version), e.Name()))
		}
	}
}

// rotate moves the content of the log at path to path.1 once it is larger
// than the Local's log limit, and empties it. Writers keep their
// descriptor: they write in append mode, so they carry on at the start of
// the emptied file. Lines written between the copy and the truncation are
// lost.
func (l *Local) rotate(path string) {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= l.logLimit {
		return
	}
	if err := copyTo(path, path+".1"); err != nil {
		l.log.Warn("rotate log", "path", filepath.Base(path), "err", err)
		return
	}
	if err := os.Truncate(path, 0); err != nil {
		l.log.Warn("rotate log", "path", filepath.Base(path), "err", err)
	}
}

// copyTo replaces to with a copy of from, through a temporary file.
func copyTo(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := to + ".partial"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, to)
}
