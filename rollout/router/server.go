package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the router's own HTTP/1.1 server: Serve accepts connections
// and forwards each request's bytes to an instance with as little work as
// the guarantees allow (see doc.go); Shutdown stops it gracefully.

// server is the state of Serve and Shutdown.
type server struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
}

// Connection states: a connection is idle while it waits for a request
// (no byte of it yet), active while it reads or serves one, tunnel once
// upgraded; closed when Shutdown or MaxConns closed it while idle.
const (
	stateIdle int32 = iota
	stateActive
	stateTunnel
	stateClosed
)

// clientBufSize is a client connection's read buffer; heads larger than it
// grow it, up to MaxHeaderBytes.
const clientBufSize = 4 << 10

// outBufSize is the initial capacity of a connection's buffer for the
// heads it writes (and small bodies merged with them).
const outBufSize = 8 << 10

// conn is one client connection served by Serve.
type conn struct {
	r     *Router
	c     net.Conn
	rd    reader
	out   []byte
	small []byte  // out's own buffer
	held  *[]byte // a larger one lent by heldBufs for this request
	q     reqHead
	x     exchange
	state atomic.Int32

	fwd     []byte // forwarding fields up to the host, per client address
	peer    string // the client's IP address ("" when it has none)
	trusted bool   // the client is a trusted proxy: its forwarding fields are kept
	hostBuf [hostBufSize]byte

	rdl, wdl time.Time // the read and write deadlines last set
	now      time.Time // when the last request ended (for the idle deadline)

	// unread is set when the client may still be sending bytes the router
	// will not read (a refused body): close gently so the response arrives.
	unread bool

	// What the response needs to know of the request once its head's
	// bytes may be gone.
	isHead, http10 bool

	partial    func()
	watch      func(uc *upConn) func() bool
	streamBody func(uc *upConn) error
	unblock    func()
	cont       func() error
	// The request being counted (versionStats.begin) and not yet ended,
	// from when; status is its response's, for countStatus.
	counting    *versionStats
	countStart  time.Time
	status      int
	countStatus func()

	body    int64 // request body bytes to stream; -1: chunked
	maxBody int64
	upSink  connSink // to the instance, for the body
	sink    connSink // to the client
}

// Serve accepts connections on ln and serves each on its own goroutine
// until Shutdown; it then returns http.ErrServerClosed. Other accept errors
// are returned after retrying temporary ones. It may be called for several
// listeners at once. Requests are routed on the current table, under the
// router's Limits.
func (r *Router) Serve(ln net.Listener) error {
	srv := &r.srv
	srv.mu.Lock()
	if srv.shutdown.Load() {
		srv.mu.Unlock()
		return http.ErrServerClosed
	}
	if srv.listeners == nil {
		srv.listeners = make(map[net.Listener]struct{})
		srv.conns = make(map[*conn]struct{})
	}
	srv.listeners[ln] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, ln)
		srv.mu.Unlock()
	}()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if srv.shutdown.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := r.newConn(nc)
		if !srv.add(c, r.limits.MaxConns) {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// add registers c, making room by closing an idle connection when there
// are max already; false when there is no room or the server shut down.
func (srv *server) add(c *conn, max int) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.shutdown.Load() {
		return false
	}
	if len(srv.conns) >= max {
		made := false
		for o := range srv.conns {
			if o.state.CompareAndSwap(stateIdle, stateClosed) {
				o.c.Close()
				delete(srv.conns, o)
				made = true
				break
			}
		}
		if !made {
			return false
		}
	}
	srv.conns[c] = struct{}{}
	return true
}

func (srv *server) remove(c *conn) {
	srv.mu.Lock()
	delete(srv.conns, c)
	srv.mu.Unlock()
}

