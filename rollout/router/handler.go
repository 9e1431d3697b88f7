package router

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// This file is the http.Handler face of the router, for servers that are
// not Serve (tests, httptest, an embedding program). It routes with the
// same table and decision, and talks to instances through the same pool,
// retries and limits as Serve; only the client's side is net/http's.

// ServeHTTP routes one request by its Host, as Serve does. It takes no
// lock: it reads the current table once and counts itself in flight on the
// chosen instance, routing again on a newer table if the instance left it
// meanwhile. Interim (1xx) responses other than 101 and request trailers
// are not passed on.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	var hb [hostBufSize]byte
	svc, ver, ok := r.parseHost(&hb, []byte(req.Host))
	if !ok {
		httpPlain(w, http.StatusNotFound, "", "unknown host")
		return
	}
	t := r.table.Load()
	for {
		s := t.services[string(svc)]
		if s == nil {
			httpPlain(w, http.StatusNotFound, "", "unknown service")
			return
		}
		var v *versionRoute
		pin := false
		if ver != nil {
			if v = s.versions[string(ver)]; v == nil {
				httpPlain(w, http.StatusNotFound, "", "unknown version")
				return
			}
			if v.stopped {
				httpPlain(w, http.StatusServiceUnavailable, v.name, msgStopped)
				return
			}
		} else {
			pinned := ""
			if s.sticky {
				if ck, err := req.Cookie(s.cookie); err == nil {
					pinned = ck.Value
				}
			}
			var name string
			v, name, pin = s.choose(req.URL.RawQuery, pinned)
			if v == nil {
				if name == "" {
					httpPlain(w, http.StatusServiceUnavailable, "", "no version of this service serves traffic yet")
				} else {
					httpPlain(w, http.StatusServiceUnavailable, name, "no instance of this version is running")
				}
				return
			}
		}
		vs := v.stats
		vs.begin()
		if s.maxBody >= 0 && req.ContentLength > s.maxBody {
			vs.end(http.StatusRequestEntityTooLarge, time.Since(start))
			httpPlain(w, http.StatusRequestEntityTooLarge, v.name, "request body too large")
			return
		}
		// A response is counted once, before the client can see its end
		// (its last write), so that a client that got it finds it counted.
		counted := false
		count := func(status int) {
			if !counted {
				counted = true
				vs.end(status, time.Since(start))
			}
		}
		status := r.forwardHTTP(w, req, t, v, s.maxBody, pin, start, count)
		if status == errReroute {
			vs.cancel()
			t = r.table.Load()
			continue
		}
		count(status)
		return
	}
}

