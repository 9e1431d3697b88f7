package local

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
	"github.com/sluicehq/sluice/rollout/source"
)

// Build prepares gen-<N>/src of spec's generation.
//
// With an archive it unpacks it (into a fresh directory, so a partial result
// of an interrupted Build is discarded) and runs spec.Build there. Without
// one it reuses the built work directory of spec.BaseGeneration without
// rebuilding, as a hard-linked copy: unlike a symlink it survives the
// removal of the base generation and keeps files the new generation creates
// to itself, and unlike a full copy it costs one link per file, not the
// bytes. (Files both generations rewrite in place are shared.)
//
// Build is idempotent: a generation whose build completed is not built
// again, and one whose build did not complete is built from scratch.
// Builds of one generation are serialized; different ones run concurrently.
// It returns a *runtime.Failure (reason.SourceUnavailable, reason.BuildFailed,
// reason.BuildTimeout) for problems the user must fix, ctx's error if ctx
// ends first (the build is killed), and other errors for local faults.
func (l *Local) Build(ctx context.Context, spec runtime.Spec) error {
	if err := checkVersion(spec.Version); err != nil {
		return fmt.Errorf("build version: %w", err)
	}
	if spec.Generation < 1 {
		return fmt.Errorf("build %s: invalid generation %d", spec.Version, spec.Generation)
	}
	mu := l.genLock(spec.Version, spec.Generation)
	mu.Lock()
	defer mu.Unlock()

	log := l.log.With("service", spec.Service, "version", spec.Version, "generation", spec.Generation)
	marker := l.builtMarker(spec.Version, spec.Generation)
	if l.built(spec.Version, spec.Generation) {
		log.Debug("build skipped: generation already built")
		return nil
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale build marker: %w", err)
	}
	// Logs stay sluice's (children write through the descriptor they are
	// handed); version and generation directories only let the run-as
	// user through to its work directory.
	if err := os.MkdirAll(l.logDir(spec.Version), 0o700); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	if err := os.Chmod(l.versionDir(spec.Version), 0o711); err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	if err := os.MkdirAll(l.genDir(spec.Version, spec.Generation), 0o711); err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	if err := l.markService(spec.Service, spec.Version); err != nil {
		return err
	}
	l.rotate(filepath.Join(l.logDir(spec.Version), "build.log"))
	src := l.srcDir(spec.Version, spec.Generation)
	if err := os.RemoveAll(src); err != nil {
		return fmt.Errorf("remove partial work directory: %w", err)
	}

	if spec.Archive == nil {
		if err := l.reuseBase(spec, src, log); err != nil {
			return err
		}
		if err := l.giveTree(src); err != nil {
			return err
		}
	} else {
		if err := extract(spec.Archive, src); err != nil {
			log.Warn("source unavailable", "err", err)
			return &runtime.Failure{
				Code:       reason.SourceUnavailable,
				Detail:     "The source archive could not be unpacked into the work directory: " + extractReason(err) + ".",
				Suggestion: "Check that the source (commit or directory) is complete and within the size limits, then deploy again.",
			}
		}
		if err := l.giveTree(src); err != nil {
			return err
		}
		if spec.Build != "" {
			if err := l.runBuild(ctx, spec, src, log); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o640); err != nil {
		return fmt.Errorf("mark generation built: %w", err)
	}
	return nil
}

// built reports whether the generation finished building and its work
// directory is still there.
func (l *Local) built(version string, gen int) bool {
	if _, err := os.Stat(l.builtMarker(version, gen)); err != nil {
		return false
	}
	st, err := os.Stat(l.srcDir(version, gen))
	return err == nil && st.IsDir()
}

// extract unpacks archive into dir through a sibling temporary directory, so
// dir exists only complete.
func extract(archive []byte, dir string) error {
	tmp := dir + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove partial directory: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	if err := source.Extract(archive, tmp, source.DefaultLimits); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("extract archive: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move extracted source: %w", err)
	}
	return nil
}

// extractReason is the user-facing part of an extract error: the archive
// problem source names, or the local error.
func extractReason(err error) string {
	msg := err.Error()
	var se *source.Error
	if errors.As(err, &se) {
		msg = se.Message
	}
	return strings.TrimSuffix(msg, ".")
}

