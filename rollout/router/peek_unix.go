//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package router

import (
	"net"
	"syscall"
)

// peekAlive reports whether an idle connection can still carry a request:
// a non-blocking MSG_PEEK finds nothing to read. An end of stream (the
// instance closed it), an error, or unexpected bytes all say no.
func peekAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readability
	})
	return err == nil && alive
}
