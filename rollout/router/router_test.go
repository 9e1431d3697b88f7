package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

const testBase = "sluice.test"

// instance starts a real HTTP server that answers with its name and echoes
// what it received in headers. It also sends a X-Sluice-Version of its own,
// which the router must replace.
func instance(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Instance", name)
		h.Set("X-Got-Host", r.Host)
		h.Set("X-Got-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		h.Set("X-Got-Forwarded-Host", r.Header.Get("X-Forwarded-Host"))
		h.Set("X-Got-Forwarded-Proto", r.Header.Get("X-Forwarded-Proto"))
		h.Set(VersionHeader, "spoofed-by-instance")
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s %s %s?%s %s", name, r.Method, r.URL.Path, r.URL.RawQuery, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func addrOf(s *httptest.Server) string { return s.Listener.Addr().String() }

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func mustCompile(t testing.TB, p policy.Policy) *policy.Compiled {
	t.Helper()
	c, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveFront runs r.Serve on a loopback listener until the test ends.
func serveFront(t *testing.T, r *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v; want http.ErrServerClosed", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func newRouter(opts ...Option) *Router {
	return New(testBase, append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
}

// startRouter serves a Router with Serve on a real loopback listener.
func startRouter(t *testing.T, tbl routing.Table, opts ...Option) (*Router, string) {
	t.Helper()
	r := newRouter(opts...)
	r.Update(tbl)
	return r, serveFront(t, r)
}

var testClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

type response struct {
	status int
	header http.Header
	body   string
	close  bool     // the response said Connection: close (raw client only)
	te     []string // its transfer codings (raw client only)
}

// get sends a GET to the router with the given Host header.
func get(t *testing.T, front, host, pathQuery string) response {
	t.Helper()
	req, err := http.NewRequest("GET", front+pathQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", pathQuery, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestHostRouting(t *testing.T) {
	t.Parallel()
	a, b := instance(t, "a"), instance(t, "b")
	other := instance(t, "other")
	_, front := startRouter(t, routing.Table{Services: []routing.Service{
		{
			Name: "hello",
			Policy: mustCompile(t, policy.Policy{
				Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"env": "beta*"}}},
				Split: map[string]int{"hello-001": 100},
			}),
			Versions: []routing.Version{
				{Name: "hello-001", Addrs: []string{addrOf(a)}},
				{Name: "hello-002", Addrs: []string{addrOf(b)}},
			},
		},
		{
			Name:     "world",
			Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"world-001": 100}}),
			Versions: []routing.Version{{Name: "world-001", Addrs: []string{addrOf(other)}}},
		},
	}})

	tests := []struct {
		name     string
		host     string
		query    string
		status   int
		instance string // "" when no instance answers
		version  string // the X-Sluice-Version expected; "" for none
	}{
		{"service host uses the split", "hello.sluice.test", "", 200, "a", "hello-001"},
		{"service host uses the rules", "hello.sluice.test", "?env=beta-1", 200, "b", "hello-002"},
		{"port is stripped", "hello.sluice.test:8080", "", 200, "a", "hello-001"},
		{"case-insensitive", "HELLO.Sluice.TEST", "", 200, "a", "hello-001"},
		{"trailing dot", "hello.sluice.test.", "", 200, "a", "hello-001"},
		{"version host", "hello-002.hello.sluice.test", "", 200, "b", "hello-002"},
		{"version host ignores the rules", "hello-001.hello.sluice.test", "?env=beta", 200, "a", "hello-001"},
		{"version host, case and port", "Hello-002.HELLO.sluice.test:1234", "", 200, "b", "hello-002"},
		{"another service", "world.sluice.test", "?env=beta", 200, "other", "world-001"},
		{"unknown service", "nope.sluice.test", "", 404, "", ""},
		{"unknown version", "hello-009.hello.sluice.test", "", 404, "", ""},
		{"version of another service", "world-001.hello.sluice.test", "", 404, "", ""},
		{"version with a dot", "x.hello-001.hello.sluice.test", "", 404, "", ""},
		{"the base domain itself", "sluice.test", "", 404, "", ""},
		{"another domain", "hello.other.test", "", 404, "", ""},
		{"suffix without a dot", "hellosluice.test", "", 404, "", ""},
		{"ip address", "127.0.0.1", "", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, front, tt.host, "/"+tt.query)
			if resp.status != tt.status {
				t.Fatalf("status = %d (%q); want %d", resp.status, resp.body, tt.status)
			}
			if got := resp.header.Get("X-Instance"); got != tt.instance {
				t.Errorf("answered by instance %q; want %q", got, tt.instance)
			}
			if got := resp.header.Values(VersionHeader); tt.version == "" && len(got) != 0 || tt.version != "" && (len(got) != 1 || got[0] != tt.version) {
				t.Errorf("%s = %q; want %q", VersionHeader, got, tt.version)
			}
			if tt.status == 404 {
				if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("404 Content-Type = %q; want text/plain", ct)
				}
				if len(resp.body) == 0 || len(resp.body) > 100 {
					t.Errorf("404 body = %q; want a short text", resp.body)
				}
			}
		})
	}
}