// Shutdown stops Serve gracefully: it closes the listeners, closes idle
// connections, lets every request in flight finish (its connection closes
// after its response), closes upgraded connections, and returns nil once
// no connection is left; or, if ctx ends first, closes what is left and
// returns ctx's error. Idle connections to instances are closed too. Serve
// returns http.ErrServerClosed from then on.
func (r *Router) Shutdown(ctx context.Context) error {
	srv := &r.srv
	srv.mu.Lock()
	srv.shutdown.Store(true)
	for ln := range srv.listeners {
		ln.Close()
	}
	srv.mu.Unlock()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		srv.mu.Lock()
		for c := range srv.conns {
			if c.state.CompareAndSwap(stateIdle, stateClosed) || c.state.Load() == stateTunnel {
				c.c.Close()
			}
		}
		n := len(srv.conns)
		srv.mu.Unlock()
		if n == 0 {
			r.closeIdleUpstreams()
			return nil
		}
		select {
		case <-ctx.Done():
			srv.mu.Lock()
			for c := range srv.conns {
				c.c.Close()
			}
			srv.mu.Unlock()
			r.closeIdleUpstreams()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (r *Router) closeIdleUpstreams() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.backends {
		b.closeIdle()
	}
}

func (r *Router) newConn(nc net.Conn) *conn {
	nc = fastConn(nc)
	c := &conn{r: r, c: nc, out: make([]byte, 0, outBufSize)}
	c.small = c.out
	c.rd.reset(nc, make([]byte, clientBufSize))
	ip := remoteIP(nc.RemoteAddr())
	c.peer = ip
	c.trusted = r.trustedPeer(ip)
	var f []byte
	if ip != "" {
		f = append(f, "X-Forwarded-For: "...)
		f = append(f, ip...)
		f = append(f, "\r\nForwarded: for="...)
		if bytes.IndexByte([]byte(ip), ':') >= 0 {
			f = append(f, "\"["...)
			f = append(f, ip...)
			f = append(f, "]\""...)
		} else {
			f = append(f, ip...)
		}
		f = append(f, ";proto=http;host=\""...)
	} else {
		f = append(f, "Forwarded: proto=http;host=\""...)
	}
	c.fwd = f
	c.partial = c.onPartial
	c.watch = c.startWatch
	c.countStatus = func() { c.count(c.status) }
	c.streamBody = c.copyBody
	c.unblock = func() { c.c.SetReadDeadline(aLongTimeAgo) }
	c.cont = func() error {
		c.renewWrite(time.Now())
		_, err := c.c.Write(continue100)
		return err
	}
	return c
}

// startWatch watches the client while a slow instance works on its
// request (exchange.watch): a goroutine reads the connection into the
// read buffer (a pipelined request that comes meanwhile is kept for
// later), and when the client closes it or its connection fails, closes
// the instance connection uc, which cancels the request there. The
// function returned stops the watch and reports whether the client went
// away. Only called while nothing else reads the client (no body streams).
// (An epoll set of the router's own, the clients' sockets registered for
// EPOLLRDHUP while they wait, was measured in its place at 1,000
// connections and cost more CPU per request: two epoll_ctl calls weigh
// more than this goroutine and its deadlines.)
func (c *conn) startWatch(uc *upConn) func() bool {
	c.c.SetReadDeadline(time.Time{}) // the wait may outlast the head's deadline
	c.rdl = time.Time{}
	done := make(chan bool, 1)
	go func() {
		for {
			err := c.rd.fill()
			if err == nil {
				continue
			}
			// Stopped (a deadline in the past), or the buffer is full of
			// pipelined requests: nothing more to learn here.
			gone := !errors.Is(err, os.ErrDeadlineExceeded) && err != errHeadTooLarge
			if gone {
				uc.c.Close()
			}
			done <- gone
			return
		}
	}()
	return func() bool {
		c.c.SetReadDeadline(aLongTimeAgo)
		gone := <-done
		c.c.SetReadDeadline(time.Time{})
		return gone
	}
}

// onPartial runs when a request head is not complete after its first
// read: the connection is busy from then on, and the rest must come within
// ReadTimeout (slowloris clients are cut off).
func (c *conn) onPartial() {
	c.state.CompareAndSwap(stateIdle, stateActive)
	c.setReadDeadline(time.Now(), c.r.limits.ReadTimeout, true)
}

// setReadDeadline sets the read deadline to now+d. Unless exact, a deadline
// already between d/2 and d away is left as it is: waiting for the next
// request then costs no timer update.
func (c *conn) setReadDeadline(now time.Time, d time.Duration, exact bool) {
	if left := c.rdl.Sub(now); !exact && left >= d/2 && left <= d {
		return
	}
	c.rdl = now.Add(d)
	c.c.SetReadDeadline(c.rdl)
}

// renewWrite makes sure the next write to the client has at least half of
// WriteTimeout.
func (c *conn) renewWrite(now time.Time) {
	d := c.r.limits.WriteTimeout
	if c.wdl.Sub(now) >= d/2 {
		return
	}
	c.wdl = now.Add(d)
	c.c.SetWriteDeadline(c.wdl)
}

func (c *conn) serve() {
	r := c.r
	defer c.close()
	// A bug on one connection must not take every service down: the
	// connection is closed (so no byte of it can reach another request)
	// and the router goes on.
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("router connection panicked; closed it", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	c.setReadDeadline(time.Now(), r.limits.ReadTimeout, true)
	for {
		head, err := c.rd.readHead(r.limits.MaxHeaderBytes, c.partial)
		if err != nil {
			if c.state.Load() == stateClosed {
				return
			}
			switch err {
			case errHeadTooLarge:
				c.unread = true
				c.plain(outHeadTooLarge, nil, "", false)
			case errMalformed:
				c.unread = true
				c.plain(outMalformedRequest, nil, "", false)
			}
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) && c.state.Load() != stateActive {
			return // closed by Shutdown or to make room
		}
		if !c.serveRequest(head) || r.srv.shutdown.Load() {
			return
		}
		if !c.state.CompareAndSwap(stateActive, stateIdle) || r.srv.shutdown.Load() {
			return
		}
		c.setReadDeadline(c.now, r.limits.IdleTimeout, false)
		if c.rd.r == c.rd.w {
			// The client has only just got its response: let the other
			// connections run first rather than find nothing to read.
			runtime.Gosched()
		}
	}
}

// close ends the connection; when the client may still be sending, it
// stops writing first and reads (and drops) a little more, so that closing
// does not reset the connection before the client read the response.
func (c *conn) close() {
	c.r.srv.remove(c)
	if c.unread {
		if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			c.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			io.CopyN(io.Discard, c.c, 256<<10)
		}
	}
	c.c.Close()
}

// serveRequest serves one request whose head was read; it reports whether
// the connection may carry another.
func (c *conn) serveRequest(head []byte) bool {
	r := c.r
	q := &c.q
	c.isHead, c.http10 = false, false
	if err := q.parse(head); err != nil {
		c.rd.consume(len(head))
		c.unread = true
		switch err {
		case errUnsupported:
			return c.plain(outUnsupportedCoding, nil, "", false)
		case errExpectation:
			return c.plain(outExpectation, nil, "", false)
		}
		return c.plain(outMalformedRequest, nil, "", false)
	}
	c.isHead, c.http10 = q.isHead(), q.http10
	// Consumed once, here: the head's bytes stay in the buffer (q points
	// into them) until the next read, which only a body copy does.
	c.rd.consume(len(head))
	start := time.Now()
	c.now = start
	svc, ver, ok := r.parseHost(&c.hostBuf, q.host)
	if !ok {
		return c.refuse(outUnknownHost, nil, "")
	}
	t := r.table.Load()
	for {
		s := t.services[string(svc)]
		if s == nil {
			return c.refuse(outUnknownService, nil, "")
		}
		var v *versionRoute
		pin := false
		if ver != nil {
			if v = s.versions[string(ver)]; v == nil {
				return c.refuse(outUnknownVersion, nil, "")
			}
			if v.stopped {
				return c.refuse(outStopped, v, "")
			}
		} else {
			var name string
			v, name, pin = s.choose(bstr(q.query), c.cookie(s, head))
			if v == nil {
				if name == "" {
					return c.refuse(outNoVersion, nil, "")
				}
				return c.refuse(outNoInstance, nil, name)
			}
		}
		vs := v.stats
		vs.begin()
		c.counting, c.countStart = vs, start
		if s.maxBody >= 0 && q.contentLength > s.maxBody {
			return c.refuse(outBodyTooLarge, v, "")
		}
		c.maxBody = s.maxBody
		o, keep := c.forward(t, v, pin, head, start)
		c.endRequest()
		c.now = time.Now()
		if o == outReroute {
			c.counting = nil
			vs.cancel()
			t = r.table.Load()
			continue
		}
		c.count(0) // a request without a response; the others counted already
		return keep
	}
}

// count counts the response of the request being served, once: the
// responses a client can see are counted before it can see their end
// (before their last write), so that a client that got its response finds
// it in the metrics. status 0 counts a request without a response.
func (c *conn) count(status int) {
	if vs := c.counting; vs != nil {
		c.counting = nil
		vs.end(status, time.Since(c.countStart))
	}
}

// refuse answers a request the router does not forward. A body, if any,
// is skipped when it is already here, else left unread and the connection
// closes.
func (c *conn) refuse(o outcome, v *versionRoute, name string) bool {
	keep := !c.q.close
	if c.q.hasBody() {
		if c.q.contentLength > 0 && int64(len(c.rd.buffered())) >= c.q.contentLength {
			c.rd.consume(int(c.q.contentLength)) // small and already here: skip it
		} else {
			c.unread = true
			keep = false
		}
	}
	return c.plain(o, v, name, keep)
}

// cookie returns the value of the service's sticky cookie, "" when the
// service is not sticky or the client sent none.
func (c *conn) cookie(s *serviceRoute, head []byte) string {
	if !s.sticky {
		return ""
	}
	for i := range c.q.fields {
		f := &c.q.fields[i]
		if f.kind != hCookie {
			continue
		}
		if v, ok := cookieValue(head[f.vs:f.ve], s.cookie); ok {
			return bstr(v)
		}
	}
	return ""
}

// cookieValue finds name's value in a Cookie field ("a=1; b=2").
func cookieValue(field []byte, name string) ([]byte, bool) {
	for len(field) > 0 {
		var pair []byte
		if i := bytes.IndexByte(field, ';'); i >= 0 {
			pair, field = field[:i], field[i+1:]
		} else {
			pair, field = field, nil
		}
		pair = bytes.TrimLeft(pair, " ")
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			v := bytes.TrimRight(pair[len(name)+1:], " ")
			return bytes.Trim(v, `"`), true
		}
	}
	return nil, false
}

