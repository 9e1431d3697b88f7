package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultRunAsID is the uid and gid builds and instances run as when
// sluice runs as root and no --run-as is given. It needs no account in
// /etc/passwd; it must not be used by anything else on the host.
const DefaultRunAsID = 64100

// RunAs is the identity builds and instances run under.
type RunAs struct {
	UID, GID uint32
	// Name is how messages and logs name it: a user name or "uid:gid".
	Name string
}

// String returns r.Name.
func (r RunAs) String() string { return r.Name }

// ParseRunAs turns the --run-as setting into an identity, for a sluice
// whose effective uid is euid:
//
//   - "" as root: the dedicated DefaultRunAsID:DefaultRunAsID, refused if
//     an account of another name already has that uid;
//   - "" as any other user: that user (children cannot be switched to
//     another uid without privileges);
//   - "root": root, only when sluice is root, and only when asked for by
//     that name (not "0" or "0:0"), so running deployed code with every
//     privilege is always a deliberate choice;
//   - a user name (its primary group), "uid:gid", or a number N for N:N.
//
// Any identity other than sluice's own needs sluice to run as root.
func ParseRunAs(s string, euid int) (RunAs, error) {
	self := RunAs{UID: uint32(euid), GID: uint32(os.Getegid()), Name: strconv.Itoa(euid) + ":" + strconv.Itoa(os.Getegid())}
	var r RunAs
	switch s = strings.TrimSpace(s); {
	case s == "" && euid != 0:
		return self, nil
	case s == "":
		id := strconv.Itoa(DefaultRunAsID)
		if u, err := user.LookupId(id); err == nil {
			return RunAs{}, fmt.Errorf("the default --run-as uid %s belongs to the account %q: pass --run-as with a user that only runs sluice's services", id, u.Username)
		}
		r = RunAs{UID: DefaultRunAsID, GID: DefaultRunAsID, Name: id + ":" + id}
	case s == "root":
		r = RunAs{Name: "root"}
	case strings.Contains(s, ":"):
		us, gs, _ := strings.Cut(s, ":")
		uid, err1 := strconv.ParseUint(us, 10, 32)
		gid, err2 := strconv.ParseUint(gs, 10, 32)
		if err1 != nil || err2 != nil {
			return RunAs{}, fmt.Errorf("--run-as %q: want a user name, uid:gid with numbers, or root", s)
		}
		r = RunAs{UID: uint32(uid), GID: uint32(gid), Name: s}
	default:
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			r = RunAs{UID: uint32(n), GID: uint32(n), Name: s + ":" + s}
			break
		}
		u, err := user.Lookup(s)
		if err != nil {
			return RunAs{}, fmt.Errorf("--run-as %q: %w", s, err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return RunAs{}, fmt.Errorf("--run-as %q: user has a non-numeric uid or gid", s)
		}
		r = RunAs{UID: uint32(uid), GID: uint32(gid), Name: s}
	}
	if r.UID == 0 && s != "root" {
		return RunAs{}, fmt.Errorf("--run-as %q is root: say --run-as=root if deployed code should really run as root", s)
	}
	if euid != 0 && (r.UID != self.UID || r.GID != self.GID) {
		return RunAs{}, fmt.Errorf("--run-as %q needs sluice to run as root; as uid %d, builds and instances run as sluice's own user", s, euid)
	}
	return r, nil
}

// switches reports whether children run as an identity other than
// sluice's own, so the data directory must keep them out.
func (l *Local) switches() bool {
	return l.runAs != nil && (int(l.runAs.UID) != os.Geteuid() || int(l.runAs.GID) != os.Getegid())
}

// credential is the SysProcAttr credential of a child, or nil to keep
// sluice's own.
func (l *Local) credential() *syscall.Credential {
	if !l.switches() {
		return nil
	}
	return &syscall.Credential{Uid: l.runAs.UID, Gid: l.runAs.GID, Groups: []uint32{}}
}

// prepareDataDir sets the modes of the data directory for the run-as
// identity: owner-only (0700) when children run as sluice's own user;
// traverse-only for others (0711) when they run as another, so a child
// reaches its own working directory by path but cannot list the data
// directory nor open the store, the key files or the logs, which stay
// owner-only. Each ancestor must let the run-as user pass.
func (l *Local) prepareDataDir() error {
	mode := fs.FileMode(0o700)
	if l.switches() {
		mode = 0o711
	}
	for _, d := range []string{l.dataDir, filepath.Join(l.dataDir, "versions")} {
		if err := os.Chmod(d, mode); err != nil {
			return fmt.Errorf("restrict data directory: %w", err)
		}
	}
	if !l.switches() {
		return nil
	}
	for d := filepath.Dir(l.dataDir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check data directory: %w", err)
		}
		if !l.canTraverse(st) {
			return fmt.Errorf("builds and instances run as %s but cannot reach the data directory: %s is mode %04o; let others traverse it (chmod o+x %s) or choose a --data elsewhere",
				l.runAs, d, st.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// canTraverse reports whether the run-as identity may pass the directory
// st describes.
func (l *Local) canTraverse(st fs.FileInfo) bool {
	perm := st.Mode().Perm()
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return perm&0o001 != 0
	}
	switch {
	case sys.Uid == l.runAs.UID:
		return perm&0o100 != 0
	case sys.Gid == l.runAs.GID:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// giveTree makes the tree at dir belong to the run-as identity, so a
// build can write into its source and an instance into its working
// directory. Symlinks are changed themselves, never followed.
func (l *Local) giveTree(dir string) error {
	if !l.switches() {
		return nil
	}
	uid, gid := int(l.runAs.UID), int(l.runAs.GID)
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("hand work directory to %s: %w", l.runAs, err)
	}
	return nil
}

// homeDir is the HOME of children running as another user: a directory
// of the run-as user under the data directory, shared by every version
// (they share the uid anyway), so build caches survive between deploys.
func (l *Local) homeDir() string {
	return filepath.Join(l.dataDir, "home")
}

// prepareHome creates homeDir owned by the run-as user, mode 0700.
func (l *Local) prepareHome() error {
	if !l.switches() {
		return nil
	}
	h := l.homeDir()
	if err := os.MkdirAll(h, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create home of %s: %w", l.runAs, err)
	}
	if err := os.Chown(h, int(l.runAs.UID), int(l.runAs.GID)); err != nil {
		return fmt.Errorf("create home of %s: %w", l.runAs, err)
	}
	return os.Chmod(h, 0o700)
}
