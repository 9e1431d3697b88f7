package router

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"time"
)

// This file is the request path once a request has a version: picking a live instance, sending the request
// head (and a body already at hand) over a pooled connection, retrying
// what is safe to retry, and reading the response head.

// maxResponseHead bounds an instance's response head.
const maxResponseHead = 64 << 10

// bodyGrace is how long a finished response waits for the request body's
// copier to finish before cutting it off (the instance answered without
// reading the whole body).
const bodyGrace = 20 * time.Millisecond

// aLongTimeAgo is a deadline that has passed: setting it unblocks a read or
// a write at once.
var aLongTimeAgo = time.Unix(1, 0)

// exchange is one request on its way to an instance of a version.
type exchange struct {
	r *Router
	t *table        // the table the request was routed on
	v *versionRoute // the version chosen

	// out is the request head for the instance, with the whole body when
	// it was at hand.
	out []byte
	// idempotent requests are sent again, to another instance if there is
	// one, when a connection fails before the response begins.
	idempotent bool
	// stream, when set, copies the rest of the request body to the
	// instance; it runs on its own goroutine from the moment the head is
	// written, so that an instance may answer while the body is still
	// coming (and a request with a streamed body is never sent twice).
	// unblock makes it give up (it sets a past read deadline on the
	// client's side).
	stream  func(uc *upConn) error
	unblock func()
	// cont, when set, tells the client to send its body (100 Continue)
	// once the head reached an instance.
	cont func() error

	// started is set once stream runs.
	started bool

	// now is about when the request started; send's first attempt times
	// from it.
	now time.Time

	// watch, when set, starts watching the client while a slow instance
	// works on a request without a streamed body; the function it returns
	// stops the watch and reports whether the client went away (the watch
	// then closed uc's connection).
	watch func(uc *upConn) (stop func() (gone bool))

	// failed says why the last try failed, for the router's 502.
	failed outcome

	// Set by send.
	b        *backend
	uc       *upConn
	resp     respHead
	bodyDone chan error
	bodyErr  error
}

// bodyError is a failure of the request body's copy, on the client's side
// (side == sideClient: the client went away or paused too long, or the body
// was too large) or on the instance's.
type bodyError struct {
	side int
	err  error
}

