package router

import (
	"context"
	"errors"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// countingEcho is an instance that answers "METHOD URI HOST BODY" and
// counts the requests it got.
func countingEcho(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	addr := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Instance", "echo")
		io.WriteString(w, r.Method+" "+r.RequestURI+" "+r.Host+" "+string(body))
	}))
	return addr, &n
}

// TestMalformedRequests: what two parsers could read two ways is refused
// before it reaches an instance (request smuggling), and the connection
// closes.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	inst, hits := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst))
	const host = "Host: hello.sluice.test\r\n"
	tests := []struct {
		name   string
		req    string
		status int
	}{
		{"length and chunked", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two different lengths", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"signed length", "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello", 400},
		{"gzip coding", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"chunked twice", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"space before colon", "GET / HTTP/1.1\r\nHost : hello.sluice.test\r\n\r\n", 400},
		{"obsolete folding", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  more\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\r\n" + host + "X-A: 1\nX-B: 2\r\n\r\n", 400},
		// A head of bare-LF lines never has the CRLFCRLF that ends a head:
		// it is refused as soon as it is seen, not waited on.
		{"bare LF head", "GET / HTTP/1.1\nHost: hello.sluice.test\n\n", 400},
		{"bare LF request line", "GET / HTTP/1.1\n", 400},
		{"bare LF end", "GET / HTTP/1.1\r\n" + host + "\n", 400},
		{"control character", "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", 400},
		{"bad name", "GET / HTTP/1.1\r\n" + host + "X(A): 1\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", 400},
		{"HTTP/2 line", "GET / HTTP/2.0\r\n" + host + "\r\n", 400},
		{"garbage", "GARBAGE\r\n\r\n", 400},
		{"unknown expectation", "POST / HTTP/1.1\r\n" + host + "Expect: magic\r\nContent-Length: 1\r\n\r\nx", 417},
		{"bad chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			rc := dialRaw(t, base)
			rc.send(tt.req)
			resp := rc.read("GET")
			if resp.status != tt.status {
				t.Fatalf("status %d (%q); want %d", resp.status, resp.body, tt.status)
			}
			if !resp.close || !rc.closed() {
				t.Errorf("the connection stayed open after a malformed request")
			}
			// A bad chunk is found while the body streams: the instance
			// got the head, then a connection cut before the body's end.
			if tt.name != "bad chunk size" && hits.Load() != before {
				t.Errorf("the instance got the request")
			}
		})
	}
}

// TestPipelining: requests sent back to back on one connection are
// answered in order.
func TestPipelining(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst))
	rc := dialRaw(t, base)
	rc.send("GET /1 HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: hello.sluice.test\r\nContent-Length: 4\r\n\r\nbody" +
		"GET /3 HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	for _, want := range []string{"GET /1 hello.sluice.test ", "POST /2 hello.sluice.test body", "GET /3 hello.sluice.test "} {
		if resp := rc.read("GET"); resp.status != 200 || resp.body != want {
			t.Fatalf("got %d %q; want 200 %q", resp.status, resp.body, want)
		}
	}
}

// TestHTTP10: HTTP/1.0 clients get a close unless they ask for keep-alive,
// and never a chunked body.
func TestHTTP10(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	chunky := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1 ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
	}))
	_, base := startRouter(t, routing.Table{Services: []routing.Service{
		{Name: "hello", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
			Versions: []routing.Version{{Name: "hello-001", Addrs: []string{inst}}}},
		{Name: "chunky", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"chunky-001": 100}}),
			Versions: []routing.Version{{Name: "chunky-001", Addrs: []string{chunky}}}},
	}})
	rc := dialRaw(t, base)
	rc.send("GET /a HTTP/1.0\r\nHost: hello.sluice.test\r\nConnection: keep-alive\r\n\r\n")
	if resp := rc.read("GET"); resp.status != 200 || resp.close || resp.header.Get("Connection") != "keep-alive" {
		t.Fatalf("keep-alive 1.0: %d close=%v Connection=%q", resp.status, resp.close, resp.header.Get("Connection"))
	}
	rc.send("GET /b HTTP/1.0\r\nHost: chunky.sluice.test\r\n\r\n")
	resp := rc.read("GET")
	if resp.status != 200 || resp.body != "part1 part2" || len(resp.te) != 0 || !resp.close {
		t.Fatalf("chunked instance to 1.0: %d %q te=%v close=%v; want a plain body and a close", resp.status, resp.body, resp.te, resp.close)
	}
	if !rc.closed() {
		t.Errorf("connection open after a 1.0 response without keep-alive")
	}
}