// plain writes a short text/plain response of the router's own, the answer
// (answers) to o. v or name names the version it concerns, if any; 503s
// say when to retry (except outStopped: a stopped version comes back only
// when asked).
func (c *conn) plain(o outcome, v *versionRoute, name string, keep bool) bool {
	if c.r.srv.shutdown.Load() {
		keep = false
	}
	status, msg := answers[o].status, answers[o].msg
	out := c.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(status)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	switch {
	case v != nil:
		out = append(out, v.versionLine...)
	case name != "":
		out = append(out, VersionHeader+": "...)
		out = append(out, name...)
		out = append(out, "\r\n"...)
	}
	if status == 503 && o != outStopped {
		out = append(out, "Retry-After: 1\r\n"...)
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len("sluice: ")+len(msg)+1), 10)
	if !keep {
		out = append(out, "\r\nConnection: close"...)
	} else if c.http10 {
		out = append(out, "\r\nConnection: keep-alive"...)
	}
	out = append(out, "\r\n\r\n"...)
	if !c.isHead {
		out = append(out, "sluice: "...)
		out = append(out, msg...)
		out = append(out, '\n')
	}
	c.count(status)
	c.renewWrite(time.Now())
	_, err := c.c.Write(out)
	c.out = out[:0]
	return keep && err == nil
}

