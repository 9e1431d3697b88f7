package router

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"
	"unsafe"
)

// This file is the HTTP/1.1 wire format as the forwarding path needs it: a
// reader that exposes its buffer, so that heads are parsed in place and
// bodies copied without a second buffer, and strict parsers for request and
// response heads. Strictness is what keeps the router and the instances
// from disagreeing on where a message ends (request smuggling): bare LF,
// obsolete line folding, whitespace before a colon, control characters in a
// value, a Content-Length beside Transfer-Encoding, two different
// Content-Lengths, any transfer coding but "chunked", Transfer-Encoding in
// an HTTP/1.0 request, a request target that is not in origin ("/..."),
// asterisk ("*") or absolute form, and a chunk size followed by anything
// but blanks or an extension are all refused. http1_test.go holds these
// parsers to net/http's ReadRequest and httputil's chunked reader by
// differential fuzzing.

// Parse errors. errHeadTooLarge becomes 431; the others 400 (or 502 when an
// instance sent them).
var (
	errHeadTooLarge = errors.New("message head too large")
	errMalformed    = errors.New("malformed message")
	errUnsupported  = errors.New("unsupported transfer coding")
)

// reader is a buffered reader over a connection whose buffer the parsers
// and copiers use directly: buf[r:w] is what was read and not yet consumed.
type reader struct {
	conn    net.Conn
	buf     []byte
	r, w    int
	scanned int // bytes after r already searched for the end of a head
	// timeout, when set, is renewed as the read deadline before each read
	// (an inactivity limit for bodies); heads manage their deadlines.
	timeout time.Duration
}

func (rd *reader) reset(c net.Conn, buf []byte) {
	rd.conn, rd.buf, rd.r, rd.w, rd.scanned, rd.timeout = c, buf, 0, 0, 0, 0
}

func (rd *reader) buffered() []byte { return rd.buf[rd.r:rd.w] }

func (rd *reader) consume(n int) {
	if n > rd.w-rd.r {
		panic("router: consume past the buffered bytes")
	}
	rd.r += n
	rd.scanned = 0
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
}

