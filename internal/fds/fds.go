// Package fds budgets the process's file descriptors between the servers
// that share it: the API/webhook listener and the router. Every connection
// either accepts costs a descriptor (a proxied one two: the client's and
// the instance's), and a process out of descriptors cannot accept on any
// listener, so one flooded listener must not be able to take them all.
//
// It imports nothing of sluice.
package fds

import (
	"fmt"
	"syscall"
)

// Reserve bounds the descriptors kept for everything but client
// connections (the store, logs, pipes to children, calls to GitHub): a
// quarter of the limit, at most MaxReserve.
const MaxReserve = 512

// RaiseLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the soft limit in force afterwards.
func RaiseLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		raised := syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return l.Cur, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", l.Max, err)
		}
		l = raised
	}
	return l.Cur, nil
}

// Budget is how many client connections each listener may hold at once.
type Budget struct {
	API, Router int
}

// Split shares limit descriptors: the reserve first, then up to an eighth
// of the rest for the API (at most api), then the rest for the router at
// two descriptors a connection (at most router). Each gets at least one.
// Pure.
func Split(limit uint64, api, router int) Budget {
	reserve := min(limit/4, MaxReserve)
	rest := int(min(limit-reserve, 1<<30))
	b := Budget{API: max(1, min(api, rest/8))}
	b.Router = max(1, min(router, (rest-b.API)/2))
	return b
}