// forward sends the request to an instance of v and its response to the
// client. It returns outResponse when the client got the instance's
// response (or its upgrade's tunnel ran), outReroute when v left the table
// before anything was sent, outClientGone when there is no one to answer,
// or the failure the router answered with itself; and whether the
// connection may carry another request. Every response is counted.
func (c *conn) forward(t *table, v *versionRoute, pin bool, head []byte, start time.Time) (outcome, bool) {
	x := &c.x
	if !c.prepare(t, v, head, start) {
		return outClientGone, false // the client went away or stalled in its body
	}
	switch o := x.send(); o {
	case outResponse:
	case outReroute, outClientGone:
		return o, false
	default:
		return o, c.answerFailure(o, v)
	}
	p := &x.resp
	// Interim responses (103 Early Hints) go to HTTP/1.1 clients as they come.
	for p.status < 200 && p.status != 101 {
		if !c.http10 && c.writeHead(p, nil, false) != nil {
			x.endBody()
			x.release(false)
			return outClientGone, false
		}
		if o := x.readHead(); o != outResponse {
			x.endBody()
			x.release(false)
			return o, c.plain(o, v, "", false)
		}
	}
	if p.status == 101 {
		return c.upgrade(v)
	}
	return outResponse, c.respond(v, pin, start)
}

