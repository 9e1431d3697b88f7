package local

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreIDKeysVersionDirectories(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// A version built before store ids, and one of another store.
	old := filepath.Join(data, "versions", "hello-001")
	for _, d := range []string{filepath.Join(old, "gen-1", "src"), filepath.Join(data, "versions", "feedfacefeedface", "hello-001", "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(old, "gen-1", "built"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(data, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetStoreID("../x"); err == nil {
		t.Error("SetStoreID accepted ../x")
	}
	if err := l.SetStoreID("0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if l.built("hello-001", 1) {
		t.Fatal("a store id sees the unkeyed build before adopting it")
	}
	if n, err := l.AdoptUnkeyed(); err != nil || n != 1 {
		t.Fatalf("AdoptUnkeyed = %d, %v; want 1 moved", n, err)
	}
	if !l.built("hello-001", 1) {
		t.Error("the adopted build is not found under the store id")
	}
	if _, err := os.Stat(filepath.Join(data, "versions", "feedfacefeedface", "hello-001", "logs")); err != nil {
		t.Errorf("another store's directory was touched: %v", err)
	}
}
