//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package router

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawConn is a TCP connection whose reads and writes are recvfrom(2) and
// sendto(2) made with syscall.RawSyscall through the connection's RawConn:
// still non-blocking and parked on Go's netpoller (deadlines included),
// but without telling the scheduler about each call. The sockets never
// block, so the calls are short; telling the scheduler costs more than
// they do when the router runs on one core (the scheduler's monitor hands
// the processor to another thread when a call spans its tick, a context
// switch each way). See doc.go.
type rawConn struct {
	net.Conn
	rc syscall.RawConn

	rp   []byte
	rn   int
	rerr syscall.Errno
	wp   []byte
	wn   int
	werr syscall.Errno

	readFn, writeFn func(fd uintptr) bool
}

// fastConn wraps c when it is a TCP connection of this platform.
func fastConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	f := &rawConn{Conn: c, rc: rc}
	f.readFn, f.writeFn = f.doRead, f.doWrite
	return f
}

func (f *rawConn) doRead(fd uintptr) bool {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(unsafe.SliceData(f.rp))), uintptr(len(f.rp)), 0, 0, 0)
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return false // wait for the netpoller (EINTR: try again)
	}
	f.rn, f.rerr = int(r), e
	return true
}

func (f *rawConn) doWrite(fd uintptr) bool {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd,
		uintptr(unsafe.Pointer(unsafe.SliceData(f.wp))), uintptr(len(f.wp)), syscall.MSG_NOSIGNAL, 0, 0)
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return false
	}
	f.wn, f.werr = int(r), e
	return true
}

func (f *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.rp = p
	err := f.rc.Read(f.readFn)
	f.rp = nil
	switch {
	case err != nil:
		return 0, err
	case f.rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: f.RemoteAddr(), Err: os.NewSyscallError("recvfrom", f.rerr)}
	case f.rn == 0:
		return 0, io.EOF
	}
	return f.rn, nil
}

func (f *rawConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		f.wp = p[n:]
		err := f.rc.Write(f.writeFn)
		f.wp = nil
		switch {
		case err != nil:
			return n, err
		case f.werr != 0:
			return n, &net.OpError{Op: "write", Net: "tcp", Addr: f.RemoteAddr(), Err: os.NewSyscallError("sendto", f.werr)}
		}
		n += f.wn
	}
	return n, nil
}

// CloseWrite half-closes the connection.
func (f *rawConn) CloseWrite() error { return f.Conn.(*net.TCPConn).CloseWrite() }

// SyscallConn gives the connection's RawConn (for peekAlive).
func (f *rawConn) SyscallConn() (syscall.RawConn, error) { return f.rc, nil }

// unwrap returns the *net.TCPConn under a rawConn, so that io.Copy between
// two of them can use splice(2).
func unwrap(c net.Conn) net.Conn {
	if f, ok := c.(*rawConn); ok {
		return f.Conn
	}
	return c
}