// prepare makes c.x the exchange for the request: the head for the
// instance, and a small body read whole (holdBody) or the streaming of a
// larger one. false when the client went away or stalled in its body.
func (c *conn) prepare(t *table, v *versionRoute, head []byte, start time.Time) bool {
	q := &c.q
	out := c.buildRequest(head)
	// head may be overwritten from here on (the body's reads reuse the buffer).
	x := &c.x
	fields := x.resp.fields[:0] // keep the capacity across requests
	*x = exchange{r: c.r, t: t, v: v, idempotent: q.idempotent(), now: start}
	x.resp.fields = fields
	if q.hasBody() {
		if !q.chunked && (!q.expect || int64(len(c.rd.buffered())) >= q.contentLength) && q.contentLength <= maxHeldBody {
			// A small body, or one already here: send it with the head, in
			// one write, without a goroutine (and so that an idempotent
			// request can be sent again).
			var err error
			if out, err = c.holdBody(out, q.contentLength); err != nil {
				c.out = out[:0]
				c.unread = true
				return false
			}
		} else {
			if q.expect && !c.http10 {
				x.cont = c.cont
			}
			c.body = q.contentLength
			if q.chunked {
				c.body = -1
			}
			x.stream, x.unblock = c.streamBody, c.unblock
		}
	}
	x.out = out
	x.watch = c.watch
	c.out = out[:0]
	return true
}

// answerFailure answers o, a failure of send's, with the router's own
// response; it reports whether the connection may carry another request.
func (c *conn) answerFailure(o outcome, v *versionRoute) bool {
	x := &c.x
	keep := !c.q.close
	if x.stream != nil && (!x.started || x.bodyErr != nil) {
		keep, c.unread = false, true // the body was not read whole
	}
	switch o {
	case outBodyTooLarge:
		c.unread = true
	case outMalformedBody:
		c.unread, keep = true, false
	}
	return c.plain(o, v, "", keep)
}

// writeHead writes a response head of the instance's (p) to the client:
// its status line and fields, then extra; upgrade keeps the fields of a
// 101's switch.
func (c *conn) writeHead(p *respHead, extra []byte, upgrade bool) error {
	out := c.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = append(out, p.line[9:]...)
	out = append(out, "\r\n"...)
	out = c.appendFields(out, p, upgrade)
	out = append(out, extra...)
	out = append(out, "\r\n"...)
	c.renewWrite(time.Now())
	_, err := c.c.Write(out)
	c.out = out[:0]
	return err
}

