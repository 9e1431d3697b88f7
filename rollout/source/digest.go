package source

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
)

// Digest identifies the tree an archive holds, independent of how it was
// packed: the SHA-256 over every entry's path (after the prefix is
// stripped), type, executable bit, and content or link target, in path
// order. Two archives of the same tree — a PR head's tarball and the
// merge commit's with the same files — have the same digest. The archive
// is validated as by Inspect.
func Digest(archive []byte, lim Limits) (string, error) {
	lim = lim.withDefaults()
	s, err := survey(archive, lim)
	if err != nil {
		return "", err
	}
	type ent struct {
		name string
		sum  [32]byte
	}
	var ents []ent
	err = walk(archive, lim, func(h *tar.Header, name string, r io.Reader) error {
		rel, ok := strip(s.info.Prefix, name)
		if !ok || rel == "" {
			return nil
		}
		hs := sha256.New()
		fmt.Fprintf(hs, "%c %o %s\x00", h.Typeflag, h.Mode&0o111, h.Linkname)
		if h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(hs, r); err != nil {
				return truncated(err)
			}
		}
		var e ent
		e.name = rel
		copy(e.sum[:], hs.Sum(nil))
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	h := sha256.New()
	for _, e := range ents {
		fmt.Fprintf(h, "%s\x00", e.name)
		h.Write(e.sum[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
