package local

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// socketInode is the inode of the socket behind c's file descriptor.
func socketInode(t *testing.T, c interface {
	File() (*os.File, error)
}) string {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	in, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		t.Fatalf("fd of a socket links to %q", target)
	}
	return strings.TrimSuffix(in, "]")
}

// TestListenersAgreeWithProcNetTCP: the sockets sock_diag reports as
// listening are those /proc/net/tcp{,6} lists in LISTEN state, with the
// same ports, for IPv4 and IPv6 listeners; a connected socket is not one.
func TestListenersAgreeWithProcNetTCP(t *testing.T) {
	var inodes []string
	want := map[string]int{}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "[::1]:0" {
				continue // no IPv6 here
			}
			t.Fatal(err)
		}
		defer ln.Close()
		in := socketInode(t, ln.(*net.TCPListener))
		inodes = append(inodes, in)
		want[in] = ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		want[socketInode(t, c.(*net.TCPConn))] = -1 // connected: not listening
	}
	all, err := listeners()
	if err != nil {
		t.Fatalf("listeners: %v", err)
	}
	for in, port := range want {
		n, _ := strconv.ParseUint(in, 10, 64)
		got, ok := all[n]
		switch {
		case port < 0 && ok:
			t.Errorf("connected socket %s reported listening on %d", in, got)
		case port >= 0 && (!ok || got != port):
			t.Errorf("listener %s: got port %d (%v), want %d", in, got, ok, port)
		}
		if port < 0 {
			continue
		}
		var fromProc []int
		for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			ps, _ := listenPorts(table, map[string]bool{in: true})
			fromProc = append(fromProc, ps...)
		}
		if len(fromProc) != 1 || fromProc[0] != port {
			t.Errorf("listener %s: /proc/net/tcp says %v, sock_diag %d", in, fromProc, port)
		}
	}
	if len(inodes) == 0 {
		t.Fatal("no listener opened")
	}
	if !anyListens(want[inodes[0]]) {
		t.Errorf("anyListens(%d) = false for a port this test listens on", want[inodes[0]])
	}
}

// BenchmarkListeners and BenchmarkProcNetTCP compare the two ways of
// listing listening sockets; the /proc one grows with every socket of the
// namespace, the sock_diag one only with the listening ones.
func BenchmarkListeners(b *testing.B) {
	for b.Loop() {
		if _, err := listeners(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProcNetTCP(b *testing.B) {
	for b.Loop() {
		for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			if _, err := listenPorts(table, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}