// upgrade passes an instance's 101 on to the client and joins the two
// connections (tunnel) until both sides end; the connection is not reused.
func (c *conn) upgrade(v *versionRoute) (outcome, bool) {
	x := &c.x
	if !c.q.upgrade {
		x.endBody()
		x.release(false)
		return outSwitchedUnasked, c.plain(outSwitchedUnasked, v, "", false)
	}
	// The request is over; the tunnel counts in flight on the instance
	// (for Drain) until it closes.
	c.count(101)
	if c.writeHead(&x.resp, v.versionLine, true) != nil {
		x.release(false)
		return outTunnel, false
	}
	x.endBody()
	c.state.Store(stateTunnel)
	if !c.r.srv.shutdown.Load() {
		tunnel(c.c, &c.rd, x.uc.c, &x.uc.rd, c.r.limits.IdleTimeout)
	}
	x.release(false)
	return outTunnel, false
}

// Response body framings, from the instance to the client.
const (
	bodyNone = iota
	bodyFixed
	bodyChunked
	bodyDecode // chunked from the instance, plain to an HTTP/1.0 client
	bodyEOF
)

// respond passes the instance's final response on to the client: its head
// (with the version, and the sticky cookie when pin) and its body; it
// reports whether the connection may carry another request.
func (c *conn) respond(v *versionRoute, pin bool, start time.Time) bool {
	r := c.r
	x := &c.x
	p := &x.resp
	out := c.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = append(out, p.line[9:]...)
	out = append(out, "\r\n"...)
	out = c.appendFields(out, p, false)
	out = append(out, v.versionLine...)
	if pin {
		out = append(out, v.cookieLine...)
	}
	mode := bodyEOF
	closeAfter := false
	switch {
	case p.bodyless(c.isHead):
		mode = bodyNone
	case p.chunked && !c.http10:
		mode = bodyChunked
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case p.chunked:
		mode, closeAfter = bodyDecode, true
	case p.contentLength >= 0:
		mode = bodyFixed
	default:
		closeAfter = true
	}
	// The body is still streaming if the instance answered early; the
	// connection cannot be reused unless it finished.
	keep := !x.bodyUnfinished() && !c.q.close && !closeAfter && !r.srv.shutdown.Load()
	if !keep {
		out = append(out, "Connection: close\r\n"...)
	} else if c.http10 {
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	out = append(out, "\r\n"...)
	c.out = out[:0]
	err := c.copyResponse(mode, out, start)
	berr := x.endBody()
	x.release(err == nil && mode != bodyEOF && x.reusable(false))
	c.count(p.status) // if the copy failed before its last write
	if err != nil {
		var se *sinkError
		if !errors.As(err, &se) {
			r.log.Warn("instance broke off a response", "version", v.name, "err", err)
		}
		return false
	}
	if berr != nil {
		keep = false
		c.unread = true
	}
	return keep
}

// copyResponse writes the response head out and copies the body in mode
// from the instance to the client. A response is counted before its last
// write.
func (c *conn) copyResponse(mode int, out []byte, start time.Time) error {
	x := &c.x
	p := &x.resp
	src := &x.uc.rd
	dst := &c.sink
	dst.c, dst.timeout, dst.beforeFinal = c.c, 0, nil
	if mode == bodyFixed || mode == bodyChunked {
		// The last write ends the response where the client can see it.
		c.status, dst.beforeFinal = p.status, c.countStatus
	}
	c.renewWrite(start)
	var err error
	switch mode {
	case bodyNone:
		c.count(p.status)
		_, err = c.c.Write(out)
	case bodyFixed:
		if int64(len(src.buffered())) < p.contentLength {
			x.uc.c.SetReadDeadline(time.Time{}) // the body may take its time
			dst.timeout = c.r.limits.WriteTimeout
		}
		err = copyFixed(dst, src, p.contentLength, out)
	case bodyChunked, bodyDecode:
		x.uc.c.SetReadDeadline(time.Time{})
		dst.timeout = c.r.limits.WriteTimeout
		err = copyChunked(dst, src, out, mode == bodyDecode, -1)
	default:
		x.uc.c.SetReadDeadline(time.Time{})
		dst.timeout = c.r.limits.WriteTimeout
		err = copyToEOF(dst, src, out)
	}
	if dst.timeout > 0 {
		c.wdl = time.Time{} // the sink moved the deadline
	}
	return err
}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// buildRequest writes the head the instance gets into c.out: the request
// line in origin form and HTTP/1.1, the client's fields less the hop-by-hop
// and forwarding ones, then the router's: framing, X-Request-Id when the
// client sent none, and the forwarding fields (X-Forwarded-For/-Host/
// -Proto and Forwarded describe the client the router saw; values a client
// sent for them are dropped, the router being the edge).
func (c *conn) buildRequest(head []byte) []byte {
	q := &c.q
	out := c.out[:0]
	out = append(out, q.method...)
	out = append(out, ' ')
	out = append(out, q.target...)
	out = append(out, " HTTP/1.1\r\n"...)
	for i := range q.fields {
		f := &q.fields[i]
		switch f.kind {
		case hOther:
			if q.connTokens > 0 && q.dropByConnection(head, f) {
				continue
			}
		case hHost:
			if q.absHost != nil {
				continue
			}
		case hContentLength, hCookie, hTrailer:
		case hUpgrade:
			if !q.upgrade {
				continue
			}
		case hXRequestID:
			if q.requestID == nil {
				continue
			}
		default:
			continue
		}
		out = append(out, head[f.ns:f.le]...)
	}
	if q.absHost != nil {
		out = append(out, "Host: "...)
		out = append(out, q.host...)
		out = append(out, "\r\n"...)
	}
	if q.chunked {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if q.upgrade {
		out = append(out, "Connection: Upgrade\r\n"...)
	}
	if q.requestID == nil {
		out = append(out, RequestIDHeader+": "...)
		out = c.r.appendRequestID(out)
		out = append(out, "\r\n"...)
	}
	if c.trusted {
		return c.appendTrustedForwarding(out, head)
	}
	out = append(out, c.fwd...)
	out = append(out, q.host...)
	out = append(out, "\"\r\nX-Forwarded-Host: "...)
	out = append(out, q.host...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	return out
}

// appendTrustedForwarding appends the forwarding fields and the end of the
// head for a client that is a trusted proxy (Router.WithTrustedProxies):
// its X-Forwarded-For and Forwarded lists are kept and the proxy's address
// appended to them; its X-Forwarded-Host and X-Forwarded-Proto, when it
// sent them, are kept instead of the router's (they describe the request
// as the proxy got it).
func (c *conn) appendTrustedForwarding(out, head []byte) []byte {
	q := &c.q
	var fhost, fproto []byte
	out = append(out, "X-Forwarded-For: "...)
	out = appendList(out, head, q.fields, hXForwardedFor)
	out = append(out, c.peer...)
	out = append(out, "\r\nForwarded: "...)
	out = appendList(out, head, q.fields, hForwarded)
	out = append(out, c.fwd[len("X-Forwarded-For: ")+len(c.peer)+len("\r\nForwarded: "):]...)
	out = append(out, q.host...)
	out = append(out, "\"\r\n"...)
	for i := range q.fields {
		f := &q.fields[i]
		switch {
		case f.kind == hXForwardedHost && fhost == nil:
			fhost = head[f.vs:f.ve]
		case f.kind == hXForwardedProto && fproto == nil:
			fproto = head[f.vs:f.ve]
		}
	}
	if fhost == nil {
		fhost = q.host
	}
	if fproto == nil {
		fproto = []byte("http")
	}
	out = append(out, "X-Forwarded-Host: "...)
	out = append(out, fhost...)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, fproto...)
	return append(out, "\r\n\r\n"...)
}

// appendList appends the values of every field of the kind, each followed
// by ", " (a list the caller then ends with its own element).
func appendList(out, head []byte, fields []field, kind hkind) []byte {
	for i := range fields {
		if f := &fields[i]; f.kind == kind && f.ve > f.vs {
			out = append(out, head[f.vs:f.ve]...)
			out = append(out, ", "...)
		}
	}
	return out
}

// appendFields appends the response fields the client gets: all but the
// hop-by-hop ones and X-Sluice-Version (the router sets its own). For a
// 101 the Upgrade and Connection fields stay: they are the switch.
func (c *conn) appendFields(out []byte, p *respHead, upgrade bool) []byte {
	for i := range p.fields {
		f := &p.fields[i]
		switch f.kind {
		case hOther:
			if p.connTokens > 0 && p.dropByConnection(p.head, f) {
				continue
			}
		case hContentLength, hHost, hCookie, hXRequestID, hExpect, hTrailer,
			hXForwardedFor, hXForwardedHost, hXForwardedProto, hForwarded, hXRealIP:
		case hUpgrade, hConnection:
			if !upgrade {
				continue
			}
		default:
			continue
		}
		out = append(out, p.head[f.ns:f.le]...)
	}
	return out
}

// maxHeldBody is the largest request body (declared with Content-Length)
// that is read whole before the request goes to an instance, and sent with
// its head in one write; larger and chunked bodies stream.
const maxHeldBody = 64 << 10

// heldBufs are buffers for a head with a held body, lent to a connection
// for one request.
var heldBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, maxHeldBody+outBufSize)
	return &b
}}

