//go:build !(linux && (amd64 || arm64 || riscv64 || ppc64le || loong64))

package router

import "net"

// fastConn leaves c as it is: the raw system call path is Linux's.
func fastConn(c net.Conn) net.Conn { return c }

func unwrap(c net.Conn) net.Conn { return c }
