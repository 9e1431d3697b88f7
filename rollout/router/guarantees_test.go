package router

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/rollout/policy"
)

// TestDeadInstance: an instance that refuses connections is out of
// rotation at once, every request (even a POST: nothing was sent) goes to
// the live one, and the dead one is tried again later.
func TestDeadInstance(t *testing.T) {
	t.Parallel()
	live := instance(t, "live")
	dead := deadAddr(t)
	r, base := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{dead, addrOf(live)}}},
	}}})
	for i := range 6 {
		method := "GET"
		if i%2 == 1 {
			method = "POST"
		}
		resp := sendBody(t, method, base+"/", "hello.sluice.test", "payload")
		if resp.status != 200 || resp.header.Get("X-Instance") != "live" {
			t.Fatalf("%s %d: status %d from %q (%q); want 200 from live", method, i, resp.status, resp.header.Get("X-Instance"), resp.body)
		}
	}
	r.mu.Lock()
	b := r.backends[dead]
	r.mu.Unlock()
	if !b.down() {
		t.Fatalf("the dead instance is still in rotation")
	}

	// The instance comes back on the same address: after the backoff
	// it gets requests again.
	ln, err := net.Listen("tcp", dead)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", dead, err)
	}
	back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance", "back")
	})}
	go back.Serve(ln)
	defer back.Close()
	time.Sleep(downMin + 100*time.Millisecond)
	seen := map[string]int{}
	for range 6 {
		seen[get(t, base, "hello.sluice.test", "/").header.Get("X-Instance")]++
	}
	if seen["back"] == 0 || seen["live"] == 0 {
		t.Errorf("after the backoff, instances served %v; want both", seen)
	}
}

// brokenInstance accepts connections, reads a request head and hangs up
// without answering (an instance that dies mid-request). It counts them.
func brokenInstance(t *testing.T) (string, *atomic.Int64) {
	return droppingInstance(t, false)
}

// droppingInstance is brokenInstance; with reset, it resets the
// connection (RST) instead of closing it.
func droppingInstance(t *testing.T, reset bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if reset {
				c.(*net.TCPConn).SetLinger(0)
			}
			go func() {
				defer c.Close()
				if skipHead(bufio.NewReader(c)) == nil {
					n.Add(1)
				}
			}()
		}
	}()
	return ln.Addr().String(), &n
}

// TestRetryIdempotent: a request an instance dropped is sent again to
// another instance of the same version when its method is idempotent; a
// POST is not (it may have been processed) and gets 502.
func TestRetryIdempotent(t *testing.T) {
	t.Parallel()
	broken, hits := brokenInstance(t)
	live := instance(t, "live")
	_, base := startRouter(t, routing.Table{Services: []routing.Service{
		{
			Name:     "hello",
			Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
			Versions: []routing.Version{{Name: "hello-001", Addrs: []string{broken, addrOf(live)}}},
		},
		{
			Name:     "world",
			Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"world-001": 100}}),
			Versions: []routing.Version{{Name: "world-001", Addrs: []string{broken}}},
		},
	}})
	for i := range 6 {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			req, _ := http.NewRequest(method, base+"/", nil)
			req.Host = "hello.sluice.test"
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Instance") != "live" {
				t.Fatalf("%s %d: status %d from %q; want 200 from live", method, i, resp.StatusCode, resp.Header.Get("X-Instance"))
			}
		}
	}
	if hits.Load() == 0 {
		t.Fatalf("the broken instance got no request: nothing was retried")
	}
	before := hits.Load()
	req, _ := http.NewRequest("POST", base+"/", strings.NewReader("once"))
	req.Host = "world.sluice.test"
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get(VersionHeader) != "world-001" {
		t.Errorf("POST to a dropping instance: status %d, version %q; want 502 from world-001", resp.StatusCode, resp.Header.Get(VersionHeader))
	}
	if n := hits.Load() - before; n != 1 {
		t.Errorf("the POST reached the instance %d times; want exactly 1", n)
	}
}

// TestUpstreamTimeout: an instance slower than UpstreamTimeout gives 504,
// in about that time, and the client's connection stays usable.
func TestUpstreamTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	slow := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "done")
	}))
	const timeout = 200 * time.Millisecond
	_, base := startRouter(t, table1("hello-001", false, 0, slow), WithLimits(Limits{UpstreamTimeout: timeout}))
	rc := dialRaw(t, base)
	start := time.Now()
	rc.send("GET /slow HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	resp := rc.read("GET")
	took := time.Since(start)
	if resp.status != 504 || resp.header.Get(VersionHeader) != "hello-001" {
		t.Fatalf("status %d, version %q; want 504 from hello-001", resp.status, resp.header.Get(VersionHeader))
	}
	if took < timeout/2 || took > 3*time.Second {
		t.Errorf("504 came after %v; want about %v", took, timeout)
	}
	rc.send("GET /fast HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	if resp := rc.read("GET"); resp.status != 200 || resp.body != "done" {
		t.Errorf("next request on the connection: %d %q; want 200 done", resp.status, resp.body)
	}
}

