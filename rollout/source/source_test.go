package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const manifest = "services:\n  hello:\n    run: ./app\n"

// ent is one entry of a test archive.
type ent struct {
	name string
	typ  byte // tar.TypeReg when zero
	body string
	link string
	mode int64
}

// tgz builds a gzip-compressed tar archive from entries, as written.
func tgz(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			h = &tar.Header{Name: e.name, Typeflag: e.typ, PAXRecords: map[string]string{"comment": e.body}}
		} else if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %s: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("write %s: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mkfile(t *testing.T, name, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// listing describes a tree: path -> "dir", "link -> target" or
// "mode content".
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			out[rel] = "dir"
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = info.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return out
}

func archiveNames(t *testing.T, archive []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}

func TestPackInspectExtractRoundTrip(t *testing.T) {
	src := t.TempDir()
	mkfile(t, filepath.Join(src, "sluice.yaml"), manifest, 0o644)
	mkfile(t, filepath.Join(src, "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	mkfile(t, filepath.Join(src, "cmd", "x.go"), "package main\n", 0o644)
	mkfile(t, filepath.Join(src, "cmd", "shared.txt"), "everyone writes\n", 0o666)
	mkfile(t, filepath.Join(src, "cmd", "readonly.txt"), "locked\n", 0o400)
	mkfile(t, filepath.Join(src, ".git", "config"), "[core]\n", 0o644)
	mkfile(t, filepath.Join(src, ".sluice", "state"), "x", 0o644)
	mkfile(t, filepath.Join(src, "sub", ".git"), "gitdir: elsewhere\n", 0o644)
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"current":    "cmd/x.go",  // kept: inside
		"cmd/up":     "../run.sh", // kept: inside
		"tools":      "cmd",       // kept: a directory inside
		"outside":    "../elsewhere",
		"abs":        "/etc/passwd",
		"cmd/sneaky": "../../x",
		"via-link":   "tools/../..", // tools is cmd, so this is the parent of src
	} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}

	var buf bytes.Buffer
	if err := Pack(src, &buf); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	archive := buf.Bytes()
	wantNames := []string{
		"cmd/", "cmd/readonly.txt", "cmd/shared.txt", "cmd/up", "cmd/x.go",
		"current", "empty/", "run.sh", "sluice.yaml", "sub/", "tools",
	}
	if got := archiveNames(t, archive); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("archive names = %q\nwant %q", got, wantNames)
	}

	info, err := Inspect(archive, DefaultLimits)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	wantBytes := int64(len(manifest) + len("#!/bin/sh\necho hi\n") + len("package main\n") + len("everyone writes\n") + len("locked\n"))
	if string(info.Manifest) != manifest || info.Prefix != "" || info.Files != len(wantNames) || info.Bytes != wantBytes {
		t.Errorf("Inspect = %+v (manifest %q), want prefix \"\", %d files, %d bytes", info, info.Manifest, len(wantNames), wantBytes)
	}

	dst := t.TempDir()
	if err := Extract(archive, dst, DefaultLimits); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := map[string]string{
		"sluice.yaml":      "-rw-r--r-- " + manifest,
		"run.sh":           "-rwxr-xr-x #!/bin/sh\necho hi\n",
		"cmd":              "dir",
		"cmd/x.go":         "-rw-r--r-- package main\n",
		"cmd/shared.txt":   "-rw-r--r-- everyone writes\n",
		"cmd/readonly.txt": "-rw------- locked\n",
		"cmd/up":           "link -> ../run.sh",
		"current":          "link -> cmd/x.go",
		"tools":            "link -> cmd",
		"empty":            "dir",
		"sub":              "dir",
	}
	if got := listing(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("extracted tree:\n got %q\nwant %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "tools", "x.go")); err != nil || string(b) != "package main\n" {
		t.Errorf("read through extracted dir symlink = %q, %v", b, err)
	}
}