const (
	sideClient = iota
	sideInstance
)

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// sinkError marks an error from a sink's write, so that a copy's caller
// knows which side failed.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// send picks an instance of x.v, sends the request and reads the response
// head into x.resp. It returns outResponse when there is a response (x.uc
// is then the connection, counted in flight on x.b), or what the router
// answers instead: how the instances failed (a 502 or 504 outcome),
// outNoInstance when none is live, outBodyTooLarge or outMalformedBody for
// a streamed body; outClientGone when the client went away (nothing to
// answer), and outReroute when the version left the table before anything
// was sent.
//
// Retries: a request goes to another instance when the one picked refused
// the connection (nothing was sent), whatever its method. An idempotent
// request without a streamed body whose connection failed before any byte
// of a response is sent again, to an instance it has not tried yet: at
// most once per instance, so with one instance that drops it the instance
// sees it once. The one exception is a pooled keep-alive connection the
// instance had closed: the request is sent again once, on a new
// connection, to the same instance.
func (x *exchange) send() outcome {
	r := x.r
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	staleRetried := false
	for {
		b := x.v.pick(tried)
		if b == nil {
			if x.failed != outResponse {
				return x.failed // every instance tried failed: say why
			}
			return outNoInstance
		}
		b.inflight.Add(1)
		if t := r.table.Load(); t != x.t && t.addrs[b.addr] != b {
			// An Update removed the instance and a Drain may already have
			// seen it idle: do not send. Route on the new table.
			b.inflight.Add(-1)
			x.t = t
			if x.v = t.current(x.v); x.v == nil {
				return outReroute
			}
			continue
		}
		now := x.now
		if now.IsZero() {
			now = time.Now()
		}
		x.now = time.Time{} // a retry times from its own start
		uc, reused, err := b.get(now)
		if err != nil {
			b.inflight.Add(-1)
			b.markDown()
			tried = append(tried, b)
			r.log.Warn("instance refused a connection; out of rotation", "version", x.v.name, "addr", b.addr, "err", err)
			continue // nothing was sent: any request may go elsewhere
		}
		if !reused {
			b.markUp()
		}
		// again says whether a failure on this connection may be retried
		// on the same instance (a stale pooled connection, once).
		again := reused && !staleRetried
		// Only reads wait on the instance: the head fits its empty
		// receive buffer, and a streamed body sets its own write deadlines.
		deadline := now.Add(r.limits.UpstreamTimeout)
		watch := x.watch != nil && x.stream == nil && x.cont == nil
		if first := time.Now().Add(watchAfter); watch && first.Before(deadline) {
			uc.c.SetReadDeadline(first)
		} else {
			uc.c.SetReadDeadline(deadline)
			watch = false
		}
		if _, err := uc.c.Write(x.out); err != nil {
			uc.c.Close()
			b.inflight.Add(-1)
			if again {
				staleRetried = true
				continue // a stale keep-alive connection: the instance got nothing usable
			}
			tried = append(tried, b)
			x.failed = outWriteFailed
			if x.idempotent {
				continue
			}
			r.log.Warn("write to instance failed", "version", x.v.name, "addr", b.addr, "err", err)
			return outWriteFailed
		}
		x.b, x.uc = b, uc
		if x.cont != nil {
			if err := x.cont(); err != nil {
				x.release(false)
				return outClientGone
			}
			x.cont = nil
		}
		if x.stream != nil {
			x.started = true
			done, stream := make(chan error, 1), x.stream
			x.bodyDone = done
			go func() { done <- stream(uc) }()
		}
		runtime.Gosched() // the instance needs time to answer: let other connections run
		o := x.awaitHead(deadline, watch)
		if o == outResponse {
			return o
		}
		uc.c.Close()
		x.b, x.uc = nil, nil
		b.inflight.Add(-1)
		if o == outClientGone {
			r.log.Info("client went away while the instance worked; request cancelled", "version", x.v.name, "addr", b.addr)
			return o
		}
		if o.retryable() {
			if x.stream == nil && x.idempotent {
				if again {
					staleRetried = true
				} else {
					tried = append(tried, b)
				}
				r.log.Warn("instance dropped a request; trying another", "version", x.v.name, "addr", b.addr, "cause", answers[o].msg)
				continue // the instance closed or died before answering
			}
		}
		if x.stream != nil {
			if berr := x.endBody(); berr != nil {
				var be *bodyError
				if errors.As(berr, &be) && be.side == sideClient {
					switch {
					case errors.Is(berr, errBodyTooLarge):
						return outBodyTooLarge
					case errors.Is(berr, errMalformed):
						return outMalformedBody
					}
					return outClientGone
				}
			}
		}
		if o.status() == 502 {
			r.log.Warn("instance did not answer", "version", x.v.name, "addr", b.addr, "cause", answers[o].msg)
		}
		return o
	}
}

// watchAfter is how long the router waits for a response head before it
// starts watching the client's connection too (so that a client that goes
// away cancels the request). Most responses come sooner, and then the
// watch costs nothing.
const watchAfter = 20 * time.Millisecond

// awaitHead reads the response head (see readHead). With watch, the read
// deadline set is watchAfter away: when it passes, the client's connection
// is watched (x.watch) while the wait goes on until deadline, and a client
// that goes away meanwhile ends it with outClientGone (the watch closed
// the instance connection, which cancels the request there).
func (x *exchange) awaitHead(deadline time.Time, watch bool) outcome {
	st := x.readHead()
	if !watch || st != outTimeout || !time.Now().Before(deadline) {
		return st
	}
	uc := x.uc
	uc.c.SetReadDeadline(deadline)
	stop := x.watch(uc)
	st = x.readHead()
	if stop() {
		return outClientGone
	}
	return st
}