// TestSticky: a sticky service pins a client to the version the split gave
// it while the policy holds that version; rules still win; version URLs
// and non-sticky services set no cookie.
func TestSticky(t *testing.T) {
	t.Parallel()
	a, b := instance(t, "a"), instance(t, "b")
	tbl := func(split map[string]int, sticky bool) routing.Table {
		return routing.Table{Services: []routing.Service{{
			Name: "hello",
			Policy: mustCompile(t, policy.Policy{
				Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"beta": "1"}}},
				Split: split,
			}),
			Versions: []routing.Version{
				{Name: "hello-001", Addrs: []string{addrOf(a)}},
				{Name: "hello-002", Addrs: []string{addrOf(b)}},
			},
			Sticky: sticky,
		}}}
	}
	r, base := startRouter(t, tbl(map[string]int{"hello-001": 50, "hello-002": 50}, true))
	send := func(query, cookie string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/"+query, nil)
		req.Host = "hello.sluice.test"
		if cookie != "" {
			req.Header.Set("Cookie", "other=1; "+cookie)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
	}
	first := send("", "")
	pinned := first.header.Get(VersionHeader)
	want := "sluice-hello=" + pinned + "; Path=/; HttpOnly; SameSite=Lax"
	if got := first.header.Get("Set-Cookie"); got != want {
		t.Fatalf("first response Set-Cookie = %q; want %q", got, want)
	}
	cookie := "sluice-hello=" + pinned
	for range 20 {
		resp := send("", cookie)
		if v := resp.header.Get(VersionHeader); v != pinned {
			t.Fatalf("pinned to %s, served by %s", pinned, v)
		}
		if sc := resp.header.Get("Set-Cookie"); sc != "" {
			t.Fatalf("a pinned client got Set-Cookie %q", sc)
		}
	}
	if resp := send("?beta=1", "sluice-hello=hello-001"); resp.header.Get(VersionHeader) != "hello-002" || resp.header.Get("Set-Cookie") != "" {
		t.Errorf("a matching rule: served by %s, Set-Cookie %q; want hello-002 and none", resp.header.Get(VersionHeader), resp.header.Get("Set-Cookie"))
	}
	if resp := send("", "sluice-hello=hello-404"); resp.header.Get("Set-Cookie") == "" {
		t.Errorf("a cookie for an unknown version set no new cookie")
	}

	// hello-001 leaves the policy: its clients move and are pinned anew.
	r.Update(tbl(map[string]int{"hello-001": 0, "hello-002": 100}, true))
	resp := send("", "sluice-hello=hello-001")
	if v, sc := resp.header.Get(VersionHeader), resp.header.Get("Set-Cookie"); v != "hello-002" || !strings.HasPrefix(sc, "sluice-hello=hello-002;") {
		t.Errorf("after hello-001 left the split: served by %s, Set-Cookie %q; want hello-002 and a cookie for it", v, sc)
	}
	// A rule keeps a version in the policy, so its cookie still pins.
	r.Update(tbl(map[string]int{"hello-001": 100}, true))
	if v := send("", "sluice-hello=hello-002").header.Get(VersionHeader); v != "hello-002" {
		t.Errorf("a version held by a rule: cookie pinned to %s; want hello-002", v)
	}

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "hello-001.hello.sluice.test"
	if resp, err := testClient.Do(req); err != nil || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("version URL: err %v, Set-Cookie %q; want none", err, resp.Header.Get("Set-Cookie"))
	} else {
		resp.Body.Close()
	}
	r.Update(tbl(map[string]int{"hello-001": 50, "hello-002": 50}, false))
	if sc := send("", "").header.Get("Set-Cookie"); sc != "" {
		t.Errorf("a service that is not sticky set cookie %q", sc)
	}
}

// hashInstance answers POSTs with the length and SHA-256 of the body it
// read, and GET /big?n=N with N bytes (a multiple of 16) of a pattern.
func hashInstance(t *testing.T) string {
	return newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Write(bytes.Repeat([]byte("0123456789abcdef"), n/16))
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	}))
}