// TestAbsoluteForm: a request target with a scheme (http or https) and
// host is routed by that host and reaches the instance in origin form.
func TestAbsoluteForm(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst))
	rc := dialRaw(t, base)
	for _, target := range []string{"http://hello.sluice.test/x?y=1", "https://hello.sluice.test/x?y=1", "HTTPS://hello.sluice.test:443/x?y=1"} {
		rc.send("GET " + target + " HTTP/1.1\r\nHost: ignored.example\r\n\r\n")
		want := "GET /x?y=1 hello.sluice.test "
		if strings.Contains(target, ":443") {
			want = "GET /x?y=1 hello.sluice.test:443 "
		}
		if resp := rc.read("GET"); resp.status != 200 || resp.body != want {
			t.Errorf("%s: got %d %q; want 200 %q", target, resp.status, resp.body, want)
		}
	}
}

// TestExpectContinue: the client is told to send its body once the request
// reached an instance.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst))
	rc := dialRaw(t, base)
	rc.send("POST /up HTTP/1.1\r\nHost: hello.sluice.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, err := rc.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v; want 100 Continue", line, err)
	}
	if l, _ := rc.br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q", l)
	}
	rc.send("hello")
	if resp := rc.read("POST"); resp.status != 200 || resp.body != "POST /up hello.sluice.test hello" {
		t.Errorf("got %d %q", resp.status, resp.body)
	}
}

// TestBodyLimits: bodies over the service's limit are refused with 413
// before they reach an instance, whether their length is declared or not.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	inst, hits := countingEcho(t)
	r, base := startRouter(t, table1("hello-001", false, 10, inst))
	post := func(body io.Reader) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/", body)
		req.Host = "hello.sluice.test"
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(strings.NewReader("0123456789")); st != 200 {
		t.Errorf("10 bytes: %d; want 200", st)
	}
	before := hits.Load()
	if st := post(strings.NewReader("0123456789a")); st != 413 {
		t.Errorf("11 bytes with a length: %d; want 413", st)
	}
	if hits.Load() != before {
		t.Errorf("an over-long body with a length reached the instance")
	}
	if st := post(io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("abcdef"))); st != 413 {
		t.Errorf("16 bytes chunked: %d; want 413", st)
	}
	r.Update(table1("hello-001", false, -1, inst))
	if st := post(strings.NewReader(strings.Repeat("x", 1<<20))); st != 200 {
		t.Errorf("no limit, 1 MiB: %d; want 200", st)
	}
}

// TestHeaderLimit: a head over MaxHeaderBytes gets 431.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	inst, hits := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst), WithLimits(Limits{MaxHeaderBytes: 2048}))
	rc := dialRaw(t, base)
	rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\nX-Big: " + strings.Repeat("b", 1500) + "\r\n\r\n")
	if resp := rc.read("GET"); resp.status != 200 {
		t.Fatalf("a head under the limit: %d", resp.status)
	}
	rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\nX-Big: " + strings.Repeat("b", 4000) + "\r\n\r\n")
	if resp := rc.read("GET"); resp.status != 431 || !resp.close {
		t.Fatalf("a head over the limit: %d close=%v; want 431 and close", resp.status, resp.close)
	}
	if hits.Load() != 1 {
		t.Errorf("the instance got %d requests; want 1", hits.Load())
	}
}