func TestProxyPassesRequestAndResponse(t *testing.T) {
	t.Parallel()
	a := instance(t, "a")
	_, front := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{addrOf(a)}}},
	}}})
	req, err := http.NewRequest("POST", front+"/api/items?x=1&env=prod", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "Hello.sluice.test:8080"
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	checks := []struct{ what, got, want string }{
		{"body", string(body), "a POST /api/items?x=1&env=prod payload"},
		{"Host seen by the instance", resp.Header.Get("X-Got-Host"), "Hello.sluice.test:8080"},
		{"X-Forwarded-For", resp.Header.Get("X-Got-Forwarded-For"), "127.0.0.1"},
		{"X-Forwarded-Host", resp.Header.Get("X-Got-Forwarded-Host"), "Hello.sluice.test:8080"},
		{"X-Forwarded-Proto", resp.Header.Get("X-Got-Forwarded-Proto"), "http"},
		{VersionHeader, strings.Join(resp.Header.Values(VersionHeader), ","), "hello-001"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q; want %q", c.what, c.got, c.want)
		}
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	_, front := startRouter(t, routing.Table{Services: []routing.Service{
		{
			Name:   "hello",
			Policy: mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
			Versions: []routing.Version{
				{Name: "hello-001"}, // no live instance
				{Name: "hello-002", Addrs: []string{deadAddr(t)}},
			},
		},
		{Name: "fresh", Policy: mustCompile(t, policy.Policy{})}, // before its first version
		{Name: "nopolicy"},
		{
			Name:   "stale",
			Policy: mustCompile(t, policy.Policy{Split: map[string]int{"stale-007": 100}}), // not in the table
		},
	}})
	tests := []struct {
		name       string
		host       string
		status     int
		version    string
		retryAfter string
	}{
		{"version without instances", "hello.sluice.test", 503, "hello-001", "1"},
		{"version URL without instances", "hello-001.hello.sluice.test", 503, "hello-001", "1"},
		{"instance not listening", "hello-002.hello.sluice.test", 503, "hello-002", "1"},
		{"empty split", "fresh.sluice.test", 503, "", "1"},
		{"no policy", "nopolicy.sluice.test", 503, "", "1"},
		{"policy names a version the table lacks", "stale.sluice.test", 503, "stale-007", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, front, tt.host, "/")
			if resp.status != tt.status {
				t.Fatalf("status = %d (%q); want %d", resp.status, resp.body, tt.status)
			}
			if got := resp.header.Get(VersionHeader); got != tt.version {
				t.Errorf("%s = %q; want %q", VersionHeader, got, tt.version)
			}
			if got := resp.header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q; want %q", got, tt.retryAfter)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	a, b, c := instance(t, "a"), instance(t, "b"), instance(t, "c")
	_, front := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{addrOf(a), addrOf(b), addrOf(c)}}},
	}}})
	var got []string
	for range 9 {
		got = append(got, get(t, front, "hello.sluice.test", "/").header.Get("X-Instance"))
	}
	if s := strings.Join(got, ""); s != "abcabcabc" {
		t.Errorf("instances in order = %s; want abcabcabc", s)
	}
}

