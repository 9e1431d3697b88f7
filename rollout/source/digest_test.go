package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"testing"
)

func tarOf(t *testing.T, prefix string, files map[string]string, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if prefix != "" {
		tw.WriteHeader(&tar.Header{Name: prefix + "/", Typeflag: tar.TypeDir, Mode: 0o755})
	}
	for _, n := range names {
		body := files[n]
		name := n
		if prefix != "" {
			name = prefix + "/" + n
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestDigestIsTheTreeNotThePacking(t *testing.T) {
	files := map[string]string{"sluice.yaml": "services: {}\n", "main.go": "package main\n"}
	a := tarOf(t, "", files, "sluice.yaml", "main.go")
	b := tarOf(t, "acme-web-1a2b3c4", files, "main.go", "sluice.yaml")
	files2 := map[string]string{"sluice.yaml": "services: {}\n", "main.go": "package main // changed\n"}
	c := tarOf(t, "acme-web-9f8e7d6", files2, "sluice.yaml", "main.go")
	da, err := Digest(a, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := Digest(b, DefaultLimits)
	dc, _ := Digest(c, DefaultLimits)
	if da != db {
		t.Fatalf("same tree, different digests: %s %s", da, db)
	}
	if da == dc {
		t.Fatal("different trees, same digest")
	}
	if _, err := Digest([]byte("nope"), DefaultLimits); err == nil {
		t.Fatal("digest of a non-archive")
	}
}
