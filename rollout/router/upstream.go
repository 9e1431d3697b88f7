package router

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the instances' side: one backend per instance address,
// with its pool of idle keep-alive connections, its in-flight count (for
// Drain) and its liveness (an instance that refuses connections is out of
// rotation until a later request probes it again).

// Liveness backoff: an instance that refused a connection is skipped for
// downMin, doubled on every failed probe up to downMax.
const (
	downMin = 1 * time.Second
	downMax = 5 * time.Second
	// probeHold keeps other requests off an instance while one probes it.
	probeHold = 2 * time.Second
)

// staleAfter is how long a pooled connection may sit idle before it is
// checked (a non-blocking peek) for a close by the instance before reuse:
// servers close idle keep-alive connections (Node.js after 5 s), and a
// request written into such a connection fails.
const staleAfter = 1 * time.Second

// upstreamBufSize is the read buffer of a connection to an instance.
const upstreamBufSize = 8 << 10

// backend is one instance address. It outlives tables so that requests in
// flight to an address are counted across swaps (see Drain), and so does
// its pool.
type backend struct {
	addr     string
	inflight atomic.Int64

	// downUntil is the wall clock (UnixNano) before which the instance is
	// out of rotation; 0 when it is up. failures counts refusals in a row.
	downUntil atomic.Int64
	failures  atomic.Int32

	pool *pool // the router's totals, shared by every backend

	mu     sync.Mutex
	idle   []*upConn // LIFO: the most recently used is reused first
	closed bool      // forgotten by the router: connections returned are closed
}

// pool is what every backend shares: the dialer and the limits on idle
// connections.
type pool struct {
	dialer      net.Dialer
	idleTotal   atomic.Int64
	maxIdle     int64
	maxIdleHost int
	idleTimeout time.Duration
}

// upConn is a connection to an instance with its read buffer.
type upConn struct {
	c         net.Conn
	rd        reader
	b         *backend
	idleSince time.Time
}

// usable reports whether the instance may be sent a request now: it is up,
// or it is down and its backoff is over, in which case the caller is the
// one request that probes it (others keep skipping it meanwhile).
func (b *backend) usable() bool {
	d := b.downUntil.Load()
	if d == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if now < d {
		return false
	}
	return b.downUntil.CompareAndSwap(d, now+int64(probeHold))
}

// markDown takes the instance out of rotation after a refused connection
// and closes its idle connections (they lead to the same dead process).
func (b *backend) markDown() {
	n := b.failures.Add(1)
	wait := downMin << min(n-1, 8)
	wait = min(wait, downMax)
	b.downUntil.Store(time.Now().Add(wait).UnixNano())
	b.closeIdle()
}

// markUp puts the instance back in rotation after a connection succeeded.
func (b *backend) markUp() {
	if b.downUntil.Load() != 0 {
		b.downUntil.Store(0)
		b.failures.Store(0)
	}
}

// down reports whether the instance is out of rotation now.
func (b *backend) down() bool {
	d := b.downUntil.Load()
	return d != 0 && time.Now().UnixNano() < d
}

// get returns an idle connection to the instance, or dials a new one; now
// is about the current time. A dial error means the request was not sent.
func (b *backend) get(now time.Time) (uc *upConn, reused bool, err error) {
	for {
		b.mu.Lock()
		n := len(b.idle)
		if n == 0 {
			b.mu.Unlock()
			break
		}
		uc = b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		b.pool.idleTotal.Add(-1)
		if now.Sub(uc.idleSince) > staleAfter && !peekAlive(uc.c) {
			uc.c.Close()
			continue
		}
		return uc, true, nil
	}
	c, err := b.pool.dialer.Dial("tcp", b.addr)
	if err != nil {
		return nil, false, err
	}
	c = fastConn(c)
	uc = &upConn{c: c, b: b}
	uc.rd.reset(c, make([]byte, upstreamBufSize))
	return uc, false, nil
}

// put returns a connection whose last response was read whole, ready for
// the next request; it is closed instead when the pool is full or the
// instance was forgotten.
func (b *backend) put(uc *upConn) {
	if uc.rd.r != uc.rd.w {
		uc.c.Close() // the instance sent more than its response said
		return
	}
	uc.rd.timeout = 0
	uc.idleSince = time.Now()
	p := b.pool
	if p.idleTotal.Add(1) > p.maxIdle {
		p.idleTotal.Add(-1)
		uc.c.Close()
		return
	}
	b.mu.Lock()
	if b.closed || len(b.idle) >= p.maxIdleHost {
		b.mu.Unlock()
		p.idleTotal.Add(-1)
		uc.c.Close()
		return
	}
	var old *upConn
	if len(b.idle) > 0 && uc.idleSince.Sub(b.idle[0].idleSince) > p.idleTimeout {
		// The oldest idle connection has not been used for too long.
		old = b.idle[0]
		copy(b.idle, b.idle[1:])
		b.idle[len(b.idle)-1] = nil
		b.idle = b.idle[:len(b.idle)-1]
	}
	b.idle = append(b.idle, uc)
	b.mu.Unlock()
	if old != nil {
		p.idleTotal.Add(-1)
		old.c.Close()
	}
}

// closeIdle closes every idle connection.
func (b *backend) closeIdle() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	for _, uc := range idle {
		b.pool.idleTotal.Add(-1)
		uc.c.Close()
	}
}

// forget closes the idle connections of an address the router no longer
// tracks; connections still in use are closed when they come back.
func (b *backend) forget() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.closeIdle()
}
