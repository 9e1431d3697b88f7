package local

import (
	"bufio"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Deployed code may listen only on its own $PORT. Without containers
// sluice cannot stop a process from binding a port, so it looks instead:
// after an instance passes its health check, and on every watch round
// afterwards, it lists the TCP sockets in LISTEN state whose inodes are
// open in the instance's processes (its process group and every
// descendant, from /proc/<pid>/fd and the kernel's sock_diag, or
// /proc/net/tcp{,6} where that cannot be asked). An instance
// listening on any other port fails its start, or is killed and
// restarted; an instance whose $PORT is answered by a process of its own
// is required too, so that another process holding the port cannot pass
// the health check in its place. UDP is not watched (every DNS lookup
// binds a UDP port for a moment), nor a process that leaves both the
// process group and the process tree (setsid after a double fork).

// listening reports the TCP ports in LISTEN state held by the processes of
// the instance led by pid, sorted, and whether the sockets could be read.
func listening(pid int) ([]int, bool) {
	inodes := map[string]bool{}
	for _, p := range family(pid) {
		dir := "/proc/" + strconv.Itoa(p) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone meanwhile
		}
		for _, fd := range fds {
			target, err := os.Readlink(dir + "/" + fd.Name())
			if err != nil {
				continue
			}
			if in, ok := strings.CutPrefix(target, "socket:["); ok {
				inodes[strings.TrimSuffix(in, "]")] = true
			}
		}
	}
	seen := map[int]bool{}
	if all, err := listeners(); err == nil {
		for inode, port := range all {
			if inodes[strconv.FormatUint(inode, 10)] {
				seen[port] = true
			}
		}
		return sortedPorts(seen), true
	}
	read := false
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		ports, err := listenPorts(table, inodes)
		if err != nil {
			continue
		}
		read = true
		for _, p := range ports {
			seen[p] = true
		}
	}
	return sortedPorts(seen), read
}

func sortedPorts(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// tcpListen is the st field of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// listenPorts returns the local ports of the LISTEN sockets in a
// /proc/net/tcp-format table (read when listeners cannot be asked) whose inode is in inodes (any, when nil).
func listenPorts(table string, inodes map[string]bool) ([]int, error) {
	f, err := os.Open(table)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[3] != tcpListen || (inodes != nil && !inodes[fl[9]]) {
			continue
		}
		_, hexPort, ok := strings.Cut(fl[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err == nil {
			out = append(out, int(p))
		}
	}
	return out, sc.Err()
}

// family lists pid, the members of its process group and the descendants
// of either.
func family(pid int) []int {
	parent := map[int]int{}
	in := map[int]bool{pid: true}
	scanProcs(func(p int) bool {
		st, ok := readStat(p)
		if !ok || st.zombie() {
			return true
		}
		parent[p] = st.ppid
		if st.pgrp == pid {
			in[p] = true
		}
		return true
	})
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if !in[p] && in[pp] {
				in[p] = true
				changed = true
			}
		}
	}
	out := make([]int, 0, len(in))
	for p := range in {
		out = append(out, p)
	}
	return out
}

// anyListens reports whether some socket of this network namespace listens
// on port.
func anyListens(port int) bool {
	if all, err := listeners(); err == nil {
		for _, p := range all {
			if p == port {
				return true
			}
		}
		return false
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		ports, _ := listenPorts(table, nil)
		for _, p := range ports {
			if p == port {
				return true
			}
		}
	}
	return false
}

// portViolation checks that the instance on port, led by pid, listens on
// port and on nothing else. It returns "" when it does (or when /proc
// cannot tell), else what is wrong, for a user to read, and the failure
// code that fits: reason.PortNotAllowed for extra ports, reason.PortNotListening
// when another process holds the instance's port.
func portViolation(pid, port int) (string, reason.Code) {
	ports, ok := listening(pid)
	if !ok {
		return "", ""
	}
	var extra []string
	own := false
	for _, p := range ports {
		if p == port {
			own = true
			continue
		}
		extra = append(extra, strconv.Itoa(p))
	}
	switch {
	case len(extra) == 1:
		return fmt.Sprintf("it listens on port %s besides its own $PORT %d", extra[0], port), reason.PortNotAllowed
	case len(extra) > 1:
		return fmt.Sprintf("it listens on ports %s besides its own $PORT %d", strings.Join(extra, ", "), port), reason.PortNotAllowed
	case !own && anyListens(port):
		return fmt.Sprintf("another process, not this instance, listens on its $PORT %d", port), reason.PortNotListening
	}
	return "", ""
}

// watch checks, every watch interval until the group stops, that each up
// instance listens on its own port only, and kills one that does not: its
// supervisor restarts it with backoff, and its log says why.
func (g *group) watch() {
	defer g.wg.Done()
	t := time.NewTicker(g.l.watchEvery)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		for _, inst := range g.insts {
			g.l.rotate(inst.logPath)
			g.mu.Lock()
			p, up := inst.p, inst.up
			g.mu.Unlock()
			if !up || p == nil || p.exited() {
				continue
			}
			if why, _ := portViolation(p.pid, inst.port); why != "" {
				g.log.Error("instance killed: it listens where it may not", "instance", inst.idx, "port", inst.port, "pid", p.pid, "reason", why)
				_ = appendFile(inst.logPath, fmt.Sprintf("==== sluice: instance %d killed at %s: %s; an instance may listen only on $PORT\n",
					inst.idx, time.Now().UTC().Format(time.RFC3339), why))
				p.signal(syscall.SIGKILL)
			}
		}
	}
}
