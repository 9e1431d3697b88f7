package router

import (
	"bufio"
	"bytes"
	"context"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// TestRetryOncePerInstance: an idempotent request an instance drops is sent
// to each other instance at most once, never again to the same one, and
// when every try failed the client gets 502 saying what happened (not 503
// "no instance is running": the instances are running).
func TestRetryOncePerInstance(t *testing.T) {
	t.Parallel()
	closer, closerHits := droppingInstance(t, false)
	resetter, resetterHits := droppingInstance(t, true)
	a, aHits := droppingInstance(t, false)
	b, bHits := droppingInstance(t, true)
	_, base := startRouter(t, routing.Table{Services: []routing.Service{
		{Name: "closer", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"closer-001": 100}}),
			Versions: []routing.Version{{Name: "closer-001", Addrs: []string{closer}}}},
		{Name: "resetter", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"resetter-001": 100}}),
			Versions: []routing.Version{{Name: "resetter-001", Addrs: []string{resetter}}}},
		{Name: "two", Policy: mustCompile(t, policy.Policy{Split: map[string]int{"two-001": 100}}),
			Versions: []routing.Version{{Name: "two-001", Addrs: []string{a, b}}}},
	}})
	tests := []struct {
		host  string
		cause string
		hits  []*atomic.Int64
	}{
		{"closer.sluice.test", "closed the connection without answering", []*atomic.Int64{closerHits}},
		{"resetter.sluice.test", "reset the connection without answering", []*atomic.Int64{resetterHits}},
		{"two.sluice.test", "without answering", []*atomic.Int64{aHits, bHits}},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "PUT"} {
			before := make([]int64, len(tt.hits))
			for i, h := range tt.hits {
				before[i] = h.Load()
			}
			req, _ := http.NewRequest(method, base+"/", nil)
			req.Host = tt.host
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 502 || !strings.Contains(string(body), tt.cause) {
				t.Errorf("%s %s: %d %q; want 502 saying %q", method, tt.host, resp.StatusCode, body, tt.cause)
			}
			for i, h := range tt.hits {
				if n := h.Load() - before[i]; n != 1 {
					t.Errorf("%s %s: instance %d got the request %d times; want exactly once", method, tt.host, i, n)
				}
			}
		}
	}
}

// rawInstance is an instance that answers every request head it reads with
// the bytes of respond, written as they are, then keeps the connection
// open until the test ends.
func rawInstance(t *testing.T, respond string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); close(done); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if skipHead(bufio.NewReader(c)) != nil {
					return
				}
				io.WriteString(c, respond)
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// skipHead reads a request head up to its empty line.
func skipHead(br *bufio.Reader) error {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if l == "\r\n" {
			return nil
		}
	}
}

// TestResponseHeadTooLarge: an instance whose response head is over the
// limit gets the client a 502 that says so.
func TestResponseHeadTooLarge(t *testing.T) {
	t.Parallel()
	big := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", maxResponseHead+1))
		io.WriteString(w, "unreachable")
	}))
	_, base := startRouter(t, table1("hello-001", false, 0, big))
	resp := get(t, base, "hello.sluice.test", "/")
	if resp.status != 502 || resp.body != "sluice: response head too large\n" || resp.header.Get(VersionHeader) != "hello-001" {
		t.Errorf("got %d %q from %q; want 502 \"sluice: response head too large\" from hello-001", resp.status, resp.body, resp.header.Get(VersionHeader))
	}
}

// syncBuffer is a bytes.Buffer a logger and a test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMalformedUpstreamChunked: when an instance's chunked body turns
// malformed, the client gets what was well-formed before it, then its
// connection closes (so it cannot take the body for whole), and the cause
// is logged.
func TestMalformedUpstreamChunked(t *testing.T) {
	t.Parallel()
	inst := rawInstance(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbroken")
	var logs syncBuffer
	_, base := startRouter(t, table1("hello-001", false, 0, inst),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	rc := dialRaw(t, base)
	rc.send("GET / HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	got, err := io.ReadAll(rc.c)
	if err != nil {
		t.Fatalf("after %q: %v; want the connection closed", got, err)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(got, []byte("\r\n5\r\nhello\r\n")) {
		t.Errorf("client got %q; want the head and the well-formed chunk", got)
	}
	if bytes.Contains(got, []byte("broken")) || bytes.HasSuffix(got, []byte("0\r\n\r\n")) {
		t.Errorf("client got %q; want it cut after the well-formed chunk", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "malformed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "instance broke off a response") || !strings.Contains(l, "malformed") {
		t.Errorf("log %q; want the cause (malformed) logged", l)
	}
}

// TestClientGoneCancels: a client that goes away while the instance works
// on its request cancels the request at the instance, and the request
// stops counting in flight, long before the upstream timeout.
func TestClientGoneCancels(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	inst := newInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-release:
		}
	}))
	r, base := startRouter(t, table1("hello-001", false, 0, inst),
		WithLimits(Limits{UpstreamTimeout: time.Hour}))
	rc := dialRaw(t, base)
	rc.send("GET /slow HTTP/1.1\r\nHost: hello.sluice.test\r\n\r\n")
	<-got
	if n := r.Stats("hello-001").InFlight; n != 1 {
		t.Fatalf("in flight while the instance works = %d; want 1", n)
	}
	rc.c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the instance's request was not cancelled after the client went away")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Drain(ctx, []string{inst}); err != nil {
		t.Errorf("in flight after the client went away: %v", err)
	}
	if st := r.Stats("hello-001"); st.InFlight != 0 || st.Requests != 1 || st.Responses() != 0 {
		t.Errorf("stats %+v; want 1 request, none in flight, no response", st)
	}
}