// fill reads once into the buffer's free space, moving unconsumed bytes to
// the front first if the tail is full. It fails with errHeadTooLarge when
// the buffer is full of unconsumed bytes.
func (rd *reader) fill() error {
	if rd.w == len(rd.buf) {
		if rd.r == 0 {
			return errHeadTooLarge
		}
		n := copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r, rd.w = 0, n
	}
	if rd.timeout > 0 {
		rd.conn.SetReadDeadline(time.Now().Add(rd.timeout))
	}
	n, err := rd.conn.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
		return nil // an error comes back on the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Read lets a reader stand as the source of io.Copy-like loops: it hands
// out buffered bytes first, then reads from the connection.
func (rd *reader) Read(p []byte) (int, error) {
	if rd.r == rd.w {
		if len(p) >= len(rd.buf) {
			if rd.timeout > 0 {
				rd.conn.SetReadDeadline(time.Now().Add(rd.timeout))
			}
			return rd.conn.Read(p)
		}
		if err := rd.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, rd.buf[rd.r:rd.w])
	rd.consume(n)
	return n, nil
}

// readHead returns the next message head, through its empty line, reading
// as needed and growing the buffer up to limit bytes. Empty lines before a
// head are skipped. The head stays valid until the next fill; the caller
// consumes it. onPartial, if not nil, is called once when the first read
// leaves a head incomplete (to tighten a deadline against slow senders).
func (rd *reader) readHead(limit int, onPartial func()) ([]byte, error) {
	for {
		for rd.r < rd.w && (rd.buf[rd.r] == '\r' || rd.buf[rd.r] == '\n') {
			rd.r++ // RFC 9112 2.2: ignore empty lines before a request line
			rd.scanned = 0
		}
		if n := rd.w - rd.r; n > 0 {
			from := rd.r + max(rd.scanned-3, 0)
			end, err := headEnd(rd.buf[:rd.w], rd.r, from)
			if err != nil {
				return nil, err
			}
			if end > 0 {
				if end-rd.r > limit {
					return nil, errHeadTooLarge
				}
				rd.scanned = 0
				return rd.buf[rd.r:end], nil
			}
			rd.scanned = n
			if n >= limit {
				return nil, errHeadTooLarge
			}
			if onPartial != nil {
				onPartial()
				onPartial = nil
			}
		}
		if rd.r == rd.w {
			rd.r, rd.w = 0, 0
		}
		if rd.r == 0 && rd.w == len(rd.buf) {
			// The buffer holds one incomplete head: grow it.
			nb := make([]byte, min(2*len(rd.buf), limit+4))
			copy(nb, rd.buf[:rd.w])
			rd.buf = nb
		}
		if err := rd.fill(); err != nil {
			if rd.w > rd.r && err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// headEnd finds the end of the head that starts at b[start]: the index
// after its empty line, 0 when b does not hold it all yet. The search
// starts at from (>= start). A line feed without a carriage return before
// it is errMalformed at once: such a head is refused as soon as it is seen
// rather than waited on until a timeout (a client that ends its lines with
// bare LF would otherwise never send the CRLFCRLF the head needs).
func headEnd(b []byte, start, from int) (int, error) {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return 0, nil
		}
		i += from
		if i == start || b[i-1] != '\r' {
			return 0, errMalformed
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3, nil
		}
		from = i + 1
	}
}

// hkind classifies the header fields the router acts on; every other field
// is forwarded as it came.
type hkind uint8

const (
	hOther hkind = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hKeepAlive
	hProxyConnection
	hTE
	hTrailer
	hUpgrade
	hProxyAuthorization
	hProxyAuthenticate
	hXForwardedFor
	hXForwardedHost
	hXForwardedProto
	hForwarded
	hXRequestID
	hExpect
	hCookie
	hVersion // X-Sluice-Version: only the router sets it
	hXRealIP // X-Real-IP: a client's claim about itself, dropped
)

// field is one header line of a head: name is head[ns:ne], value (without
// surrounding blanks) head[vs:ve], and the whole line with its CRLF
// head[ns:le].
type field struct {
	ns, ne, vs, ve, le int32
	kind               hkind
}

// classify names the header fields the router acts on. name is a valid
// token, so OR-ing 0x20 lowercases its letters without confusing any of
// the other characters these names contain.
func classify(name []byte) hkind {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hTE
		}
	case 4:
		if eqFold(name, "host") {
			return hHost
		}
	case 6:
		switch {
		case eqFold(name, "cookie"):
			return hCookie
		case eqFold(name, "expect"):
			return hExpect
		}
	case 7:
		switch {
		case eqFold(name, "upgrade"):
			return hUpgrade
		case eqFold(name, "trailer"):
			return hTrailer
		}
	case 9:
		switch {
		case eqFold(name, "forwarded"):
			return hForwarded
		case eqFold(name, "x-real-ip"):
			return hXRealIP
		}
	case 10:
		switch {
		case eqFold(name, "connection"):
			return hConnection
		case eqFold(name, "keep-alive"):
			return hKeepAlive
		}
	case 12:
		if eqFold(name, "x-request-id") {
			return hXRequestID
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hXForwardedFor
		}
	case 16:
		switch {
		case eqFold(name, "x-forwarded-host"):
			return hXForwardedHost
		case eqFold(name, "proxy-connection"):
			return hProxyConnection
		case eqFold(name, "x-sluice-version"):
			return hVersion
		}
	case 17:
		switch {
		case eqFold(name, "transfer-encoding"):
			return hTransferEncoding
		case eqFold(name, "x-forwarded-proto"):
			return hXForwardedProto
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hProxyAuthenticate
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hProxyAuthorization
		}
	}
	return hOther
}

// eqFold reports whether b, a token, equals lower (lowercase) ignoring case.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// tokenChar marks the characters of an RFC 9110 token.
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// message is what both heads share: header fields and framing.
type message struct {
	fields        []field
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool // the sender asked to close after this message
	keepAlive     bool // an HTTP/1.0 sender asked to keep the connection
	http10        bool
	upgrade       bool // "Connection: upgrade" with an Upgrade field
	connTokens    int  // Connection tokens other than close, keep-alive, upgrade
}

// parseFields parses the header lines of head from off (the start of the
// line after the start line) into m. It refuses what could be read two ways.
func (m *message) parseFields(head []byte, off int) error {
	m.fields = m.fields[:0]
	m.contentLength = -1
	m.chunked, m.close, m.keepAlive, m.upgrade = false, false, false, false
	m.connTokens = 0
	te := false
	for {
		nl := bytes.IndexByte(head[off:], '\n')
		if nl < 1 || head[off+nl-1] != '\r' {
			return errMalformed // bare LF
		}
		le := off + nl + 1
		if nl == 1 {
			break // the empty line
		}
		line := head[off : le-2]
		colon := bytes.IndexByte(line, ':')
		if colon < 1 {
			return errMalformed // no name, or obs-fold (a line starting with a blank has none)
		}
		for _, c := range line[:colon] {
			if !tokenChar[c] {
				return errMalformed
			}
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		for _, c := range line[vs:ve] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return errMalformed
			}
		}
		f := field{ns: int32(off), ne: int32(off + colon), vs: int32(off + vs), ve: int32(off + ve), le: int32(le), kind: classify(line[:colon])}
		val := line[vs:ve]
		switch f.kind {
		case hContentLength:
			n, ok := parseLength(val)
			if !ok || m.contentLength >= 0 && m.contentLength != n {
				return errMalformed
			}
			m.contentLength = n
		case hTransferEncoding:
			if te || !eqFoldTrim(val, "chunked") {
				return errUnsupported // only one, plain "chunked"
			}
			te = true
		case hConnection:
			m.parseConnection(val, f)
		}
		m.fields = append(m.fields, f)
		off = le
	}
	if te {
		if m.contentLength >= 0 {
			return errMalformed
		}
		m.chunked = true
	}
	if m.upgrade {
		m.upgrade = false
		for i := range m.fields {
			if m.fields[i].kind == hUpgrade {
				m.upgrade = true
			}
		}
	}
	return nil
}