// TestTimeouts: a client that sends its head too slowly is cut off after
// ReadTimeout, an idle keep-alive connection after IdleTimeout.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	const readTimeout, idleTimeout = 300 * time.Millisecond, 400 * time.Millisecond
	_, base := startRouter(t, table1("hello-001", false, 0, inst),
		WithLimits(Limits{ReadTimeout: readTimeout, IdleTimeout: idleTimeout}))

	// A field every 50 ms never completes the head in time.
	slow := dialRaw(t, base)
	closed := make(chan time.Duration, 1)
	go func() {
		slow.c.Write([]byte("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n"))
		for range 100 {
			time.Sleep(50 * time.Millisecond)
			if _, err := slow.c.Write([]byte("X-Slow: 1\r\n")); err != nil {
				break
			}
		}
	}()
	go func() {
		t0 := time.Now()
		io.Copy(io.Discard, slow.c)
		closed <- time.Since(t0)
	}()
	if d := <-closed; d < readTimeout/2 || d > 3*time.Second {
		t.Errorf("slow head cut off after %v; want about %v", d, readTimeout)
	}

	rc := dialRaw(t, base)
	rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	rc.read("GET")
	start := time.Now()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.br.ReadByte()
	if d := time.Since(start); err == nil || d < idleTimeout/3 || d > 3*time.Second {
		t.Errorf("idle connection: err %v after %v; want closed after about %v", err, d, idleTimeout)
	}
}

// TestSlowloris: many clients trickling heads cannot keep the router from
// serving others, and are all cut off.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	const readTimeout = 400 * time.Millisecond
	_, base := startRouter(t, table1("hello-001", false, 0, inst),
		WithLimits(Limits{ReadTimeout: readTimeout, MaxConns: 64}))
	var wg sync.WaitGroup
	var cut atomic.Int64
	for range 40 {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Go(func() {
			go func() {
				for range 60 {
					if _, err := c.Write([]byte("X")); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				cut.Add(1)
			}
		})
	}
	for i := range 20 {
		if resp := get(t, base, "hello.sluice.test", "/"); resp.status != 200 {
			t.Fatalf("request %d during the attack: %d", i, resp.status)
		}
	}
	wg.Wait()
	if n := cut.Load(); n != 40 {
		t.Errorf("%d of 40 slow clients were cut off; want all", n)
	}
}

// TestMaxConns: past MaxConns a new connection closes an idle one to make
// room, or is refused when every connection is busy.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	inst, _ := countingEcho(t)
	r, base := startRouter(t, table1("hello-001", false, 0, inst), WithLimits(Limits{MaxConns: 3}))

	// Three busy connections (a head in progress): a fourth is refused.
	var busy []*rawClient
	for range 3 {
		rc := dialRaw(t, base)
		rc.send("GET / HTTP/1.1\r\n")
		busy = append(busy, rc)
	}
	waitConns(t, r, "three busy connections", func(n, active int) bool { return active == 3 })
	extra := dialRaw(t, base)
	extra.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	if !extra.closed() {
		t.Errorf("a connection past MaxConns with all busy was served")
	}
	for _, rc := range busy {
		rc.c.Close()
	}
	waitConns(t, r, "no connection", func(n, active int) bool { return n == 0 })

	// Three idle keep-alive connections: a fourth closes one and is served.
	var idle []*rawClient
	for range 3 {
		rc := dialRaw(t, base)
		rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
		rc.read("GET")
		idle = append(idle, rc)
	}
	extra = dialRaw(t, base)
	extra.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	if resp := extra.read("GET"); resp.status != 200 {
		t.Fatalf("a new connection with idle ones around: %d", resp.status)
	}
	// Each open connection waits out closed()'s second: wait for all at once.
	var n atomic.Int32
	var wg sync.WaitGroup
	for _, rc := range idle {
		wg.Go(func() {
			if rc.closed() {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if n := n.Load(); n != 1 {
		t.Errorf("%d idle connections were closed to make room; want 1", n)
	}
}

// waitConns waits until cond holds of the connections r serves: n in all,
// active of them busy with a request.
func waitConns(t *testing.T, r *Router, what string, cond func(n, active int) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		r.srv.mu.Lock()
		n, active := len(r.srv.conns), 0
		for c := range r.srv.conns {
			if c.state.Load() == stateActive {
				active++
			}
		}
		r.srv.mu.Unlock()
		if cond(n, active) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s: %d connections, %d busy", what, n, active)
		}
	}
}

// TestShutdown: Shutdown stops accepting, closes idle connections, lets a
// request in flight finish, then returns; Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	t.Parallel()
	slow, release := slowInstance(t, "slow")
	defer release()
	r := newRouter()
	r.Update(oneVersion(t, "hello-001", addrOf(slow)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	idleConn := dialRaw(t, base)
	idleConn.send("GET / HTTP/1.1\r\nHost: nope.sluice.test\r\n\r\n")
	idleConn.read("GET")
	body := startSlow(t, base)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- r.Shutdown(ctx)
	}()
	if !idleConn.closed() {
		t.Errorf("an idle connection was not closed by Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted after Shutdown")
	}
	release()
	if got := <-body; got != "slow first\nslow rest\n" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v; want nil", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v; want http.ErrServerClosed", err)
	}
	if err := r.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v; want http.ErrServerClosed", err)
	}
}