// holdBody appends the request body, n bytes, to out: what is buffered,
// then what it reads, straight into out; each read may wait ReadTimeout
// at most (as a streamed body's). It may move out to a larger buffer lent
// for the request, which endRequest gives back. A client that goes away or
// pauses too long is an error (io.ErrUnexpectedEOF, a deadline error).
func (c *conn) holdBody(out []byte, n int64) ([]byte, error) {
	if need := len(out) + int(n); need > cap(out) {
		if c.held == nil {
			c.held = heldBufs.Get().(*[]byte)
		}
		nb := (*c.held)[:0]
		if cap(nb) < need {
			nb = make([]byte, 0, need) // a head near its limit
		}
		out = append(nb, out...)
		*c.held = out[:0]
	}
	b := c.rd.buffered()
	k := int(min(int64(len(b)), n))
	out = append(out, b[:k]...)
	c.rd.consume(k)
	end := len(out) + int(n) - k
	if len(out) < end {
		c.rdl = time.Time{} // the reads move the deadline
	}
	for len(out) < end {
		// As a streamed body, a held one may pause ReadTimeout at most.
		c.c.SetReadDeadline(time.Now().Add(c.r.limits.ReadTimeout))
		m, err := c.c.Read(out[len(out):end])
		out = out[:len(out)+m]
		if err != nil && len(out) < end {
			return out, unexpected(err)
		}
	}
	return out, nil
}