// parseConnection notes the tokens of a Connection field.
func (m *message) parseConnection(val []byte, f field) {
	for len(val) > 0 {
		var tok []byte
		if i := bytes.IndexByte(val, ','); i >= 0 {
			tok, val = val[:i], val[i+1:]
		} else {
			tok, val = val, nil
		}
		tok = bytes.Trim(tok, " \t")
		switch {
		case len(tok) == 0:
		case eqFoldAny(tok, "close"):
			m.close = true
		case eqFoldAny(tok, "keep-alive"):
			m.keepAlive = true
		case eqFoldAny(tok, "upgrade"):
			m.upgrade = true
		default:
			m.connTokens++
		}
	}
	_ = f
}

// dropByConnection reports whether the field is named by a Connection token
// (other than the ones parseConnection handles), so is hop-by-hop.
func (m *message) dropByConnection(head []byte, f *field) bool {
	if m.connTokens == 0 || f.kind != hOther {
		return false
	}
	name := head[f.ns:f.ne]
	for i := range m.fields {
		c := &m.fields[i]
		if c.kind != hConnection {
			continue
		}
		val := head[c.vs:c.ve]
		for len(val) > 0 {
			var tok []byte
			if j := bytes.IndexByte(val, ','); j >= 0 {
				tok, val = val[:j], val[j+1:]
			} else {
				tok, val = val, nil
			}
			if bytes.EqualFold(bytes.Trim(tok, " \t"), name) {
				return true
			}
		}
	}
	return false
}

