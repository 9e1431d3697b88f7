package source

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// maxLinkHops bounds symlink resolution; deeper chains (or loops) are
// treated as leaving the tree.
const maxLinkHops = 40

// cleanName turns a tar entry name into a clean, slash-separated path
// relative to the archive root, "" for the root itself. It refuses names that
// are absolute or climb with "..", even ones that would clean back inside:
// no honest archiver writes them.
func cleanName(raw string) (string, error) {
	switch {
	case strings.HasPrefix(raw, "/"):
		return "", unsafef("entry %q has an absolute path", raw)
	case strings.Contains(raw, `\`):
		return "", unsafef("entry %q contains a backslash", raw)
	}
	for _, el := range strings.Split(raw, "/") {
		if el == ".." {
			return "", unsafef("entry %q leaves the source directory", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return "", nil
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", unsafef("entry %q is not a local path", raw)
	}
	return name, nil
}

// escapes reports whether a symlink at name (a clean path relative to the
// tree root) with the given target leads out of the tree. It resolves the
// target one element at a time, as the kernel would, through the other
// symlinks of the tree (links maps each symlink's path to its target), so
// that a chain of individually harmless links cannot climb out either. The
// directories above name must not be symlinks; callers ensure that.
func escapes(links map[string]string, name, target string) bool {
	if target == "" || path.IsAbs(target) || strings.Contains(target, `\`) {
		return true
	}
	var at []string // resolved position, as path elements below the root
	if dir := path.Dir(name); dir != "." {
		at = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	hops := 0
	for len(pending) > 0 {
		el := pending[0]
		pending = pending[1:]
		switch el {
		case "", ".":
		case "..":
			if len(at) == 0 {
				return true
			}
			at = at[:len(at)-1]
		default:
			p := strings.Join(append(at[:len(at):len(at)], el), "/")
			t, isLink := links[p]
			if !isLink {
				at = append(at, el)
				continue
			}
			if hops++; hops > maxLinkHops || t == "" || path.IsAbs(t) {
				return true
			}
			pending = append(strings.Split(t, "/"), pending...)
		}
	}
	return false
}

func unsafef(format string, args ...any) *Error {
	return &Error{Code: CodeUnsafePath, Message: fmt.Sprintf(format, args...)}
}