// TestLargeBodies: large uploads (with a length and chunked) and downloads
// stream through whole, through the large buffers and, when every one of
// those is taken, by splice. Not parallel: it takes every large buffer of
// the process for the splice case.
func TestLargeBodies(t *testing.T) {
	t.Run("buffered", testLargeBodies)
	t.Run("splice", func(t *testing.T) {
		for range largeSlots {
			largeFree <- struct{}{}
		}
		defer func() {
			for range largeSlots {
				<-largeFree
			}
		}()
		testLargeBodies(t)
	})
}

func testLargeBodies(t *testing.T) {
	_, base := startRouter(t, table1("hello-001", false, 0, hashInstance(t)))
	const size = 6 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	sum := sha256.Sum256(data)
	want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:]))
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(data)
		if chunked {
			body = io.MultiReader(body) // unknown length: the client sends it chunked
		}
		req, _ := http.NewRequest("POST", base+"/upload", body)
		req.Host = "hello.sluice.test"
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != want {
			t.Errorf("upload (chunked %v): %d %q; want 200 %q", chunked, resp.StatusCode, got, want)
		}
	}
	resp := get(t, base, "hello.sluice.test", "/big?n="+strconv.Itoa(size))
	wantBody := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	if resp.status != 200 || resp.body != string(wantBody) {
		t.Errorf("download: status %d, %d bytes; want 200 and %d bytes of the pattern", resp.status, len(resp.body), size)
	}
}

// TestFullDuplex: an instance may answer while the request body is still
// coming, and each side sees the other's bytes as they are sent.
func TestFullDuplex(t *testing.T) {
	t.Parallel()
	inst := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		br := bufio.NewReader(r.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(w, "pong "+l)
			w.(http.Flusher).Flush()
		}
	}))
	_, base := startRouter(t, table1("hello-001", false, 0, inst))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/duplex", pr)
	req.Host = "hello.sluice.test"
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := testClient.Do(req)
		if err != nil {
			t.Error(err)
			close(respc)
			return
		}
		respc <- resp
	}()
	io.WriteString(pw, "ping 1\n")
	resp := <-respc
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= 3; i++ {
		if i > 1 {
			fmt.Fprintf(pw, "ping %d\n", i)
		}
		lc := make(chan string, 1)
		go func() { l, _ := br.ReadString('\n'); lc <- l }()
		select {
		case l := <-lc:
			if want := fmt.Sprintf("pong ping %d\n", i); l != want {
				t.Fatalf("got %q; want %q", l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer to ping %d while the body is still open", i)
		}
	}
	pw.Close()
}

// upgradeInstance switches to an upper-casing echo on "Upgrade: echo".
func upgradeInstance(t *testing.T) string {
	return newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Sluice-Version: spoofed\r\n\r\n")
		for {
			l, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, strings.ToUpper(l))
		}
	}))
}

// TestUpgrade: Upgrade requests (WebSocket and others) pass through; the
// tunnel counts in flight until it closes, so Drain waits for it.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	inst := upgradeInstance(t)
	r, base := startRouter(t, table1("hello-001", false, 0, inst))
	rc := dialRaw(t, base)
	rc.send("GET /ws HTTP/1.1\r\nHost: hello.sluice.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\nfirst\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get(VersionHeader) != "hello-001" {
		t.Fatalf("status %d, Upgrade %q, version %q; want 101, echo, hello-001", resp.StatusCode, resp.Header.Get("Upgrade"), resp.Header.Get(VersionHeader))
	}
	for _, l := range []string{"first\n", "second\n"} {
		if l == "second\n" {
			rc.send(l)
		}
		got, err := rc.br.ReadString('\n')
		if err != nil || got != strings.ToUpper(l) {
			t.Fatalf("echo of %q = %q, %v", l, got, err)
		}
	}

	r.Update(table1("hello-002", false, 0, upgradeInstance(t)))
	drained := drainHeld(t, r, inst, "a tunnel to the instance was open")
	rc.c.Close()
	if err := <-drained; err != nil {
		t.Fatalf("Drain after the tunnel closed: %v", err)
	}
}