// forwardHTTP is conn.forward for a net/http request.
// Responses the router writes itself are counted (count) after forwardHTTP
// returns: net/http sends them when the handler returns.
func (r *Router) forwardHTTP(w http.ResponseWriter, req *http.Request, t *table, v *versionRoute, maxBody int64, pin bool, start time.Time, count func(status int)) int {
	upgrade := isUpgrade(req.Header)
	x := &exchange{r: r, t: t, v: v, idempotent: idempotentMethod(req.Method), now: start}
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
	x.out = r.httpRequestHead(req, hasBody, upgrade)
	x.watch = func(uc *upConn) func() bool {
		// net/http cancels the request's context when the client goes.
		stop := context.AfterFunc(req.Context(), func() { uc.c.Close() })
		return func() bool { return !stop() } // false: the close ran, or runs
	}
	if hasBody {
		x.idempotent = false // the body cannot be read twice
		rc := http.NewResponseController(w)
		// The instance may answer before the body is all sent: let the
		// body keep streaming while the response is written.
		rc.EnableFullDuplex()
		x.unblock = func() { rc.SetReadDeadline(aLongTimeAgo) }
		x.stream = func(uc *upConn) error {
			rc.SetReadDeadline(time.Now().Add(r.limits.ReadTimeout))
			return httpCopyBody(uc, req, r.limits.UpstreamTimeout, maxBody)
		}
	}
	status := x.send()
	if status != 0 {
		switch status {
		case errReroute, -1:
			return status
		case http.StatusServiceUnavailable:
			httpPlain(w, status, v.name, "no instance of this version is running")
		case http.StatusRequestEntityTooLarge:
			httpPlain(w, status, v.name, "request body too large")
		default:
			msg := x.cause
			if msg == "" {
				msg = "the instance did not answer"
			}
			httpPlain(w, status, v.name, msg)
		}
		return status
	}
	p := &x.resp
	for p.status < 200 && p.status != 101 {
		if st := x.readHead(); st != 0 {
			x.endBody()
			x.release(false)
			if st == errRetry {
				st = http.StatusBadGateway
			}
			httpPlain(w, st, v.name, x.cause)
			return st
		}
	}
	if p.status == 101 {
		return r.upgradeHTTP(w, x, upgrade, count)
	}

	h := w.Header()
	for i := range p.fields {
		f := &p.fields[i]
		switch f.kind {
		case hOther, hCookie, hXRequestID, hHost, hExpect, hTrailer,
			hXForwardedFor, hXForwardedHost, hXForwardedProto, hForwarded, hXRealIP:
			if p.connTokens > 0 && p.dropByConnection(p.head, f) {
				continue
			}
		default:
			continue // hop-by-hop, framing (net/http frames), X-Sluice-Version
		}
		k := textproto.CanonicalMIMEHeaderKey(string(p.head[f.ns:f.ne]))
		h[k] = append(h[k], string(p.head[f.vs:f.ve]))
	}
	h.Set(VersionHeader, v.name)
	if pin {
		h.Add("Set-Cookie", strings.TrimSuffix(strings.TrimPrefix(string(v.cookieLine), "Set-Cookie: "), "\r\n"))
	}
	bodyless := p.bodyless(req.Method == http.MethodHead)
	if p.contentLength >= 0 && !p.chunked {
		h.Set("Content-Length", strconv.FormatInt(p.contentLength, 10))
	}
	w.WriteHeader(p.status)

	src := &x.uc.rd
	dst := &flushSink{w: w, beforeFinal: func() { count(p.status) }}
	dst.f, _ = w.(http.Flusher)
	x.uc.c.SetReadDeadline(time.Time{})
	var err error
	eof := false
	switch {
	case bodyless:
	case p.chunked:
		err = copyChunked(dst, src, nil, true, -1)
	case p.contentLength >= 0:
		err = copyFixed(dst, src, p.contentLength, nil)
	default:
		eof = true
		err = copyToEOF(dst, src, nil)
	}
	x.endBody()
	x.release(err == nil && x.reusable(eof))
	if err != nil {
		var se *sinkError
		if !errors.As(err, &se) {
			r.log.Warn("instance broke off a response", "version", v.name, "err", err)
		}
		panic(http.ErrAbortHandler) // the client must not take a cut body for a whole one
	}
	return p.status
}

// upgradeHTTP passes a 101 on and joins the hijacked client connection
// with the instance's.
func (r *Router) upgradeHTTP(w http.ResponseWriter, x *exchange, upgrade bool, count func(int)) int {
	v := x.v
	x.endBody()
	if !upgrade {
		x.release(false)
		httpPlain(w, http.StatusBadGateway, v.name, "the instance switched protocols unasked")
		return http.StatusBadGateway
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		x.release(false)
		httpPlain(w, http.StatusBadGateway, v.name, "cannot switch protocols here")
		return http.StatusBadGateway
	}
	defer nc.Close()
	p := &x.resp
	out := append([]byte("HTTP/1.1 "), p.line[9:]...)
	out = append(out, "\r\n"...)
	out = (&conn{}).appendFields(out, p, true)
	out = append(out, v.versionLine...)
	out = append(out, "\r\n"...)
	count(http.StatusSwitchingProtocols) // before the client can see it
	if _, err := nc.Write(out); err != nil {
		x.release(false)
		return errCounted
	}
	var crd reader
	crd.reset(nc, make([]byte, clientBufSize))
	crd.w = copy(crd.buf, bufferedBytes(brw.Reader))
	tunnel(nc, &crd, x.uc.c, &x.uc.rd, r.limits.IdleTimeout)
	x.release(false)
	return errCounted
}

func bufferedBytes(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// httpCopyBody streams a net/http request body to the instance: with its
// Content-Length, or chunked when it has none.
func httpCopyBody(uc *upConn, req *http.Request, timeout time.Duration, limit int64) error {
	dst := &connSink{c: uc.c, timeout: timeout}
	defer uc.c.SetWriteDeadline(time.Time{}) // the next request's head must not inherit it
	src := io.Reader(req.Body)
	if limit >= 0 {
		src = &limitReader{r: req.Body, left: limit}
	}
	buf := make([]byte, 32<<10)
	var cw *chunkWriter
	if req.ContentLength < 0 {
		cw = &chunkWriter{w: writerFunc(func(p []byte) (int, error) { return len(p), dst.write(p, false) })}
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			var werr error
			if cw != nil {
				_, werr = cw.Write(buf[:n])
			} else {
				werr = dst.write(buf[:n], false)
			}
			if werr != nil {
				return &bodyError{side: sideInstance, err: werr}
			}
		}
		if rerr == io.EOF {
			if cw != nil {
				if err := cw.close(); err != nil {
					return &bodyError{side: sideInstance, err: err}
				}
			}
			return nil
		}
		if rerr != nil {
			uc.c.Close()
			return &bodyError{side: sideClient, err: rerr}
		}
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// limitReader fails with errBodyTooLarge once more than left bytes came.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, errBodyTooLarge
	}
	return n, err
}