func TestInspectAndExtractPrefixes(t *testing.T) {
	const top = "acme-hello-1a2b3c4"
	tests := []struct {
		name       string
		archive    []ent
		wantPrefix string
		wantFiles  int
	}{
		{"github tarball", []ent{
			{name: "pax_global_header", typ: tar.TypeXGlobalHeader, body: "1a2b3c4d5e6f"},
			{name: top + "/", typ: tar.TypeDir, mode: 0o775},
			{name: top + "/sluice.yaml", body: manifest},
			{name: top + "/cmd/", typ: tar.TypeDir},
			{name: top + "/cmd/x.go", body: "package main\n"},
			{name: top + "/current", typ: tar.TypeSymlink, link: "cmd/x.go"},
			{name: top + "/copy.go", typ: tar.TypeLink, link: top + "/cmd/x.go"},
		}, top, 6},
		{"dot-slash names", []ent{
			{name: "./", typ: tar.TypeDir},
			{name: "./sluice.yaml", body: manifest},
			{name: "./cmd/x.go", body: "package main\n"},
			{name: "./current", typ: tar.TypeSymlink, link: "cmd/x.go"},
			{name: "./copy.go", typ: tar.TypeLink, link: "./cmd/x.go"},
		}, "", 5},
		{"manifest at the root beats a single top directory", []ent{
			{name: "sluice.yaml", body: manifest},
			{name: "cmd/x.go", body: "package main\n"},
			{name: "current", typ: tar.TypeSymlink, link: "cmd/x.go"},
			{name: "copy.go", typ: tar.TypeLink, link: "cmd/x.go"},
		}, "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := tgz(t, tt.archive...)
			info, err := Inspect(archive, DefaultLimits)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if info.Prefix != tt.wantPrefix || string(info.Manifest) != manifest || info.Files != tt.wantFiles {
				t.Errorf("Inspect = %+v, want prefix %q and %d files", info, tt.wantPrefix, tt.wantFiles)
			}
			dst := t.TempDir()
			if err := Extract(archive, dst, DefaultLimits); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			want := map[string]string{
				"sluice.yaml": "-rw-r--r-- " + manifest,
				"cmd":         "dir",
				"cmd/x.go":    "-rw-r--r-- package main\n",
				"copy.go":     "-rw-r--r-- package main\n",
				"current":     "link -> cmd/x.go",
			}
			if got := listing(t, dst); !reflect.DeepEqual(got, want) {
				t.Errorf("extracted tree:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestGitArchive checks the tarballs git itself writes (GitHub's tarball
// endpoint serves `git archive` output).
func TestGitArchive(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	mkfile(t, filepath.Join(repo, "sluice.yaml"), manifest, 0o644)
	mkfile(t, filepath.Join(repo, "app.sh"), "#!/bin/sh\n", 0o755)
	git := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return out
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "init")
	archive := git("archive", "--format=tar.gz", "--prefix=acme-hello-1a2b3c4/", "HEAD")
	info, err := Inspect(archive, DefaultLimits)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if info.Prefix != "acme-hello-1a2b3c4" || string(info.Manifest) != manifest {
		t.Errorf("Inspect = %+v", info)
	}
	dst := t.TempDir()
	if err := Extract(archive, dst, DefaultLimits); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := map[string]string{"sluice.yaml": "-rw-r--r-- " + manifest, "app.sh": "-rwxr-xr-x #!/bin/sh\n"}
	if got := listing(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("extracted tree:\n got %q\nwant %q", got, want)
	}
}

func TestRejects(t *testing.T) {
	ok := ent{name: "sluice.yaml", body: manifest}
	valid := tgz(t, ok, ent{name: "big.bin", body: string(randomBytes(64 << 10))}, ent{name: "z.txt", body: "z"})
	corrupt := bytes.Clone(valid)
	corrupt[len(corrupt)-6] ^= 0xff // inside the CRC-32 of the gzip trailer

	tests := []struct {
		name    string
		archive []byte
		lim     Limits
		code    string
		msg     string
	}{
		{"not gzip", []byte("just some bytes"), Limits{}, CodeNotArchive, "not a gzip archive"},
		{"empty input", nil, Limits{}, CodeNotArchive, "not a gzip archive"},
		{"gzip of non-tar", gzipped(t, bytes.Repeat([]byte("not a tar "), 100)), Limits{}, CodeNotArchive, "not a tar archive"},
		{"truncated in a file", valid[:len(valid)/2], Limits{}, CodeNotArchive, "truncated"},
		{"truncated gzip trailer", valid[:len(valid)-4], Limits{}, CodeNotArchive, "truncated"},
		{"corrupt checksum", corrupt, Limits{}, CodeNotArchive, "corrupt"},
		{"dot-dot path", tgz(t, ok, ent{name: "../evil", body: "x"}), Limits{}, CodeUnsafePath, `"../evil" leaves the source directory`},
		{"dot-dot inside a path", tgz(t, ok, ent{name: "a/../../evil", body: "x"}), Limits{}, CodeUnsafePath, `"a/../../evil"`},
		{"absolute path", tgz(t, ok, ent{name: "/etc/passwd", body: "x"}), Limits{}, CodeUnsafePath, `"/etc/passwd" has an absolute path`},
		{"backslash", tgz(t, ok, ent{name: `..\evil`, body: "x"}), Limits{}, CodeUnsafePath, "backslash"},
		{"symlink climbing out", tgz(t, ok, ent{name: "sub/l", typ: tar.TypeSymlink, link: "../../x"}), Limits{}, CodeUnsafePath, `symlink "sub/l" points to "../../x"`},
		{"absolute symlink", tgz(t, ok, ent{name: "l", typ: tar.TypeSymlink, link: "/etc"}), Limits{}, CodeUnsafePath, `symlink "l" points to "/etc"`},
		{"symlink out of the prefix", tgz(t,
			ent{name: "top/sluice.yaml", body: manifest},
			ent{name: "top/l", typ: tar.TypeSymlink, link: "../other"}), Limits{}, CodeUnsafePath, `symlink "top/l"`},
		{"symlink chain climbing out", tgz(t, ok,
			ent{name: "deep/er/a", typ: tar.TypeSymlink, link: "../.."},
			ent{name: "l", typ: tar.TypeSymlink, link: "deep/er/a/.."}), Limits{}, CodeUnsafePath, `symlink "l" points to "deep/er/a/.."`},
		{"symlink loop", tgz(t, ok,
			ent{name: "a", typ: tar.TypeSymlink, link: "b"},
			ent{name: "b", typ: tar.TypeSymlink, link: "a/x"}), Limits{}, CodeUnsafePath, "outside the source directory"},
		{"file through a symlink", tgz(t, ok,
			ent{name: "l", typ: tar.TypeSymlink, link: "sub"},
			ent{name: "l/f", body: "x"}), Limits{}, CodeUnsafePath, `"l/f" is inside "l", which is not a directory`},
		{"symlink then file of the same name", tgz(t, ok,
			ent{name: "x", typ: tar.TypeSymlink, link: "y"},
			ent{name: "x", body: "x"}), Limits{}, CodeUnsafePath, `"x" appears more than once`},
		{"hard link out", tgz(t, ok, ent{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}), Limits{}, CodeUnsafePath, `hard link "h" points to "/etc/passwd"`},
		{"hard link up", tgz(t, ok, ent{name: "h", typ: tar.TypeLink, link: "../x"}), Limits{}, CodeUnsafePath, `hard link "h"`},
		{"hard link to nothing", tgz(t, ok, ent{name: "h", typ: tar.TypeLink, link: "nope"}), Limits{}, CodeUnsafePath, "not a regular file earlier"},
		{"hard link before its target", tgz(t, ok, ent{name: "h", typ: tar.TypeLink, link: "later"}, ent{name: "later", body: "x"}), Limits{}, CodeUnsafePath, "not a regular file earlier"},
		{"character device", tgz(t, ok, ent{name: "dev/null", typ: tar.TypeChar}), Limits{}, CodeUnsafePath, `"dev/null" is a device or fifo`},
		{"fifo", tgz(t, ok, ent{name: "pipe", typ: tar.TypeFifo}), Limits{}, CodeUnsafePath, "device or fifo"},
		{"missing manifest", tgz(t, ent{name: "README", body: "hi"}), Limits{}, CodeNoManifest, "no sluice.yaml at the root of the source"},
		{"empty tar", tgz(t), Limits{}, CodeNoManifest, "no sluice.yaml"},
		{"manifest below two top directories", tgz(t,
			ent{name: "a/sluice.yaml", body: manifest},
			ent{name: "b/x", body: "x"}), Limits{}, CodeNoManifest, "no sluice.yaml at the root"},
		{"manifest two levels down", tgz(t, ent{name: "a/b/sluice.yaml", body: manifest}), Limits{}, CodeNoManifest, "no sluice.yaml"},
		{"manifest is a directory", tgz(t, ent{name: "sluice.yaml/", typ: tar.TypeDir}), Limits{}, CodeNoManifest, "sluice.yaml in the source is not a regular file"},
		{"manifest is a symlink", tgz(t, ent{name: "real.yaml", body: manifest}, ent{name: "sluice.yaml", typ: tar.TypeSymlink, link: "real.yaml"}), Limits{}, CodeNoManifest, "not a regular file"},
		{"too many files", tgz(t, ok, ent{name: "a"}, ent{name: "b"}, ent{name: "c"}), Limits{MaxFiles: 3}, CodeTooLarge, "more than 3 entries"},
		{"too many bytes", tgz(t, ok, ent{name: "big", body: strings.Repeat("x", 200)}), Limits{MaxBytes: 150}, CodeTooLarge, `larger than 150 bytes (at entry "big")`},
		{"manifest too large", tgz(t, ent{name: "sluice.yaml", body: strings.Repeat("#", MaxManifestBytes+1)}), Limits{}, CodeTooLarge, "sluice.yaml is 1048577 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(tt.archive, tt.lim)
			checkErr(t, "Inspect", err, tt.code, tt.msg)
			if !reflect.DeepEqual(info, Info{}) {
				t.Errorf("Inspect returned %+v along with an error", info)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			checkErr(t, "Extract", Extract(tt.archive, dst, tt.lim), tt.code, tt.msg)
			// Nothing written, neither inside dst nor next to it.
			if got := listing(t, filepath.Dir(dst)); !reflect.DeepEqual(got, map[string]string{"dst": "dir"}) {
				t.Errorf("Extract of a bad archive wrote %q", got)
			}
		})
	}
}

func checkErr(t *testing.T, op string, err error, code, msg string) {
	t.Helper()
	var serr *Error
	if !errors.As(err, &serr) {
		t.Fatalf("%s error = %v, want *Error %s", op, err, code)
	}
	if serr.Code != code || !strings.Contains(serr.Message, msg) {
		t.Errorf("%s error = %s %q, want %s containing %q", op, serr.Code, serr.Message, code, msg)
	}
	if !errors.Is(err, &Error{Code: code}) {
		t.Errorf("errors.Is(%v, code %s) = false", err, code)
	}
}

func TestExtractNeedsEmptyDir(t *testing.T) {
	archive := tgz(t, ent{name: "sluice.yaml", body: manifest})
	dst := t.TempDir()
	mkfile(t, filepath.Join(dst, "old"), "x", 0o644)
	err := Extract(archive, dst, DefaultLimits)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Extract into a non-empty dir = %v", err)
	}
	if err := Extract(archive, filepath.Join(dst, "missing"), DefaultLimits); err == nil {
		t.Errorf("Extract into a missing dir succeeded")
	}
	if got := listing(t, dst); !reflect.DeepEqual(got, map[string]string{"old": "-rw-r--r-- x"}) {
		t.Errorf("destination changed: %q", got)
	}
}

func TestEscapes(t *testing.T) {
	links := map[string]string{
		"deep/er/up":   "../..", // resolves to the root
		"loop":         "loop",
		"dir":          "deep/er",
		"deep/sibling": "../dir",
	}
	tests := []struct {
		name, target string
		want         bool
	}{
		{"l", "x", false},
		{"l", "./x/../y", false},
		{"l", ".", false},
		{"l", "..", true},
		{"l", "../l", true},
		{"a/b/l", "../../x", false},
		{"a/b/l", "../../../x", true},
		{"l", "/abs", true},
		{"l", "", true},
		{"l", "deep/er/up", false},
		{"l", "deep/er/up/..", true},
		{"l", "deep/er/up/x/../y", false},
		{"l", "dir/../..", false},
		{"l", "dir/../../..", true},
		{"l", "deep/sibling/..", false},
		{"l", "loop", true},
	}
	for _, tt := range tests {
		if got := escapes(links, tt.name, tt.target); got != tt.want {
			t.Errorf("escapes(%q -> %q) = %v, want %v", tt.name, tt.target, got, tt.want)
		}
	}
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