func TestStreaming(t *testing.T) {
	t.Parallel()
	more := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-more
		io.WriteString(w, "second\n")
	}))
	defer s.Close()
	defer close(more)
	_, front := startRouter(t, routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{"hello-001": 100}}),
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{addrOf(s)}}},
	}}})
	req, _ := http.NewRequest("GET", front+"/", nil)
	req.Host = "hello.sluice.test"
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	br := bufio.NewReader(resp.Body)
	go func() {
		l, _ := br.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "first\n" {
			t.Fatalf("first line = %q; want %q", l, "first\n")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first chunk did not arrive while the instance was still writing: the proxy buffers")
	}
}

func TestRouterDecide(t *testing.T) {
	t.Parallel()
	r := New(testBase)
	r.Update(routing.Table{Services: []routing.Service{{
		Name: "hello",
		Policy: mustCompile(t, policy.Policy{
			Rules: []policy.Rule{{Version: "hello-002", Match: map[string]string{"env": "beta"}}},
			Split: map[string]int{"hello-001": 100},
		}),
	}}})
	tests := []struct {
		service, query string
		want           policy.Decision
		ok             bool
	}{
		{"hello", "env=beta", policy.Decision{Version: "hello-002", Rule: 0}, true},
		{"HELLO", "", policy.Decision{Version: "hello-001", Rule: -1}, true},
		{"nope", "env=beta", policy.Decision{Rule: -1}, false},
	}
	for _, tt := range tests {
		got, ok := r.Decide(tt.service, tt.query)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Decide(%q, %q) = %+v, %v; want %+v, %v", tt.service, tt.query, got, ok, tt.want, tt.ok)
		}
	}
}

// oneVersion is a table serving hello from one version at addrs.
func oneVersion(t testing.TB, version string, addrs ...string) routing.Table {
	return routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   mustCompile(t, policy.Policy{Split: map[string]int{version: 100}}),
		Versions: []routing.Version{{Name: version, Addrs: addrs}},
	}}}
}

// TestUpdateUnderLoad rolls out one version after another while clients
// keep sending requests: every old instance is drained and then shut down,
// and not one request may fail.
func TestUpdateUnderLoad(t *testing.T) {
	t.Parallel()
	const rounds, workers = 8, 4
	first := instance(t, "hello-001")
	r, front := startRouter(t, oneVersion(t, "hello-001", addrOf(first)))

	var (
		stop     atomic.Bool
		failures atomic.Int64
		total    atomic.Int64
		mu       sync.Mutex
		served   = map[string]int{}
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for !stop.Load() {
				req, _ := http.NewRequest("GET", front+"/", nil)
				req.Host = "hello.sluice.test"
				resp, err := testClient.Do(req)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("request failed: %v", err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				v := resp.Header.Get(VersionHeader)
				if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), v+" ") {
					failures.Add(1)
					t.Errorf("request: status %d, version %q, body %q, err %v", resp.StatusCode, v, body, err)
					continue
				}
				mu.Lock()
				served[v]++
				mu.Unlock()
			}
		})
	}

	stopWorkers := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopWorkers() // also on a failed round, so the servers can close
	// waitServed waits until version has answered a request, so that each
	// version of the rollout is seen serving however loaded the machine.
	waitServed := func(version string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			mu.Lock()
			n := served[version]
			mu.Unlock()
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("version %s served no request in 10s", version)
			}
		}
	}

	prev := first
	for i := 2; i <= rounds; i++ {
		waitServed(fmt.Sprintf("hello-%03d", i-1))
		version := fmt.Sprintf("hello-%03d", i)
		next := instance(t, version)
		r.Update(oneVersion(t, version, addrOf(next)))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.Drain(ctx, []string{addrOf(prev)}); err != nil {
			t.Fatalf("round %d: drain: %v", i, err)
		}
		cancel()
		prev.Close() // a request still routed there now would fail
		prev = next
	}
	waitServed(fmt.Sprintf("hello-%03d", rounds))
	stopWorkers()

	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across %d table swaps; want 0", n, total.Load(), rounds-1)
	}
	for i := 1; i <= rounds; i++ {
		if v := fmt.Sprintf("hello-%03d", i); served[v] == 0 {
			t.Errorf("version %s served no request; served = %v", v, served)
		}
	}
	t.Logf("%d requests, %d versions, 0 failures", total.Load(), len(served))
}