// readHead reads the next response head from x.uc into x.resp:
// outResponse on success, else what failed (outClosedSilently or
// outResetSilently when the connection failed before any byte of it,
// outTimeout when it did not come in time), also kept in x.failed.
func (x *exchange) readHead() outcome {
	rd := &x.uc.rd
	before := rd.w - rd.r
	head, err := rd.readHead(maxResponseHead, nil)
	if err != nil {
		nothing := before == 0 && rd.w == rd.r
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			x.failed = outTimeout
		case err == errHeadTooLarge:
			x.failed = outRespHeadTooLarge
		case err == errMalformed:
			x.failed = outMalformedResp
		case nothing && err == io.EOF:
			x.failed = outClosedSilently
		case nothing && isReset(err):
			x.failed = outResetSilently
		case err == io.ErrUnexpectedEOF || isReset(err):
			x.failed = outCutHead
		default:
			x.failed = outNoAnswer
		}
		return x.failed
	}
	if err := x.resp.parse(head); err != nil {
		x.failed = outMalformedResp
		return x.failed
	}
	rd.consume(len(head))
	return outResponse
}

// isReset reports whether err is a connection reset or a broken pipe.
func isReset(err error) bool {
	var ne *net.OpError
	if !errors.As(err, &ne) {
		return false
	}
	var se *os.SyscallError
	if errors.As(ne.Err, &se) {
		return true // ECONNRESET, EPIPE and kin: the peer is gone
	}
	return false
}

// endBody waits for the request body's copier, if any, and returns its
// error. When it is still running after a short grace (the instance
// answered without reading the whole body, or the client is slow), it is
// cut off, and the connections cannot be reused.
func (x *exchange) endBody() error {
	if x.bodyDone == nil {
		return x.bodyErr
	}
	done := x.bodyDone
	x.bodyDone = nil
	select {
	case x.bodyErr = <-done:
		return x.bodyErr
	default:
	}
	t := time.NewTimer(bodyGrace)
	select {
	case x.bodyErr = <-done:
		t.Stop()
		return x.bodyErr
	case <-t.C:
	}
	if x.unblock != nil {
		x.unblock()
	}
	if x.uc != nil {
		x.uc.c.SetWriteDeadline(aLongTimeAgo)
	}
	x.bodyErr = <-done
	if x.bodyErr == nil {
		x.bodyErr = errBodyCut
	}
	return x.bodyErr
}

var errBodyCut = errors.New("request body cut off")

// bodyUnfinished reports whether a streamed request body is still being
// copied or failed, without waiting for it.
func (x *exchange) bodyUnfinished() bool {
	if x.stream == nil {
		return false
	}
	select {
	case x.bodyErr = <-x.bodyDone:
		x.bodyDone = nil
	default:
	}
	return x.bodyDone != nil || x.bodyErr != nil
}

// release ends the exchange with the instance: the connection goes back to
// the pool when reuse is true, and the request stops counting in flight.
func (x *exchange) release(reuse bool) {
	if x.uc == nil {
		return
	}
	if reuse {
		x.b.put(x.uc)
	} else {
		x.uc.c.Close()
	}
	x.b.inflight.Add(-1)
	x.uc, x.b = nil, nil
}

// reusable reports whether the instance connection can carry another
// request after this response: both messages were read whole and neither
// side asked to close.
func (x *exchange) reusable(eof bool) bool {
	return !eof && !x.resp.close && x.bodyErr == nil
}

// tunnel joins a client and an instance after a 101 Switching Protocols,
// bytes already read on either side included, until both directions end.
// When one side stops sending, the other is half-closed and has idle time
// to finish.
func tunnel(client net.Conn, crd *reader, inst net.Conn, ird *reader, idle time.Duration) {
	client.SetDeadline(time.Time{})
	inst.SetDeadline(time.Time{})
	crd.timeout, ird.timeout = 0, 0
	done := make(chan struct{})
	go func() {
		pipe(inst, crd) // client to instance
		closeWrite(inst)
		inst.SetReadDeadline(time.Now().Add(idle))
		close(done)
	}()
	pipe(client, ird) // instance to client
	closeWrite(client)
	client.SetReadDeadline(time.Now().Add(idle))
	<-done
}

// pipe copies what src has buffered and then everything it reads to dst.
func pipe(dst net.Conn, src *reader) {
	if b := src.buffered(); len(b) > 0 {
		if _, err := dst.Write(b); err != nil {
			return
		}
		src.consume(len(b))
	}
	io.Copy(unwrap(dst), unwrap(src.conn))
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
