package router

import (
	"bufio"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// rawClient speaks HTTP/1.1 to the router byte by byte, for what a
// net/http client would not send or would hide.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// read reads one response to a request with the given method, body included.
func (rc *rawClient) read(method string) response {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body), close: resp.Close, te: resp.TransferEncoding}
}

// closed reports whether the router closed the connection (within a second).
func (rc *rawClient) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := rc.br.ReadByte()
	return err == io.EOF || err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// echoHeaders is an instance that answers with the request it got: its
// first line, then each header field as "Name: value" lines, sorted as
// net/http gives them, then the body.
func echoInstance(t *testing.T, name string) string {
	t.Helper()
	s := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", name)
		var b strings.Builder
		b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\n")
		b.WriteString("Host: " + r.Host + "\n")
		for k, vs := range r.Header {
			for _, v := range vs {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		body, _ := io.ReadAll(r.Body)
		b.WriteString("\n")
		b.Write(body)
		io.WriteString(w, b.String())
	}))
	return s
}

// newInstance starts a real HTTP server on loopback and returns its address.
func newInstance(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// headerLines parses an echoInstance body's header lines.
func headerLines(body string) http.Header {
	h := http.Header{}
	lines := strings.Split(body, "\n")
	for _, l := range lines[1:] {
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ": ")
		h.Add(k, v)
	}
	return h
}

func table1(version string, sticky bool, maxBody int64, addrs ...string) routing.Table {
	return routing.Table{Services: []routing.Service{{
		Name:         "hello",
		Policy:       mustCompilePolicy(policy.Policy{Split: map[string]int{version: 100}}),
		Versions:     []routing.Version{{Name: version, Addrs: addrs}},
		Sticky:       sticky,
		MaxBodyBytes: maxBody,
	}}}
}

func mustCompilePolicy(p policy.Policy) *policy.Compiled {
	c, err := policy.Compile(p)
	if err != nil {
		panic(err)
	}
	return c
}

// sendBody sends a request with a body to the router with the given Host
// header and reads the whole response.
func sendBody(t *testing.T, method, url, host, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}
