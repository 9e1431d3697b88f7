package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// These are the hand-written HTTP/1.1 parsers' own tests, in memory: what
// each accepts and what it refuses, then differential fuzz targets that hold
// them to net/http's reading of the same bytes.

func TestRequestHeadParse(t *testing.T) {
	t.Parallel()
	type want struct {
		method, target, host, query string
		contentLength               int64
		chunked, close, upgrade     bool
		http10, expect              bool
		requestID                   string
	}
	for _, tc := range []struct {
		name string
		head string
		err  error
		want want
	}{
		{name: "simple GET", head: "GET /a?x=1 HTTP/1.1\r\nHost: s.example\r\n\r\n",
			want: want{method: "GET", target: "/a?x=1", host: "s.example", query: "x=1", contentLength: -1}},
		{name: "fragment is not query", head: "GET /a?x=1#f HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "GET", target: "/a?x=1#f", host: "h", query: "x=1", contentLength: -1}},
		{name: "content length", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
			want: want{method: "POST", target: "/", host: "h", contentLength: 12}},
		{name: "same content length twice", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
			want: want{method: "POST", target: "/", host: "h", contentLength: 3}},
		{name: "chunked", head: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n",
			want: want{method: "POST", target: "/", host: "h", contentLength: -1, chunked: true}},
		{name: "connection close", head: "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1, close: true}},
		{name: "upgrade", head: "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1, upgrade: true}},
		{name: "upgrade token without Upgrade field", head: "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1}},
		{name: "HTTP/1.0 closes by default", head: "GET / HTTP/1.0\r\n\r\n",
			want: want{method: "GET", target: "/", contentLength: -1, http10: true, close: true}},
		{name: "HTTP/1.0 keep-alive", head: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			want: want{method: "GET", target: "/", contentLength: -1, http10: true}},
		{name: "absolute form", head: "GET http://S.example:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
			want: want{method: "GET", target: "/p?q=1", host: "S.example:8080", query: "q=1", contentLength: -1}},
		{name: "absolute https form without path", head: "GET https://s.example HTTP/1.1\r\n\r\n",
			want: want{method: "GET", target: "/", host: "s.example", contentLength: -1}},
		{name: "expect 100-continue", head: "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
			want: want{method: "PUT", target: "/", host: "h", contentLength: 1, expect: true}},
		{name: "escapes kept as sent", head: "GET /a%2Fb?x=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "GET", target: "/a%2Fb?x=%zz", host: "h", query: "x=%zz", contentLength: -1}},
		{name: "request id kept", head: "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-1\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1, requestID: "abc-1"}},
		{name: "request id with a quote dropped", head: "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\"b\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1}},
		{name: "blanks around a value", head: "GET / HTTP/1.1\r\nHost: \t h \t\r\n\r\n",
			want: want{method: "GET", target: "/", host: "h", contentLength: -1}},

		{name: "bare LF in the request line", head: "GET / HTTP/1.1\nHost: h\r\n\r\n", err: errMalformed},
		{name: "bare LF in a field", head: "GET / HTTP/1.1\r\nHost: h\n\r\n", err: errMalformed},
		{name: "no Host in HTTP/1.1", head: "GET / HTTP/1.1\r\n\r\n", err: errMalformed},
		{name: "two Hosts", head: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", err: errMalformed},
		{name: "HTTP/2 request line", head: "GET / HTTP/2.0\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "lowercase protocol", head: "GET / http/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "no target", head: "GET  HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "method not a token", head: "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "control in target", head: "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "bad escape in path", head: "GET /a%0X HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "cut escape in path", head: "GET /a% HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "cut escape before query", head: "GET /a%4?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "space before colon", head: "GET / HTTP/1.1\r\nHost : h\r\n\r\n", err: errMalformed},
		{name: "obsolete line folding", head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", err: errMalformed},
		{name: "control in a value", head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n", err: errMalformed},
		{name: "DEL in a value", head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: \x7f\r\n\r\n", err: errMalformed},
		{name: "two different lengths", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", err: errMalformed},
		{name: "signed length", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", err: errMalformed},
		{name: "length list", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n", err: errMalformed},
		{name: "huge length", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999999\r\n\r\n", err: errMalformed},
		{name: "length beside chunked", head: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", err: errMalformed},
		{name: "chunked in HTTP/1.0", head: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err: errMalformed},
		{name: "gzip coding", head: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: errUnsupported},
		{name: "chunked twice", head: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: errUnsupported},
		{name: "other expectation", head: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", err: errExpectation},
		{name: "asterisk form", head: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "OPTIONS", target: "*", host: "h", contentLength: -1}},
		{name: "authority form", head: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", err: errMalformed},
		{name: "relative target", head: "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", err: errMalformed},
		{name: "absolute form with a bare query", head: "GET http://h?x HTTP/1.1\r\n\r\n", err: errMalformed},
		{name: "absolute form with a fragment in the authority", head: "GET http://h#f HTTP/1.0\r\n\r\n", err: errMalformed},
		{name: "absolute form with userinfo", head: "GET http://u@h/ HTTP/1.1\r\n\r\n", err: errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q reqHead
			err := q.parse([]byte(tc.head))
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("parse = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := want{method: string(q.method), target: string(q.target), host: string(q.host), query: string(q.query),
				contentLength: q.contentLength, chunked: q.chunked, close: q.close, upgrade: q.upgrade,
				http10: q.http10, expect: q.expect, requestID: string(q.requestID)}
			if got != tc.want {
				t.Fatalf("parse =\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}

func TestResponseHeadParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		head          string
		ok            bool
		status        int
		close         bool
		contentLength int64
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 200, false, 5},
		{"HTTP/1.1 204\r\n\r\n", true, 204, false, -1},
		{"HTTP/1.0 200 OK\r\n\r\n", true, 200, true, -1},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", true, 200, false, -1},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", true, 103, false, -1},
		{"HTTP/1.1 099 Low\r\n\r\n", false, 0, false, 0},
		{"HTTP/1.1 2x0 OK\r\n\r\n", false, 0, false, 0},
		{"HTTP/1.1 2000 OK\r\n\r\n", false, 0, false, 0},
		{"HTTP/2 200 OK\r\n\r\n", false, 0, false, 0},
		{"HTTP/1.1 200 OK\nX: y\r\n\r\n", false, 0, false, 0},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 0, false, 0},
	} {
		var p respHead
		err := p.parse([]byte(tc.head))
		if (err == nil) != tc.ok {
			t.Errorf("parse(%q) = %v, want ok %v", tc.head, err, tc.ok)
			continue
		}
		if tc.ok && (p.status != tc.status || p.close != tc.close || p.contentLength != tc.contentLength) {
			t.Errorf("parse(%q): status %d close %v length %d, want %d %v %d", tc.head, p.status, p.close, p.contentLength, tc.status, tc.close, tc.contentLength)
		}
	}
}

func TestParseFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fields string // the lines after the start line, through the empty one
		err    error
		kinds  []hkind
		names  []string
		values []string
		tokens int // Connection tokens naming other fields
	}{
		{name: "none", fields: "\r\n"},
		{name: "kinds and values", fields: "Host: h\r\nX-Custom:  a b \r\nCookie: c=1\r\n\r\n",
			kinds: []hkind{hHost, hOther, hCookie}, names: []string{"Host", "X-Custom", "Cookie"}, values: []string{"h", "a b", "c=1"}},
		{name: "empty value", fields: "X-Empty:\r\n\r\n",
			kinds: []hkind{hOther}, names: []string{"X-Empty"}, values: []string{""}},
		{name: "connection names a field", fields: "Connection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
			kinds: []hkind{hConnection, hOther}, names: []string{"Connection", "X-Hop"}, values: []string{"close, X-Hop", "1"}, tokens: 1},
		{name: "no colon", fields: "Host h\r\n\r\n", err: errMalformed},
		{name: "empty name", fields: ": v\r\n\r\n", err: errMalformed},
		{name: "name with a slash", fields: "X/Y: v\r\n\r\n", err: errMalformed},
		{name: "folded line", fields: "X: a\r\n\tb\r\n\r\n", err: errMalformed},
		{name: "no empty line end", fields: "X: a\r\n\n", err: errMalformed},
		{name: "CR inside a value", fields: "X: a\rb\r\n\r\n", err: errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := []byte("HTTP/1.1 200 OK\r\n" + tc.fields)
			var m message
			err := m.parseFields(head, len("HTTP/1.1 200 OK\r\n"))
			if err != tc.err {
				t.Fatalf("parseFields = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(m.fields) != len(tc.kinds) {
				t.Fatalf("%d fields, want %d", len(m.fields), len(tc.kinds))
			}
			for i, f := range m.fields {
				name, value, line := string(head[f.ns:f.ne]), string(head[f.vs:f.ve]), string(head[f.ns:f.le])
				if f.kind != tc.kinds[i] || name != tc.names[i] || value != tc.values[i] || !strings.HasSuffix(line, "\r\n") || !strings.HasPrefix(line, name+":") {
					t.Errorf("field %d: kind %d %q=%q line %q, want kind %d %q=%q", i, f.kind, name, value, line, tc.kinds[i], tc.names[i], tc.values[i])
				}
			}
			if m.connTokens != tc.tokens {
				t.Errorf("connTokens = %d, want %d", m.connTokens, tc.tokens)
			}
			for i := range m.fields {
				if drop := m.dropByConnection(head, &m.fields[i]); drop != (tc.tokens > 0 && string(head[m.fields[i].ns:m.fields[i].ne]) == "X-Hop") {
					t.Errorf("dropByConnection(field %d) = %v", i, drop)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]hkind{
		"Host": hHost, "HOST": hHost, "host": hHost, "Hosts": hOther, "Hos": hOther,
		"Content-Length": hContentLength, "content-length": hContentLength, "Content_Length": hOther,
		"Transfer-Encoding": hTransferEncoding, "Connection": hConnection, "Keep-Alive": hKeepAlive,
		"Proxy-Connection": hProxyConnection, "TE": hTE, "Te": hTE, "Trailer": hTrailer, "Upgrade": hUpgrade,
		"Proxy-Authorization": hProxyAuthorization, "Proxy-Authenticate": hProxyAuthenticate,
		"X-Forwarded-For": hXForwardedFor, "X-Forwarded-Host": hXForwardedHost, "X-Forwarded-Proto": hXForwardedProto,
		"Forwarded": hForwarded, "X-Request-Id": hXRequestID, "X-REQUEST-ID": hXRequestID, "Expect": hExpect,
		"Cookie": hCookie, "X-Sluice-Version": hVersion, "X-Real-IP": hXRealIP, "x-real-ip": hXRealIP,
		"Set-Cookie": hOther, "X-Forwarded": hOther, "": hOther, "Accept": hOther,
	} {
		if got := classify([]byte(name)); got != want {
			t.Errorf("classify(%q) = %d, want %d", name, got, want)
		}
	}
}

// chunkRun drives a chunker over b, as copyChunked does with what is
// buffered: it returns the data and whether the body ended, or the error.
func chunkRun(b []byte) (data []byte, done bool, err error) {
	var k chunker
	for len(b) > 0 && k.state != chunkDone {
		n, isData, err := k.step(b)
		if err != nil {
			return data, false, err
		}
		if n == 0 {
			return data, false, nil // incomplete: more would be read
		}
		if isData {
			data = append(data, b[:n]...)
		}
		b = b[n:]
	}
	return data, k.state == chunkDone, nil
}

func TestChunkerStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		data string
		done bool
		err  error
	}{
		{name: "two chunks", body: "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", data: "abcde", done: true},
		{name: "upper hex", body: "A\r\n0123456789\r\n0\r\n\r\n", data: "0123456789", done: true},
		{name: "extension", body: "3;name=value\r\nabc\r\n0;x\r\n\r\n", data: "abc", done: true},
		{name: "trailing blanks", body: "3 \t\r\nabc\r\n0\r\n\r\n", data: "abc", done: true},
		{name: "trailers", body: "1\r\na\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", data: "a", done: true},
		{name: "bytes after the end are not read", body: "0\r\n\r\nGET / HTTP/1.1\r\n", done: true},
		{name: "incomplete size line", body: "3", done: false},
		{name: "incomplete data", body: "5\r\nab", data: "ab", done: false},
		{name: "incomplete data end", body: "2\r\nab\r", data: "ab", done: false},

		{name: "no size", body: "\r\nabc\r\n", err: errMalformed},
		{name: "bare LF after size", body: "3\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "no CRLF after data", body: "3\r\nabcX\r\n0\r\n\r\n", data: "abc", err: errMalformed},
		{name: "sign", body: "+3\r\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "0x prefix", body: "0x3\r\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "garbage after size", body: "3 x\r\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "blank before an extension", body: "3 ;x\r\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "overflow", body: "1000000000000000\r\n", err: errMalformed},
		{name: "control in an extension", body: "3;\x01\r\nabc\r\n0\r\n\r\n", err: errMalformed},
		{name: "trailer without colon", body: "0\r\nX-Sum 1\r\n\r\n", err: errMalformed},
		{name: "trailer name not a token", body: "0\r\nX Sum: 1\r\n\r\n", err: errMalformed},
		{name: "size line too long", body: "1;" + strings.Repeat("x", maxChunkLine), err: errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, done, err := chunkRun([]byte(tc.body))
			if err != tc.err || done != tc.done || string(data) != tc.data {
				t.Fatalf("= %q done %v err %v, want %q done %v err %v", data, done, err, tc.data, tc.done, tc.err)
			}
		})
	}
}

// FuzzRequestHead holds the request-head parser (headEnd, then
// reqHead.parse) to net/http's ReadRequest on the same bytes. The two must
// agree on accepting the head; when both do, on the method, the target,
// the protocol version, the host, the body's framing (chunked, or its
// Content-Length), whether the connection closes after it, and the value
// of every field. sluice is stricter than ReadRequest on purpose in the
// cases stricterRule names, each a rule; a head ReadRequest reads and
// sluice refuses for any other reason fails the target, as does every
// head sluice reads and ReadRequest does not.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: v.a.example:80\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://b.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\n\r\n",
		"GET /a%2Fb?x=%zz HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\nx-a: 2\r\nCookie: c=1\r\n\r\n",
		"GET / HTTP/1.1\nHost: a.example\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		var q reqHead
		end, err := headEnd(b, 0, 0)
		if err == nil && end == 0 {
			err = io.ErrUnexpectedEOF // no whole head: sluice waits for more
		}
		if err == nil {
			err = q.parse(b[:end])
		}
		switch {
		case err != nil && herr != nil:
			return
		case err == nil && herr != nil:
			t.Fatalf("sluice reads %q, net/http refuses it: %v", b, herr)
		case err != nil:
			if rule := stricterRule(b, req); rule == "" {
				t.Fatalf("net/http reads %q, sluice refuses it (%v) by no rule of its own", b, err)
			}
			return
		}
		head := b[:end]
		if req.Method != string(q.method) {
			t.Fatalf("method %q, net/http %q", q.method, req.Method)
		}
		if q.absHost == nil && req.RequestURI != string(q.target) {
			t.Fatalf("target %q, net/http %q", q.target, req.RequestURI)
		}
		if q.http10 != (req.ProtoMinor == 0) || req.ProtoMajor != 1 {
			t.Fatalf("HTTP/1.0 %v, net/http %s", q.http10, req.Proto)
		}
		if req.Host != string(q.host) {
			t.Fatalf("host %q, net/http %q", q.host, req.Host)
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		if chunked != q.chunked {
			t.Fatalf("chunked %v, net/http %v", q.chunked, req.TransferEncoding)
		}
		if !q.chunked && req.ContentLength != max(q.contentLength, 0) {
			t.Fatalf("content length %d, net/http %d", q.contentLength, req.ContentLength)
		}
		if req.Close != q.close {
			t.Fatalf("close %v, net/http %v", q.close, req.Close)
		}
		got := http.Header{}
		for _, fl := range q.fields {
			k := textproto.CanonicalMIMEHeaderKey(string(head[fl.ns:fl.ne]))
			got[k] = append(got[k], string(head[fl.vs:fl.ve]))
		}
		// net/http keeps Host and the transfer coding out of Header.
		delete(got, "Host")
		if chunked {
			delete(got, "Transfer-Encoding")
		}
		if !reflect.DeepEqual(got, req.Header) {
			t.Fatalf("fields %q, net/http %q", got, req.Header)
		}
	})
}

// stricterRule names the rule by which sluice refuses a request head that
// net/http's ReadRequest reads (req), or returns "" when none applies.
// Each is deliberate: what two parsers could read two ways is refused
// (see http1.go), and what net/http's server would refuse after
// ReadRequest is refused at once.
func stricterRule(b []byte, req *http.Request) string {
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines[:len(lines)-1] {
		if len(l) == 0 || l[len(l)-1] != '\r' {
			return "a bare LF line end (RFC 9112 2.2 lets a recipient accept it; sluice does not)"
		}
		if i > 0 && len(l) > 1 && (l[0] == ' ' || l[0] == '\t') {
			return "obsolete line folding (RFC 9112 5.2)"
		}
		if name, _, ok := bytes.Cut(l, []byte(":")); i > 0 && ok && !isToken(name) {
			return "a field name that is not a token (RFC 9110 5.1)"
		}
	}
	raw := req.Header
	switch {
	case req.ProtoMajor != 1 || req.ProtoMinor > 1:
		return "only HTTP/1.0 and HTTP/1.1 are served"
	case req.ProtoMinor == 1 && req.Host == "":
		return "an HTTP/1.1 request without Host (RFC 9112 3.2; net/http's server refuses it too)"
	case req.ProtoMinor == 0 && bytes.Contains(bytes.ToLower(b), []byte("\ntransfer-encoding:")):
		return "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)"
	case len(raw["Expect"]) > 0 && !strings.EqualFold(raw.Get("Expect"), "100-continue"):
		return "an expectation other than 100-continue (417)"
	case !originForm(req.RequestURI) && !absoluteForm(req.RequestURI):
		return "a target neither origin-form, asterisk-form nor http(s) absolute-form (RFC 9112 3.2; the router tunnels no CONNECT)"
	case absoluteForm(req.RequestURI) && req.URL.Path == "" && (req.URL.RawQuery != "" || req.URL.ForceQuery):
		return "an absolute-form target with a query but no path"
	case absoluteForm(req.RequestURI) && (authority(req.RequestURI) == "" || strings.ContainsFunc(authority(req.RequestURI), notHostChar)):
		return "an absolute-form authority that is empty, or has userinfo, a percent-escape or a byte outside RFC 3986's host characters"
	}
	for _, vs := range raw {
		for _, v := range vs {
			if strings.ContainsFunc(v, isCTL) {
				return "a control byte in a field value (net/http's server refuses it too)"
			}
		}
	}
	return ""
}

// FuzzChunked holds the chunked-body decoder (chunker.step) to httputil's
// chunked reader followed by net/http's reading of the trailer section
// (the reader stops at the last chunk; net/http's body reader then reads
// the trailers with textproto): on the same bytes both must end the body
// or both fail, and when they end it, with the same data. Where sluice is
// stricter on purpose, chunkStricterRule names the rule.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"3\r\nabc\r\n0\r\n\r\n",
		"a;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
		"1 \r\nx\r\n0\r\n\r\n",
		"3\nabc\r\n0\r\n\r\n",
		"0\r\nX-T: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 8<<10 {
			return // far under the reader's limit on framing overhead
		}
		data, done, err := chunkRun(b)
		if err == nil && !done {
			err = io.ErrUnexpectedEOF // sluice would wait for more
		}
		src := bytes.NewReader(b)
		br := bufio.NewReader(src)
		got, herr := io.ReadAll(httputil.NewChunkedReader(br))
		trailer := b[len(b)-src.Len()-br.Buffered():] // where the last chunk ended
		if herr == nil {
			herr = readTrailer(br)
		}
		switch {
		case err != nil && herr != nil:
			return
		case err == nil && herr != nil:
			t.Fatalf("sluice reads %q from %q, net/http fails: %v", data, b, herr)
		case err != nil:
			if chunkStricterRule(b, trailer) == "" {
				t.Fatalf("net/http reads %q from %q, sluice fails (%v) by no rule of its own", got, b, err)
			}
			return
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("sluice reads %q from %q, net/http %q", data, b, got)
		}
	})
}

// readTrailer reads a chunked body's trailer section as net/http's body
// reader does after the last chunk.
func readTrailer(br *bufio.Reader) error {
	if p, _ := br.Peek(2); string(p) == "\r\n" {
		return nil
	}
	_, err := textproto.NewReader(br).ReadMIMEHeader()
	return err
}

// chunkStricterRule names the rule by which sluice refuses a chunked body
// b that net/http reads, or returns "" when none applies; trailer is the
// trailer section, after the last chunk.
func chunkStricterRule(b, trailer []byte) string {
	lines := bytes.Split(trailer, []byte("\n"))
	for i, l := range lines[:len(lines)-1] {
		if len(l) == 0 || l[len(l)-1] != '\r' {
			return "a bare LF line end in the trailer section (RFC 9112 2.2)"
		}
		if i > 0 && (l[0] == ' ' || l[0] == '\t') {
			return "obsolete line folding in a trailer (RFC 9112 5.2)"
		}
		if name, _, ok := bytes.Cut(l, []byte(":")); ok && !isToken(name) {
			return "a trailer field name that is not a token (RFC 9110 5.1)"
		}
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if i := bytes.IndexByte(l, ';'); i >= 0 && bytes.ContainsFunc(bytes.TrimSuffix(l[i:], []byte("\r")), isCTL) {
			return "a control byte in a chunk extension (RFC 9112 7.1.1)"
		}
	}
	return ""
}

// isCTL reports a control character other than HTAB.
func isCTL(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

func originForm(uri string) bool { return strings.HasPrefix(uri, "/") || uri == "*" }

func absoluteForm(uri string) bool {
	u := strings.ToLower(uri)
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// authority returns an absolute-form target's authority.
func authority(uri string) string {
	_, rest, _ := strings.Cut(uri, "//")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// notHostChar reports a byte RFC 3986 allows in no host or port
// (reg-name, IP-literal, port), or a percent-escape's '%'.
func notHostChar(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:[]", r))
}