// eqFoldAny compares any bytes with a lowercase ASCII string ignoring case.
func eqFoldAny(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func eqFoldTrim(b []byte, lower string) bool { return eqFoldAny(bytes.Trim(b, " \t"), lower) }

// parseLength parses a Content-Length: digits only, no sign, no overflow.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// reqHead is a parsed request head; its slices point into the head.
type reqHead struct {
	message
	method    []byte
	target    []byte // as sent, or the origin form of an absolute-form target
	absHost   []byte // the authority of an absolute-form target
	host      []byte // the Host field (or absHost)
	query     []byte // the target's query, without '?'
	requestID []byte // a usable X-Request-Id, if sent
	expect    bool   // Expect: 100-continue
	head      []byte
	nline     int // length of the request line with its CRLF
}

// parse parses a request head.
func (q *reqHead) parse(head []byte) error {
	q.head = head
	nl := bytes.IndexByte(head, '\n')
	if nl < 1 || head[nl-1] != '\r' {
		return errMalformed
	}
	line := head[:nl-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 1 {
		return errMalformed
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 1 {
		return errMalformed
	}
	q.method, q.target = line[:sp1], rest[:sp2]
	for _, c := range q.method {
		if !tokenChar[c] {
			return errMalformed
		}
	}
	for _, c := range q.target {
		if c <= ' ' || c == 0x7f {
			return errMalformed
		}
	}
	switch proto := rest[sp2+1:]; {
	case string(proto) == "HTTP/1.1":
		q.http10 = false
	case string(proto) == "HTTP/1.0":
		q.http10 = true
	default:
		return errMalformed
	}
	q.nline = nl + 1
	if err := q.parseFields(head, nl+1); err != nil {
		return err
	}
	q.absHost, q.host, q.requestID, q.expect = nil, nil, nil, false
	if n := absolutePrefix(q.target); n > 0 {
		// Absolute form: the authority is the host; instances get the
		// origin form. An https:// target is handled the same way: the
		// scheme says how the client reached the first proxy, and the
		// router forwards over plain HTTP whatever it says.
		t := q.target[n:]
		i := bytes.IndexAny(t, "/?")
		if i < 0 {
			q.absHost, q.target = t, slash
		} else {
			q.absHost, q.target = t[:i], t[i:]
			if q.target[0] == '?' {
				return errMalformed
			}
		}
		if !validAuthority(q.absHost) {
			return errMalformed
		}
	}
	if !validEscapes(q.target) {
		return errMalformed
	}
	if q.absHost == nil && q.target[0] != '/' && string(q.target) != "*" {
		// Only origin form ("/..."), asterisk form and absolute form: an
		// authority-form target (CONNECT) is not proxied, and anything else
		// is not a request target an instance could read one way only.
		return errMalformed
	}
	hosts := 0
	for i := range q.fields {
		f := &q.fields[i]
		switch f.kind {
		case hHost:
			hosts++
			q.host = head[f.vs:f.ve]
		case hXRequestID:
			if id := head[f.vs:f.ve]; validRequestID(id) {
				q.requestID = id
			}
		case hExpect:
			if !eqFoldAny(head[f.vs:f.ve], "100-continue") {
				return errExpectation
			}
			q.expect = true
		}
	}
	if hosts > 1 || hosts == 0 && !q.http10 && q.absHost == nil {
		return errMalformed // RFC 9112 3.2: exactly one Host in HTTP/1.1
	}
	if q.absHost != nil {
		q.host = q.absHost
	}
	q.query = nil
	if i := bytes.IndexByte(q.target, '?'); i >= 0 {
		q.query = q.target[i+1:]
		if j := bytes.IndexByte(q.query, '#'); j >= 0 {
			q.query = q.query[:j]
		}
	}
	if q.http10 {
		if q.chunked {
			// RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty
			// framing (net/http, for one, ignores it: where would the
			// request end?).
			return errMalformed
		}
		q.close = !q.keepAlive
	}
	return nil
}

// validEscapes reports whether every '%' in target's path (the part before
// any '?') starts a two-digit hex escape, as RFC 3986 2.1 requires. A path
// an instance's HTTP library would refuse to decode is refused here with
// 400 rather than forwarded to be refused or read differently there.
func validEscapes(target []byte) bool {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	for i := bytes.IndexByte(target, '%'); i >= 0; i = bytes.IndexByte(target, '%') {
		if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
			return false
		}
		target = target[i+3:]
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// absolutePrefix returns the length of target's "http://" or "https://"
// prefix (any case), 0 when it has neither or nothing after it.
func absolutePrefix(target []byte) int {
	switch {
	case len(target) > 7 && eqFoldAny(target[:7], "http://"):
		return 7
	case len(target) > 8 && eqFoldAny(target[:8], "https://"):
		return 8
	}
	return 0
}

// validAuthority reports whether an absolute-form target's authority is a
// host and an optional port in RFC 3986's characters, without userinfo,
// percent-escapes or a fragment: the host the router routes by is then
// the host any other reader of the target sees.
func validAuthority(a []byte) bool {
	for _, c := range a {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			bytes.IndexByte([]byte("-._~!$&'()*+,;=:[]"), c) >= 0) {
			return false
		}
	}
	return len(a) > 0
}

// errExpectation is an Expect other than 100-continue: 417.
var errExpectation = errors.New("unsupported expectation")

var slash = []byte("/")

// hasBody reports whether the request has a body to forward.
func (q *reqHead) hasBody() bool { return q.chunked || q.contentLength > 0 }

// idempotent reports whether the method may be sent twice (RFC 9110 9.2.2).
func (q *reqHead) idempotent() bool {
	switch string(q.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

func (q *reqHead) isHead() bool { return string(q.method) == "HEAD" }

// validRequestID accepts visible ASCII ids of a sane length.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 200 {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// respHead is a parsed response head from an instance.
type respHead struct {
	message
	status int
	line   []byte // the status line without CRLF, "HTTP/1.1 200 OK"
	head   []byte
}

func (p *respHead) parse(head []byte) error {
	p.head = head
	nl := bytes.IndexByte(head, '\n')
	if nl < 12 || head[nl-1] != '\r' {
		return errMalformed
	}
	line := head[:nl-1]
	switch {
	case bytes.HasPrefix(line, []byte("HTTP/1.1 ")):
		p.http10 = false
	case bytes.HasPrefix(line, []byte("HTTP/1.0 ")):
		p.http10 = true
	default:
		return errMalformed
	}
	if len(line) > 12 && line[12] != ' ' {
		return errMalformed
	}
	n := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errMalformed
		}
		n = n*10 + int(c-'0')
	}
	if n < 100 {
		return errMalformed
	}
	p.status, p.line = n, line
	if err := p.parseFields(head, nl+1); err != nil {
		return err
	}
	if p.http10 {
		p.close = !p.keepAlive
	}
	return nil
}

// bodyless reports whether a response to a request with the given method
// has no body whatever its fields say (RFC 9112 6.3).
func (p *respHead) bodyless(head bool) bool {
	return head || p.status < 200 || p.status == 204 || p.status == 304
}

// bstr views b as a string without copying. Only for strings that do not
// outlive the call they are passed to while b is not written (map lookups,
// Compiled.Decide, which keeps nothing of its argument).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// remoteIP is the IP of a client address, "" when there is none.
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return host
}
