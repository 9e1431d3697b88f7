package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout"
)

// filled creates a store with a service and 200 versions (so the versions
// bucket has pages of its own), opened once with a backup, and closes it.
func filled(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(path, quiet, WithBackup())
	if err != nil {
		t.Fatal(err)
	}
	svc := service("hello")
	vs := make([]rollout.Version, 200)
	for i := range vs {
		vs[i] = version("hello", i+1)
	}
	if err := db.Commit(&svc, vs, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The next start takes the backup with the versions in it.
	db, err = Open(path, quiet, WithBackup())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenRefusesAnEmptyFileWhenDataIsExpected(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, quiet, WithExpectData("the data directory holds 2 version directories"))
	if err == nil {
		db.Close()
		t.Fatal("Open initialized an empty store next to existing versions")
	}
	if !errors.Is(err, ErrEmpty) {
		t.Errorf("err = %v, want ErrEmpty", err)
	}
	for _, want := range []string{path, "0 bytes", "2 version directories", "restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not say %q", err, want)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 0 {
		t.Errorf("the refused file changed: %v, %v", st, err)
	}

	// Without evidence of earlier data an empty file is a new store.
	db, err = Open(path, quiet)
	if err != nil {
		t.Fatalf("Open of an empty file with nothing beside it: %v", err)
	}
	db.Close()
}

func TestOpenRefusesAnUnreadableFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, quiet)
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("Open of a directory: %v, want ErrUnreadable naming a directory", err)
	}
	if os.Geteuid() == 0 {
		return // root reads any file
	}
	path = filepath.Join(dir, "locked.db")
	if err := os.WriteFile(path, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, quiet, WithExpectData("versions exist"))
	if !errors.Is(err, ErrUnreadable) {
		t.Errorf("Open of a file without read permission: %v, want ErrUnreadable", err)
	}
}

// overwrite writes garbage over n bytes of the file at off.
func overwrite(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := []byte(strings.Repeat("\xab\x13\x7f\xee", n/4+1)[:n])
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
}

func TestOpenReportsACorruptFileAsOneLine(t *testing.T) {
	t.Parallel()
	page := int64(os.Getpagesize())
	cases := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"both meta pages", func(t *testing.T, path string) { overwrite(t, path, 0, int(2*page)) }},
		{"a page of the versions bucket", func(t *testing.T, path string) {
			var root int64
			rawView(t, path, func(tx *bbolt.Tx) error {
				root = int64(tx.Bucket(bucketServices).Bucket([]byte("hello")).Bucket(bucketVersions).Root())
				return nil
			})
			if root < 2 {
				t.Fatalf("the versions bucket is inline (root %d)", root)
			}
			overwrite(t, path, root*page, int(page))
		}},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 3*page); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filled(t)
			c.corrupt(t, path)
			db, err := Open(path, quiet, WithBackup())
			if err == nil {
				db.Close()
				t.Fatal("Open accepted a corrupt file")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			msg := err.Error()
			for _, want := range []string{"bbolt check " + path, path + BackupSuffix} {
				if !strings.Contains(msg, want) {
					t.Errorf("err %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("err is more than one line: %q", msg)
			}
			// The backup is the last good copy, not the damaged file.
			bak, err := Open(path+BackupSuffix, quiet)
			if err != nil {
				t.Fatalf("the backup does not open: %v", err)
			}
			defer bak.Close()
			if vs, err := bak.Versions("hello"); err != nil || len(vs) != 200 {
				t.Errorf("backup holds %d versions, %v; want 200", len(vs), err)
			}
		})
	}
}

func TestOpenRestrictsALooseFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, quiet, WithBackup())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, p := range []string{path, path + BackupSuffix} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", filepath.Base(p), st.Mode().Perm(), err)
		}
	}
}

func TestStoreIDIsTheFilesForLife(t *testing.T) {
	t.Parallel()
	db, path := openTemp(t)
	id := db.ID()
	if len(id) != 16 || db.PredatesID() {
		t.Errorf("new store: ID %q, PredatesID %v; want 16 hex digits, false", id, db.PredatesID())
	}
	db.Close()
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.ID() != id {
		t.Errorf("ID after reopen = %q, want %q", db.ID(), id)
	}
	other, _ := openTemp(t)
	if other.ID() == id {
		t.Errorf("two stores share the ID %q", id)
	}
}
