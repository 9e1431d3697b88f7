package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrEmpty is returned (wrapped) by Open when the file is empty (0
	// bytes) although the caller said, with WithExpectData, that the data
	// directory shows it held data: initializing it would silently forget
	// every service.
	ErrEmpty = errors.New("store file is empty (0 bytes)")
	// ErrUnreadable is returned (wrapped) by Open when the file exists but
	// cannot be read (permissions, not a regular file).
	ErrUnreadable = errors.New("store file cannot be read")
	// ErrCorrupt is returned (wrapped) by Open when the file is not a
	// consistent bbolt file: damaged meta pages, or pages that cannot be
	// walked.
	ErrCorrupt = errors.New("store file is corrupt")
)

// BackupSuffix is appended to the store's path to name the copy that
// WithBackup keeps.
const BackupSuffix = ".bak"

// fileMode is the mode of the store file and its backup: the store holds
// every service's environment, secrets included.
const fileMode fs.FileMode = 0o600

// WithExpectData tells Open that something outside the file shows the store
// once held data; evidence says what, for the error message (e.g. "the
// data directory holds 3 version directories"). Open then refuses an
// empty (0-byte) file with ErrEmpty instead of initializing a new store. A
// missing file is still created: removing it is how an operator starts
// afresh on purpose.
func WithExpectData(evidence string) Option {
	return func(o *options) { o.evidence = evidence }
}

// WithBackup makes Open, once the file has passed its consistency walk and
// before it migrates anything, copy it to path+BackupSuffix (mode 0600,
// replaced atomically). Messages about a corrupt file then name that copy.
func WithBackup() Option {
	return func(o *options) { o.backup = true }
}

// preflight looks at the file before bbolt does: it refuses what bbolt
// would silently reinitialize or fail on obscurely, and restricts a file
// readable beyond its owner to 0600.
func preflight(path string, o options) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%w: %v", ErrUnreadable, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%w: it is a %s, not a regular file", ErrUnreadable, kind(st.Mode()))
	case st.Size() == 0 && o.evidence != "":
		return fmt.Errorf("%w but %s; refusing to start with a new, empty store that would forget every service: %s",
			ErrEmpty, o.evidence, restoreHint(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	_ = f.Close()
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		if err := os.Chmod(path, fileMode); err != nil {
			return fmt.Errorf("restrict store file to its owner: %w", err)
		}
		o.logger.Warn("store file was readable beyond its owner; restricted it to 0600",
			"path", path, "from", fmt.Sprintf("%04o", mode))
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// restoreHint tells the operator how to get the data back: the backup
// WithBackup keeps, when there is one.
func restoreHint(path string) string {
	bak := path + BackupSuffix
	if st, err := os.Stat(bak); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return fmt.Sprintf("stop sluice and restore the backup %s (taken at the start of %s) over it, or move the data directory aside to start afresh",
			bak, st.ModTime().UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	return fmt.Sprintf("stop sluice and restore %s from a backup (there is no %s), or move the data directory aside to start afresh", path, bak)
}

// corrupt wraps a sign of damage into ErrCorrupt with what to do about it,
// on one line.
func corrupt(path string, why any) error {
	msg := strings.Join(strings.Fields(fmt.Sprint(why)), " ")
	return fmt.Errorf("%w (%s): inspect it with `bbolt check %s` (go run go.etcd.io/bbolt/cmd/bbolt@latest check %s); %s",
		ErrCorrupt, msg, path, path, restoreHint(path))
}

// isCorruption reports whether err from bbolt.Open means a damaged file.
func isCorruption(err error) bool {
	return errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) ||
		errors.Is(err, bolterrors.ErrVersionMismatch) || strings.Contains(err.Error(), "file size too small")
}

// openBolt is bbolt.Open that turns a panic on a damaged file into an
// error.
func openBolt(path string, bo *bbolt.Options) (b *bbolt.DB, err error) {
	err = guard(func() error {
		var err error
		b, err = bbolt.Open(path, fileMode, bo)
		return err
	})
	return b, err
}

// errPanic marks a panic guard recovered.
type errPanic struct{ v any }

func (e errPanic) Error() string { return fmt.Sprint(e.v) }

// guard runs fn, returning a panic of fn (bbolt panics on pages it cannot
// make sense of, and faults on reads past a truncated mapping) as an
// errPanic.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = errPanic{p}
		}
	}()
	return fn()
}

// walk reads every bucket, key and value of the file, so that damage shows
// up now, as an error, rather than as a panic in the middle of serving.
func walk(b *bbolt.DB) error {
	return guard(func() error {
		return b.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
				return walkBucket(bk)
			})
		})
	})
}

func walkBucket(bk *bbolt.Bucket) error {
	return bk.ForEach(func(k, v []byte) error {
		if v != nil {
			_ = touch(v)
			return nil
		}
		child := bk.Bucket(k)
		if child == nil {
			return fmt.Errorf("key %q has no value and no bucket", k)
		}
		return walkBucket(child)
	})
}

// touch reads every byte of v: a value that runs past the end of the file
// faults here, where guard catches it.
//
//go:noinline
func touch(v []byte) byte {
	var x byte
	for _, c := range v {
		x ^= c
	}
	return x
}

// backup copies the file to path+BackupSuffix through a temporary file, so
// the previous backup survives a failed copy.
func backup(b *bbolt.DB, path string, log *slog.Logger) error {
	bak := path + BackupSuffix
	tmp := bak + ".partial"
	_ = os.Remove(tmp)
	err := b.View(func(tx *bbolt.Tx) error { return tx.CopyFile(tmp, fileMode) })
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("back up store to %s: %w", bak, err)
	}
	if err := os.Rename(tmp, bak); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("back up store to %s: %w", bak, err)
	}
	log.Debug("store backed up", "path", bak)
	return nil
}
