package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxTrailer bounds how much data after the tar end marker is read to reach
// (and verify) the gzip trailer.
const maxTrailer = 1 << 20

// Inspect reads the whole archive and validates it as Extract would: gzip
// and tar structure, every entry's path and link target, the limits, and
// the presence of sluice.yaml at the root of the tree (after stripping a
// single top directory when the root has none). It returns the manifest's
// bytes and what it found. Errors about the archive are *Error. Inspect
// keeps at most two candidate manifests in memory, never file contents.
func Inspect(archive []byte, lim Limits) (Info, error) {
	s, err := survey(archive, lim.withDefaults())
	if err != nil {
		return Info{}, err
	}
	return s.info, nil
}

// Extract writes the archive's tree into dir, which must exist and be
// empty, stripping Info.Prefix. The archive is validated in full first (see
// Inspect), so a bad archive leaves dir untouched; writes go through an
// os.Root so that nothing lands outside dir even if validation missed a
// case. Regular files keep their permission bits, except that group and
// others never get write permission and the owner always gets read and
// write; directories are 0755. Modification times are not restored.
func Extract(archive []byte, dir string, lim Limits) error {
	lim = lim.withDefaults()
	existing, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read destination: %w", err)
	}
	if len(existing) > 0 {
		return fmt.Errorf("extract source: destination %s is not empty", dir)
	}
	s, err := survey(archive, lim)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open destination: %w", err)
	}
	defer root.Close()
	return walk(archive, lim, func(h *tar.Header, name string, r io.Reader) error {
		rel, ok := strip(s.info.Prefix, name)
		if !ok || rel == "" {
			return nil
		}
		local := filepath.FromSlash(rel)
		if h.Typeflag == tar.TypeDir {
			if err := root.MkdirAll(local, 0o755); err != nil {
				return fmt.Errorf("create directory %s: %w", rel, err)
			}
			return nil
		}
		if parent := path.Dir(rel); parent != "." {
			if err := root.MkdirAll(filepath.FromSlash(parent), 0o755); err != nil {
				return fmt.Errorf("create directory %s: %w", parent, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, local); err != nil {
				return fmt.Errorf("create symlink %s: %w", rel, err)
			}
		case tar.TypeLink:
			target, _ := cleanName(h.Linkname)
			target, _ = strip(s.info.Prefix, target)
			if err := root.Link(filepath.FromSlash(target), local); err != nil {
				return fmt.Errorf("create hard link %s: %w", rel, err)
			}
		default:
			if err := writeFile(root, local, fileMode(h.Mode), r); err != nil {
				return fmt.Errorf("write %s: %w", rel, err)
			}
		}
		return nil
	})
}

// fileMode limits an archived mode to permission bits that only the owner
// may write, and makes sure the owner can read and write.
func fileMode(mode int64) fs.FileMode {
	return fs.FileMode(mode)&0o755 | 0o600
}

func writeFile(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// OpenFile's mode is filtered by the umask; the archive's is not.
	return root.Chmod(name, mode)
}

// entry is what survey remembers of one tar entry.
type entry struct {
	name   string // clean path from the archive root, prefix included
	raw    string // the name as written in the archive, for messages
	kind   byte   // tar.TypeReg, TypeDir, TypeSymlink or TypeLink
	target string // symlink target as written; hard link target cleaned
	index  int    // position in the archive
}

// surveyed is the outcome of reading an archive without writing anything.
type surveyed struct {
	info    Info
	entries []entry
}