// TestForwardingHeaders: the instance gets X-Forwarded-For/-Host/-Proto and
// Forwarded describing the client, a request id (the client's or a new
// one), and no hop-by-hop field; the client gets no hop-by-hop field from
// the instance and the router's X-Sluice-Version.
func TestForwardingHeaders(t *testing.T) {
	t.Parallel()
	echo := echoInstance(t, "echo")
	hop := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Secret")
		h.Set("X-Secret", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set(VersionHeader, "spoofed")
		h.Set("X-Kept", "yes")
		io.WriteString(w, "ok")
	}))
	_, base := startRouter(t, routing.Table{Services: []routing.Service{
		{Name: "hello", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
			Versions: []routing.Version{{Name: "hello-001", Addrs: []string{echo}}}},
		{Name: "hop", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hop-001": 100}}),
			Versions: []routing.Version{{Name: "hop-001", Addrs: []string{hop}}}},
	}})
	rc := dialRaw(t, base)
	rc.send("GET /p?q=1 HTTP/1.1\r\nHost: hello.sluice.test:8000\r\nConnection: X-Hop\r\nX-Hop: 1\r\n" +
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n" +
		"X-Real-IP: 6.6.6.6\r\nX-Request-Id: abc-123\r\nX-Custom: kept\r\nCookie: a=1\r\n\r\n")
	resp := rc.read("GET")
	if resp.status != 200 {
		t.Fatalf("status %d: %q", resp.status, resp.body)
	}
	got := headerLines(resp.body)
	if line := strings.SplitN(resp.body, "\n", 2)[0]; line != "GET /p?q=1 HTTP/1.1" {
		t.Errorf("request line at the instance = %q", line)
	}
	for k, want := range map[string]string{
		"Host":              "hello.sluice.test:8000",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  "hello.sluice.test:8000",
		"X-Forwarded-Proto": "http",
		"Forwarded":         `for=127.0.0.1;proto=http;host="hello.sluice.test:8000"`,
		"X-Request-Id":      "abc-123",
		"X-Custom":          "kept",
		"Cookie":            "a=1",
	} {
		if vs := got.Values(k); len(vs) != 1 || vs[0] != want {
			t.Errorf("instance got %s = %q; want %q", k, vs, want)
		}
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Te", "Proxy-Connection", "Connection"} {
		if vs := got.Values(k); len(vs) > 0 {
			t.Errorf("instance got hop-by-hop %s = %q", k, vs)
		}
	}
	if vs := got.Values("X-Real-Ip"); len(vs) > 0 {
		t.Errorf("instance got the client's X-Real-IP %q; want it dropped", vs)
	}
	ids := map[string]bool{}
	for range 2 {
		rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
		id := headerLines(rc.read("GET").body).Get("X-Request-Id")
		if len(id) < 8 || ids[id] {
			t.Errorf("generated X-Request-Id %q: want a fresh one", id)
		}
		ids[id] = true
	}

	rc.send("GET / HTTP/1.1\r\nHost: hop.sluice.test\r\n\r\n")
	resp = rc.read("GET")
	for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.header.Get(k); v != "" {
			t.Errorf("client got hop-by-hop %s = %q", k, v)
		}
	}
	if vs := resp.header.Values(VersionHeader); len(vs) != 1 || vs[0] != "hop-001" {
		t.Errorf("client got %s = %q; want [hop-001]", VersionHeader, vs)
	}
	if resp.header.Get("X-Kept") != "yes" || resp.body != "ok" {
		t.Errorf("end-to-end field or body lost: %q %q", resp.header.Get("X-Kept"), resp.body)
	}
}

// TestTrustedProxies: X-Forwarded-For (and Forwarded) from a peer listed
// in WithTrustedProxies is kept and the peer appended, with its
// X-Forwarded-Proto and -Host; from any other peer (an attacker spoofing
// its address) those fields are replaced by what the router saw. X-Real-IP
// is dropped either way.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	const spoof = "GET / HTTP/1.1\r\nHost: hello.sluice.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n" +
		"Forwarded: for=1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\nX-Real-IP: 1.2.3.4\r\n\r\n"
	tests := []struct {
		name    string
		trusted []netip.Prefix
		want    map[string]string
	}{
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}, map[string]string{
			"X-Forwarded-For":   "1.2.3.4, 5.6.7.8, 127.0.0.1",
			"Forwarded":         `for=1.2.3.4, for=127.0.0.1;proto=http;host="hello.sluice.test"`,
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "www.example.com",
		}},
		{"untrusted peer", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"Forwarded":         `for=127.0.0.1;proto=http;host="hello.sluice.test"`,
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "hello.sluice.test",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := echoInstance(t, "echo")
			_, base := startRouter(t, table1("hello-001", false, 0, echo), WithTrustedProxies(tt.trusted))
			rc := dialRaw(t, base)
			rc.send(spoof)
			resp := rc.read("GET")
			got := headerLines(resp.body)
			for k, want := range tt.want {
				if vs := got.Values(k); len(vs) != 1 || vs[0] != want {
					t.Errorf("instance got %s = %q; want [%q]", k, vs, want)
				}
			}
			if vs := got.Values("X-Real-Ip"); len(vs) > 0 {
				t.Errorf("instance got X-Real-IP %q; want it dropped", vs)
			}
		})
	}
}