// TestShutdownTimeout: a request that does not finish in time makes
// Shutdown return ctx's error after closing what is left.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	slow, release := slowInstance(t, "slow")
	defer release()
	r := newRouter()
	r.Update(oneVersion(t, "hello-001", addrOf(slow)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(ln)
	body := startSlow(t, "http://"+ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v; want context.DeadlineExceeded", err)
	}
	if got := <-body; !strings.HasPrefix(got, "error") {
		t.Errorf("the cut request got %q; want an error", got)
	}
}

// TestNoHang503: a version with no live instance answers 503 at once and
// the client's connection carries the next request.
func TestNoHang503(t *testing.T) {
	t.Parallel()
	a := instance(t, "a")
	_, base := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:   "hello",
		Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{
			{Name: "hello-001", Addrs: []string{deadAddr(t), deadAddr(t)}},
			{Name: "hello-002", Addrs: []string{addrOf(a)}},
		},
	}}})
	rc := dialRaw(t, base)
	for range 3 {
		start := time.Now()
		rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
		resp := rc.read("GET")
		if resp.status != 503 || resp.header.Get("Retry-After") == "" || resp.header.Get(VersionHeader) != "hello-001" || resp.close {
			t.Fatalf("status %d, Retry-After %q, version %q, close %v; want 503, a Retry-After, hello-001, keep-alive",
				resp.status, resp.header.Get("Retry-After"), resp.header.Get(VersionHeader), resp.close)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("503 took %v", d)
		}
	}
	rc.send("GET / HTTP/1.1\r\nHost: hello-002.hello.sluice.test\r\n\r\n")
	if resp := rc.read("GET"); resp.status != 200 {
		t.Errorf("next request on the connection: %d", resp.status)
	}
}

// TestHeldBodyRetried: a request body up to 64 KiB declared with
// Content-Length is read whole before the request goes out, so an
// idempotent request with one (a PUT of 20 KiB here) that an instance drops
// is sent again to another instance, body and all, as a bodiless GET is.
func TestHeldBodyRetried(t *testing.T) {
	t.Parallel()
	broken, hits := brokenInstance(t)
	live, _ := countingEcho(t)
	_, base := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{broken, live}}},
	}}})
	body := strings.Repeat("0123456789abcdef", 20<<10/16)
	for i := range 4 {
		resp := sendBody(t, "PUT", base+"/doc", "hello.sluice.test", body)
		if resp.status != 200 || resp.body != "PUT /doc hello.sluice.test "+body {
			t.Fatalf("PUT %d: status %d, %d bytes back; want 200 and the whole body echoed", i, resp.status, len(resp.body))
		}
	}
	if hits.Load() == 0 {
		t.Fatal("the dropping instance got no request: nothing was retried")
	}
}

// TestHeldBodyStalled: a client that declares a small body and stops
// sending it is cut off after ReadTimeout, and the instance never sees the
// partial request (no instance connection waits on a slow upload).
func TestHeldBodyStalled(t *testing.T) {
	t.Parallel()
	inst, n := countingEcho(t)
	_, base := startRouter(t, table1("hello-001", false, 0, inst),
		WithLimits(Limits{ReadTimeout: 300 * time.Millisecond}))
	rc := dialRaw(t, base)
	rc.send("POST /upload HTTP/1.1\r\nHost: hello.sluice.test\r\nContent-Length: 1000\r\n\r\nonly the start")
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(rc.br); err != nil {
		t.Fatalf("the router did not close the stalled connection: %v", err)
	}
	// A whole request on another connection, so the instance is known to
	// have handled everything sent to it before.
	if r := get(t, base, "hello.sluice.test", "/after"); r.status != 200 {
		t.Fatalf("GET after: status %d", r.status)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("the instance got %d requests; want 1 (the GET only, not the stalled upload)", got)
	}
}