// slowInstance answers with headers and a first chunk at once, then holds
// the rest of the body until release is called (idempotent; defer it so a
// failing test does not leave the servers waiting).
func slowInstance(t *testing.T, name string) (s *httptest.Server, release func()) {
	t.Helper()
	held := make(chan struct{})
	s = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" first\n")
		w.(http.Flusher).Flush()
		<-held
		io.WriteString(w, name+" rest\n")
	}))
	t.Cleanup(s.Close)
	return s, sync.OnceFunc(func() { close(held) })
}

// startSlow starts a request to hello and returns once its first chunk has
// arrived, so it is in flight; the returned channel yields the full body.
func startSlow(t *testing.T, front string) <-chan string {
	t.Helper()
	req, _ := http.NewRequest("GET", front+"/", nil)
	req.Host = "hello.sluice.test"
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	firstLine, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		rest, err := io.ReadAll(br)
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- firstLine + string(rest)
	}()
	return done
}

// inFlightAtUpdate starts a router whose only version's instance answers
// slowly, starts a request to it, then updates the table to a new version
// on another instance. It returns the router, its front URL, the slow
// instance's address, the pending body of the in-flight request and the
// func that lets the slow instance finish.
func inFlightAtUpdate(t *testing.T) (r *Router, front, slowAddr string, body <-chan string, release func()) {
	t.Helper()
	slow, release := slowInstance(t, "old")
	t.Cleanup(release) // before the instance closes: it waits for the held request
	fresh := instance(t, "new")
	r, front = startRouter(t, oneVersion(t, "hello-001", addrOf(slow)))
	body = startSlow(t, front)
	r.Update(oneVersion(t, "hello-002", addrOf(fresh)))
	return r, front, addrOf(slow), body, release
}

// drainHeld starts r.Drain of addr (10 s at most) and fails the test if it
// returns within 150 ms, while held (what holds it) should keep it waiting;
// the channel yields Drain's result.
func drainHeld(t *testing.T, r *Router, addr, held string) <-chan error {
	t.Helper()
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- r.Drain(ctx, []string{addr})
	}()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while %s", err, held)
	case <-time.After(150 * time.Millisecond):
	}
	return drained
}

func TestDrainWaitsForInFlightRequest(t *testing.T) {
	t.Parallel()
	r, front, slowAddr, body, release := inFlightAtUpdate(t)
	defer release()

	// New requests go to the new version while the old one is in flight.
	if resp := get(t, front, "hello.sluice.test", "/"); resp.header.Get("X-Instance") != "new" {
		t.Fatalf("after the update a request went to %q; want new", resp.header.Get("X-Instance"))
	}

	drained := drainHeld(t, r, slowAddr, "a request to the address was in flight")

	release()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the in-flight request completed")
	}
	if got, want := <-body, "old first\nold rest\n"; got != want {
		t.Errorf("in-flight request to the removed instance got %q; want %q", got, want)
	}
	r.mu.Lock()
	_, kept := r.backends[slowAddr]
	r.mu.Unlock()
	if kept {
		t.Errorf("the drained address is still tracked; want it forgotten")
	}
}

func TestDrainTimeout(t *testing.T) {
	t.Parallel()
	r, _, slowAddr, body, release := inFlightAtUpdate(t)
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Drain(ctx, []string{slowAddr})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v; want an error matching context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Drain took %v to time out; want about 100ms", d)
	}
	release()
	if got, want := <-body, "old first\nold rest\n"; got != want {
		t.Errorf("in-flight request got %q; want %q", got, want)
	}
}

func TestDrainIdle(t *testing.T) {
	t.Parallel()
	a := instance(t, "a")
	r, front := startRouter(t, oneVersion(t, "hello-001", addrOf(a)))
	get(t, front, "hello.sluice.test", "/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, addrs := range [][]string{{addrOf(a)}, {"127.0.0.1:1"}, nil} {
		if err := r.Drain(ctx, addrs); err != nil {
			t.Errorf("Drain(%v) with nothing in flight = %v; want nil", addrs, err)
		}
	}
}