// httpRequestHead writes the head the instance gets for a net/http request;
// see conn.buildRequest.
func (r *Router) httpRequestHead(req *http.Request, hasBody, upgrade bool) []byte {
	out := make([]byte, 0, 1024)
	out = append(out, req.Method...)
	out = append(out, ' ')
	uri := req.RequestURI
	if uri == "" || !strings.HasPrefix(uri, "/") && uri != "*" {
		uri = req.URL.RequestURI()
	}
	out = append(out, uri...)
	out = append(out, " HTTP/1.1\r\nHost: "...)
	out = append(out, req.Host...)
	out = append(out, "\r\n"...)
	drop := connectionTokens(req.Header)
	hasID := false
	for k, vs := range req.Header {
		kind := classify([]byte(k))
		switch kind {
		case hOther:
			if drop[strings.ToLower(k)] {
				continue
			}
		case hCookie, hTrailer:
		case hUpgrade:
			if !upgrade {
				continue
			}
		case hXRequestID:
			if len(vs) == 0 || !validRequestID([]byte(vs[0])) {
				continue
			}
			vs, hasID = vs[:1], true
		default:
			continue // framing is set below; hop-by-hop and forwarding fields dropped
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	switch {
	case !hasBody:
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			out = append(out, "Content-Length: 0\r\n"...)
		}
	case req.ContentLength > 0:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, req.ContentLength, 10)
		out = append(out, "\r\n"...)
	default:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if upgrade {
		out = append(out, "Connection: Upgrade\r\n"...)
	}
	if !hasID {
		out = append(out, RequestIDHeader+": "...)
		out = r.appendRequestID(out)
		out = append(out, "\r\n"...)
	}
	proto := "http"
	if req.TLS != nil {
		proto = "https"
	}
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	trusted := err == nil && r.trustedPeer(ip)
	fhost, fproto := req.Host, proto
	if err == nil {
		out = append(out, "X-Forwarded-For: "...)
		if trusted {
			out = appendHeaderList(out, req.Header["X-Forwarded-For"])
		}
		out = append(out, ip...)
		out = append(out, "\r\nForwarded: "...)
		if trusted {
			out = appendHeaderList(out, req.Header["Forwarded"])
			if v := req.Header.Get("X-Forwarded-Host"); v != "" && !strings.ContainsAny(v, "\r\n") {
				fhost = v
			}
			if v := req.Header.Get("X-Forwarded-Proto"); v != "" && !strings.ContainsAny(v, "\r\n") {
				fproto = v
			}
		}
		out = append(out, "for="...)
		if strings.IndexByte(ip, ':') >= 0 {
			out = append(out, "\"["+ip+"]\""...)
		} else {
			out = append(out, ip...)
		}
		out = append(out, ';')
	} else {
		out = append(out, "Forwarded: "...)
	}
	out = append(out, "proto="+proto+";host=\""...)
	out = append(out, req.Host...)
	out = append(out, "\"\r\nX-Forwarded-Host: "...)
	out = append(out, fhost...)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, fproto...)
	out = append(out, "\r\n\r\n"...)
	return out
}

// appendHeaderList appends a trusted proxy's values of a list field, each
// followed by ", ".
func appendHeaderList(out []byte, vs []string) []byte {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, "\r\n") {
			out = append(out, v...)
			out = append(out, ", "...)
		}
	}
	return out
}

// connectionTokens returns the lowercase field names a Connection header
// lists (hop-by-hop fields to drop).
func connectionTokens(h http.Header) map[string]bool {
	var m map[string]bool
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.ToLower(strings.TrimSpace(tok)); tok != "" {
				if m == nil {
					m = make(map[string]bool)
				}
				m[tok] = true
			}
		}
	}
	return m
}

func isUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && connectionTokens(h)["upgrade"]
}

func idempotentMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// httpPlain writes a short text/plain response of the router's own;
// version, if set, goes in X-Sluice-Version; 503s say when to retry.
func httpPlain(w http.ResponseWriter, status int, version, msg string) {
	h := w.Header()
	if version != "" {
		h.Set(VersionHeader, version)
	} else {
		h.Del(VersionHeader)
	}
	if status == http.StatusServiceUnavailable && msg != msgStopped {
		h.Set("Retry-After", "1")
	}
	http.Error(w, "sluice: "+msg, status)
}
