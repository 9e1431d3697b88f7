package source

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// skipDirs are never packed, wherever they appear: version control data
// and sluice's own working files.
var skipDirs = map[string]bool{".git": true, ".sluice": true}

// Pack writes the tree under dir to w as a gzip-compressed tar archive that
// Inspect accepts as it is (provided dir holds a sluice.yaml). Entries have
// relative slash-separated names ("sluice.yaml", "cmd/x.go"), in lexical
// order. It packs directories, regular files with their permission bits,
// and symlinks whose target stays inside dir; it skips symlinks that lead
// out (or are absolute), other special files, and anything named .git or
// .sluice. Owners are not recorded. Pack does not close w.
func Pack(dir string, w io.Writer) error {
	items, err := collect(dir)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, it := range items {
		if err := writeItem(tw, dir, it); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("finish gzip: %w", err)
	}
	return nil
}

// item is one thing to pack.
type item struct {
	rel    string // slash-separated, relative to the packed directory
	info   fs.FileInfo
	target string // symlink target
}

// collect lists what Pack will write, dropping symlinks that lead out of
// dir. Dropping a link changes how links through it resolve, so the check
// repeats until every kept link is judged against the final set, which is
// the set Inspect will see.
func collect(dir string) ([]item, error) {
	var items []item
	links := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk source: %w", err)
		}
		if p == dir {
			return nil
		}
		if skipDirs[d.Name()] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fmt.Errorf("walk source: %w", err)
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", rel, err)
		}
		it := item{rel: rel, info: info}
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read symlink %s: %w", rel, err)
			}
			it.target = filepath.ToSlash(target)
			links[rel] = it.target
		default:
			return nil // sockets, devices, fifos
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for changed := true; changed; {
		changed = false
		for rel, target := range links {
			if escapes(links, rel, target) {
				delete(links, rel)
				changed = true
			}
		}
	}
	kept := items[:0]
	for _, it := range items {
		if it.info.Mode()&fs.ModeSymlink != 0 {
			if _, ok := links[it.rel]; !ok {
				continue
			}
		}
		kept = append(kept, it)
	}
	return kept, nil
}

func writeItem(tw *tar.Writer, dir string, it item) error {
	h := &tar.Header{
		Name:    it.rel,
		Mode:    int64(it.info.Mode().Perm()),
		ModTime: it.info.ModTime().Truncate(time.Second),
	}
	switch {
	case it.info.IsDir():
		h.Typeflag = tar.TypeDir
		h.Name += "/"
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("pack %s: %w", it.rel, err)
		}
		return nil
	case it.info.Mode()&fs.ModeSymlink != 0:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = it.target
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("pack %s: %w", it.rel, err)
		}
		return nil
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(it.rel)))
	if err != nil {
		return fmt.Errorf("open %s: %w", it.rel, err)
	}
	defer f.Close()
	// Size the entry from the open file and copy exactly that much: a file
	// that grows meanwhile is cut at its size when opened, one that shrinks
	// fails Pack.
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", it.rel, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("pack %s: no longer a regular file", it.rel)
	}
	h.Typeflag = tar.TypeReg
	h.Size = info.Size()
	h.Mode = int64(info.Mode().Perm())
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("pack %s: %w", it.rel, err)
	}
	if _, err := io.CopyN(tw, f, h.Size); err != nil {
		return fmt.Errorf("pack %s: %w", it.rel, err)
	}
	return nil
}