// reuseBase makes src a hard-linked copy of the base generation's built
// work directory.
func (l *Local) reuseBase(spec runtime.Spec, src string, log *slog.Logger) error {
	base := spec.BaseGeneration
	unavailable := func(why string) error {
		log.Warn("source unavailable", "base_generation", base, "err", why)
		return &runtime.Failure{
			Code:       reason.SourceUnavailable,
			Detail:     fmt.Sprintf("Generation %d of %s was to reuse the build of generation %d, but %s.", spec.Generation, spec.Version, base, why),
			Suggestion: "Deploy the version again from its source so it is rebuilt.",
		}
	}
	if base < 1 || base == spec.Generation {
		return unavailable(fmt.Sprintf("%d is not an earlier generation", base))
	}
	if !l.built(spec.Version, base) {
		return unavailable("that generation was never built successfully or its files were removed")
	}
	baseSrc := l.srcDir(spec.Version, base)
	if err := linkTree(baseSrc, src); err != nil {
		return fmt.Errorf("copy work directory of generation %d: %w", base, err)
	}
	line := fmt.Sprintf("==== sluice: %s generation %d: reusing the build of generation %d (%s)\n",
		spec.Version, spec.Generation, base, time.Now().UTC().Format(time.RFC3339))
	if err := appendFile(filepath.Join(l.logDir(spec.Version), "build.log"), line); err != nil {
		return err
	}
	log.Info("build reused", "base_generation", base)
	return nil
}

// runBuild runs spec.Build in src with a timeout, output appended to the
// version's build.log, and kills whatever is left of its process group.
func (l *Local) runBuild(ctx context.Context, spec runtime.Spec, src string, log *slog.Logger) error {
	timeout := spec.BuildTimeout
	if timeout <= 0 {
		timeout = runtime.DefaultBuildTimeout
	}
	logPath := filepath.Join(l.logDir(spec.Version), "build.log")
	header := fmt.Sprintf("==== sluice: %s generation %d: build started %s: %s",
		spec.Version, spec.Generation, time.Now().UTC().Format(time.RFC3339), spec.Build)
	env := l.childEnv(spec.Env, map[string]string{EnvVersion: spec.Version})
	p, err := l.startProc(src, spec.Build, env, logPath, header)
	if err != nil {
		log.Warn("build could not start", "err", err)
		return &runtime.Failure{
			Code:       reason.BuildFailed,
			Detail:     fmt.Sprintf("The build command `%s` could not be started: %v.", spec.Build, err),
			Suggestion: "Check that the build command and the env values in sluice.yaml are valid.",
		}
	}
	log.Info("build started", "pid", p.pid)

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var timedOut bool
	var ctxErr error
	select {
	case <-p.done:
	case <-timer.C:
		timedOut = true
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	// Whatever the outcome, nothing the build started may outlive it.
	p.signal(syscall.SIGKILL)
	reap, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	waitGone(reap, []*proc{p})
	cancel()

	took := time.Since(p.started).Round(time.Millisecond)
	tail := readTail(logPath, p.logOff, tailLines, tailBytes)
	switch {
	case ctxErr != nil:
		_ = appendFile(logPath, "==== sluice: build cancelled\n")
		log.Info("build cancelled", "pid", p.pid)
		return fmt.Errorf("build %s: %w", spec.Version, ctxErr)
	case timedOut:
		_ = appendFile(logPath, fmt.Sprintf("==== sluice: build killed after the %v timeout\n", timeout))
		log.Warn("build timed out", "pid", p.pid, "timeout", timeout)
		return &runtime.Failure{
			Code: reason.BuildTimeout,
			Detail: withTail(fmt.Sprintf("The build command `%s` was still running after the build timeout of %v and was killed.",
				spec.Build, timeout), "the build log", tail),
			Suggestion: fmt.Sprintf("Run `%s` locally in the source directory to see where it spends its time, and make it finish within %v, or raise `timeouts.build` in sluice.yaml.",
				spec.Build, timeout),
		}
	case !p.state.Success():
		what := p.exitText()
		_ = appendFile(logPath, fmt.Sprintf("==== sluice: build %s after %v\n", what, took))
		log.Warn("build failed", "pid", p.pid, "exit", what)
		return &runtime.Failure{
			Code:       reason.BuildFailed,
			Detail:     withTail(fmt.Sprintf("The build command `%s` %s after %v.", spec.Build, what, took), "the build log", tail),
			Suggestion: fmt.Sprintf("Run `%s` locally in the source directory and fix the errors shown above.", spec.Build),
		}
	}
	_ = appendFile(logPath, fmt.Sprintf("==== sluice: build succeeded after %v\n", took))
	log.Info("build succeeded", "pid", p.pid, "took", took)
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Base(path), err)
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(path), err)
	}
	return nil
}

// linkTree recreates the tree at from as to: directories are created,
// regular files hard-linked (copied where linking fails, e.g. across
// devices), symlinks recreated verbatim, anything else skipped. It builds
// a sibling temporary tree and renames it into place.
func linkTree(from, to string) error {
	tmp := to + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove partial directory: %w", err)
	}
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		target := filepath.Join(tmp, rel)
		switch t := d.Type(); {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{target, info.Mode().Perm()})
		case t&fs.ModeSymlink != 0:
			dest, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(dest, target)
		case t.IsRegular():
			if err := os.Link(path, target); err != nil {
				return copyFile(path, target)
			}
		}
		return nil
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("link tree: %w", err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return fmt.Errorf("set directory mode: %w", err)
		}
	}
	if err := os.Rename(tmp, to); err != nil {
		return fmt.Errorf("move linked tree: %w", err)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