// survey reads the archive once, checks every entry on its own, then the
// tree as a whole, and finds the manifest.
func survey(archive []byte, lim Limits) (*surveyed, error) {
	s := &surveyed{}
	var (
		rootManifest, topManifest []byte
		hasRoot, hasTop           bool
		top                       string
		singleTop                 = true
	)
	err := walk(archive, lim, func(h *tar.Header, name string, r io.Reader) error {
		s.info.Files++
		if h.Typeflag == tar.TypeReg {
			s.info.Bytes += h.Size
		}
		if name == "" {
			return nil
		}
		e := entry{name: name, raw: h.Name, kind: h.Typeflag, index: len(s.entries)}
		switch h.Typeflag {
		case tar.TypeSymlink:
			e.target = h.Linkname
		case tar.TypeLink:
			target, err := cleanName(h.Linkname)
			if err != nil || target == "" {
				return unsafef("hard link %q points to %q, outside the source directory", h.Name, h.Linkname)
			}
			e.target = target
		}
		s.entries = append(s.entries, e)

		first, rest, _ := strings.Cut(name, "/")
		if top == "" {
			top = first
		} else if first != top {
			singleTop = false
		}
		switch {
		case name == ManifestName:
			hasRoot = true
			if h.Typeflag == tar.TypeReg {
				b, err := readManifest(h, r)
				if err != nil {
					return err
				}
				rootManifest = b
			}
		case first == top && rest == ManifestName:
			hasTop = true
			if h.Typeflag == tar.TypeReg {
				b, err := readManifest(h, r)
				if err != nil {
					return err
				}
				topManifest = b
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var manifest []byte
	switch {
	case hasRoot:
		manifest = rootManifest
	case singleTop && hasTop:
		s.info.Prefix = top
		manifest = topManifest
	default:
		return nil, &Error{Code: CodeNoManifest, Message: "no sluice.yaml at the root of the source"}
	}
	if manifest == nil {
		return nil, &Error{Code: CodeNoManifest, Message: fmt.Sprintf("%s in the source is not a regular file", path.Join(s.info.Prefix, ManifestName))}
	}
	if err := s.checkTree(); err != nil {
		return nil, err
	}
	s.info.Manifest = manifest
	return s, nil
}

func readManifest(h *tar.Header, r io.Reader) ([]byte, error) {
	if h.Size > MaxManifestBytes {
		return nil, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("%s is %d bytes, more than the %d allowed", h.Name, h.Size, MaxManifestBytes)}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, truncated(err)
	}
	return b, nil
}

// checkTree checks what no single entry shows: duplicates, entries below a
// non-directory (writing there would follow a symlink), and links that
// lead out of the tree once the prefix is stripped.
func (s *surveyed) checkTree() error {
	kinds := make(map[string]entry, len(s.entries))
	for _, e := range s.entries {
		if prev, dup := kinds[e.name]; dup && (prev.kind != tar.TypeDir || e.kind != tar.TypeDir) {
			return unsafef("entry %q appears more than once in the archive", e.raw)
		}
		kinds[e.name] = e
	}
	links := map[string]string{}
	for _, e := range s.entries {
		for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
			if parent, ok := kinds[dir]; ok && parent.kind != tar.TypeDir {
				return unsafef("entry %q is inside %q, which is not a directory", e.raw, parent.raw)
			}
		}
		if e.kind == tar.TypeSymlink {
			rel, _ := strip(s.info.Prefix, e.name)
			links[rel] = e.target
		}
	}
	for _, e := range s.entries {
		switch e.kind {
		case tar.TypeSymlink:
			rel, _ := strip(s.info.Prefix, e.name)
			if escapes(links, rel, e.target) {
				return unsafef("symlink %q points to %q, outside the source directory", e.raw, e.target)
			}
		case tar.TypeLink:
			t, ok := kinds[e.target]
			if _, inTree := strip(s.info.Prefix, e.target); !ok || !inTree || t.kind != tar.TypeReg || t.index > e.index {
				return unsafef("hard link %q points to %q, which is not a regular file earlier in the source", e.raw, e.target)
			}
		}
	}
	return nil
}

// strip removes the prefix directory from name; ok is false when name is
// not inside it.
func strip(prefix, name string) (rel string, ok bool) {
	if prefix == "" {
		return name, true
	}
	if name == prefix {
		return "", true
	}
	rel, ok = strings.CutPrefix(name, prefix+"/")
	return rel, ok
}

// walk decompresses the archive and calls fn for every entry with its clean
// name ("" for the root directory) and a reader of its content. It enforces
// what can be checked entry by entry: structure, paths, types and limits.
// pax global headers are skipped.
func walk(archive []byte, lim Limits, fn func(h *tar.Header, name string, r io.Reader) error) error {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return &Error{Code: CodeNotArchive, Message: fmt.Sprintf("source is not a gzip archive: %v", err)}
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	var (
		files int
		total int64
	)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if files == 0 {
				return &Error{Code: CodeNotArchive, Message: fmt.Sprintf("source is not a tar archive: %v", err)}
			}
			return truncated(err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if files++; files > lim.MaxFiles {
			return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("source has more than %d entries", lim.MaxFiles)}
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return unsafef("entry %q is a device or fifo", h.Name)
		default:
			return unsafef("entry %q has unsupported type %q", h.Name, h.Typeflag)
		}
		if name == "" && h.Typeflag != tar.TypeDir {
			return unsafef("entry %q is the source root but not a directory", h.Name)
		}
		if h.Typeflag == tar.TypeReg {
			if total += h.Size; total > lim.MaxBytes {
				return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("source is larger than %d bytes (at entry %q)", lim.MaxBytes, h.Name)}
			}
		}
		if err := fn(h, name, tr); err != nil {
			return err
		}
	}
	// Reading on to the gzip trailer verifies the checksum and notices an
	// archive cut short after the tar end marker.
	switch n, err := io.CopyN(io.Discard, gz, maxTrailer); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return truncated(err)
	case n == maxTrailer:
		return &Error{Code: CodeNotArchive, Message: "source has unexpected data after the end of the tar archive"}
	}
	return nil
}

// truncated turns an error met while decompressing into a NotArchive error.
// Errors of the destination (from fn) never come through here.
func truncated(err error) *Error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Code: CodeNotArchive, Message: "source archive is truncated"}
	}
	return &Error{Code: CodeNotArchive, Message: fmt.Sprintf("source archive is corrupt: %v", err)}
}
