package local

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// nsInitArg is argv[1] of sluice's own binary re-executed as the first
// process (init) of a build's or instance's PID and mount namespace.
const nsInitArg = "__sluice-namespace-init"

// nsCloneFlags are the namespaces a child's init is started in.
const nsCloneFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS

// RunNamespaceInit turns this process into the init of a child's
// namespace when it was started as one, and never returns then; otherwise
// it returns at once. Every program that creates a Local must call it
// first thing in main (tests: in TestMain), because the Local starts
// builds and instances by re-executing its own binary.
//
// As init, running as root in fresh PID and mount namespaces, it makes
// mounts private, mounts a /proc that shows only the namespace's
// processes, starts argv[4:] in its own process group as uid argv[2], gid
// argv[3] with no supplementary groups, forwards SIGTERM, SIGINT, SIGHUP
// and SIGQUIT to that group, reaps every orphan, and exits with the
// child's status (128+n when killed by signal n). Its exit kills whatever
// is left in the namespace.
func RunNamespaceInit() {
	if len(os.Args) < 5 || os.Args[1] != nsInitArg {
		return
	}
	os.Exit(nsInit(os.Args[2], os.Args[3], os.Args[4:]))
}

func nsInit(uidArg, gidArg string, argv []string) int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "sluice: namespace init: %s: %v\n", what, err)
		return 125
	}
	uid, err := strconv.ParseUint(uidArg, 10, 32)
	if err != nil {
		return fail("uid", err)
	}
	gid, err := strconv.ParseUint(gidArg, 10, 32)
	if err != nil {
		return fail("gid", err)
	}
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fail("mount /proc", err)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	wd, err := os.Getwd()
	if err != nil {
		return fail("working directory", err)
	}
	var cred *syscall.Credential
	if uid != 0 || gid != 0 {
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   wd,
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: cred},
	})
	if err != nil {
		return fail("start command", err)
	}
	exited := make(chan syscall.WaitStatus, 1)
	go func() {
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || wpid == pid {
				exited <- ws
				return
			}
		}
	}()
	for {
		select {
		case sig := <-sigs:
			_ = syscall.Kill(-pid, sig.(syscall.Signal))
		case ws := <-exited:
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// nsSupported reports whether a child can be started in new PID and mount
// namespaces with a fresh /proc, by starting one that runs `true`; the
// error says why not.
func (l *Local) nsSupported() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	l.exe = exe
	p, err := os.StartProcess(exe, l.nsArgv("true"), &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=" + defaultPath},
		Files: []*os.File{nil, nil, os.Stderr},
		Sys:   &syscall.SysProcAttr{Cloneflags: nsCloneFlags, Setpgid: true},
	})
	if err != nil {
		return fmt.Errorf("start in new namespaces: %w", err)
	}
	st, err := p.Wait()
	if err != nil {
		return fmt.Errorf("wait for namespace probe: %w", err)
	}
	if !st.Success() {
		return fmt.Errorf("namespace probe %s (does this program call local.RunNamespaceInit first?)", describeExit(st, nil))
	}
	return nil
}

// nsArgv is the argv that runs command under a namespace init.
func (l *Local) nsArgv(command string) []string {
	var uid, gid uint32
	if l.runAs != nil {
		uid, gid = l.runAs.UID, l.runAs.GID
	}
	return []string{l.exe, nsInitArg, strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10), shell, "-c", command}
}