// endRequest gives back the buffer holdBody lent, if any.
func (c *conn) endRequest() {
	if c.held != nil {
		*c.held = (*c.held)[:0]
		heldBufs.Put(c.held)
		c.held = nil
		c.out = c.small[:0]
	}
}

// copyBody streams the rest of the request body to the instance; it runs
// on its own goroutine (see exchange.stream). On the client's failure it
// closes the instance connection, so that the request there is aborted.
func (c *conn) copyBody(uc *upConn) error {
	c.rd.timeout = c.r.limits.ReadTimeout
	defer func() {
		c.rd.timeout = 0
		c.rdl = time.Time{} // the reads moved the deadline
	}()
	c.upSink = connSink{c: uc.c, timeout: c.r.limits.UpstreamTimeout}
	defer uc.c.SetWriteDeadline(time.Time{}) // the head of the next request must not inherit it
	var err error
	if c.body < 0 {
		err = copyChunked(&c.upSink, &c.rd, nil, false, c.maxBody)
	} else {
		err = copyFixed(&c.upSink, &c.rd, c.body, nil)
	}
	if err == nil {
		return nil
	}
	var se *sinkError
	if errors.As(err, &se) {
		return &bodyError{side: sideInstance, err: err}
	}
	uc.c.Close()
	return &bodyError{side: sideClient, err: err}
}