// TestMetricsExact: a response is in the metrics by the time its client
// has it whole, even when its last write is a large one the client has to
// read before it completes.
func TestMetricsExact(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 64<<10)
	inst := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
			return
		}
		io.WriteString(w, "small")
	}))
	r, base := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:   "hello",
		Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{
			{Name: "hello-001", Addrs: []string{inst}},
			{Name: "hello-002"}, // no instance: 503
		},
	}}})
	for i := range 20 {
		for _, p := range []string{"/big", "/small"} {
			resp := get(t, base, "hello.sluice.test", p)
			st := r.Stats("hello-001")
			if resp.status != 200 || st.Status2xx != st.Requests || st.InFlight != 0 {
				t.Fatalf("round %d %s: after the client read %d, stats say %d requests, %d 2xx, %d in flight; want every request counted",
					i, p, resp.status, st.Requests, st.Status2xx, st.InFlight)
			}
		}
		get(t, base, "hello-002.hello.sluice.test", "/")
		if st := r.Stats("hello-002"); st.Status5xx != st.Requests || st.InFlight != 0 {
			t.Fatalf("round %d: after a 503, stats say %d requests, %d 5xx, %d in flight", i, st.Requests, st.Status5xx, st.InFlight)
		}
	}
}

// TestMetrics: per-version counters, latency and in-flight, through Stats
// and the Prometheus collector.
func TestMetrics(t *testing.T) {
	t.Parallel()
	slow, release := slowInstance(t, "slow")
	defer release()
	a := instance(t, "a")
	r, base := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:   "hello",
		Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{
			{Name: "hello-001", Addrs: []string{addrOf(a)}},
			{Name: "hello-002"}, // no instance: 503
			{Name: "hello-003", Addrs: []string{addrOf(slow)}},
		},
	}}})
	for range 5 {
		get(t, base, "hello.sluice.test", "/")
	}
	for range 2 {
		get(t, base, "hello-002.hello.sluice.test", "/")
	}
	st := r.Stats("hello-001")
	if st.Requests != 5 || st.Status2xx != 5 || st.Responses() != 5 || st.InFlight != 0 || st.ErrorRate() != 0 {
		t.Errorf("hello-001 stats = %+v; want 5 requests, 5 2xx, none in flight", st)
	}
	if st.P50 <= 0 || st.P99 < st.P50 || st.P99 > time.Second || st.LatencySum <= 0 {
		t.Errorf("hello-001 latency p50 %v p99 %v sum %v; want 0 < p50 <= p99 < 1s", st.P50, st.P99, st.LatencySum)
	}
	if st := r.Stats("hello-002"); st.Requests != 2 || st.Status5xx != 2 || st.ErrorRate() != 1 {
		t.Errorf("hello-002 stats = %+v; want 2 requests, 2 5xx", st)
	}
	if st := r.Stats("nope"); st != (routing.Stats{}) {
		t.Errorf("unknown version stats = %+v; want zero", st)
	}

	body := func() <-chan string {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Host = "hello-003.hello.sluice.test"
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		c := make(chan string, 1)
		go func() { b, _ := io.ReadAll(resp.Body); resp.Body.Close(); c <- string(b) }()
		return c
	}()
	if n := r.Stats("hello-003").InFlight; n != 1 {
		t.Errorf("in flight during a slow response = %d; want 1", n)
	}
	release()
	<-body

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string, labels map[string]string) *dto.Metric {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
						continue next
					}
				}
				return m
			}
		}
		t.Fatalf("no %s%v in %d families", name, labels, len(mfs))
		return nil
	}
	v1 := map[string]string{"service": "hello", "version": "hello-001"}
	if v := find("sluice_router_requests_total", v1).GetCounter().GetValue(); v != 5 {
		t.Errorf("sluice_router_requests_total = %v; want 5", v)
	}
	if v := find("sluice_router_responses_total", map[string]string{"version": "hello-002", "code": "5xx"}).GetCounter().GetValue(); v != 2 {
		t.Errorf("5xx responses of hello-002 = %v; want 2", v)
	}
	if h := find("sluice_router_request_duration_seconds", v1).GetHistogram(); h.GetSampleCount() != 5 || h.GetSampleSum() <= 0 {
		t.Errorf("duration histogram count %d sum %v; want 5 and > 0", h.GetSampleCount(), h.GetSampleSum())
	}
	if v := find("sluice_router_in_flight_requests", v1).GetGauge().GetValue(); v != 0 {
		t.Errorf("in flight = %v; want 0", v)
	}
}
