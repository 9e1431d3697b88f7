package router

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnectionsAreKeptForTheConcurrencySeen: after a burst of requests
// in flight to one instance at once, more than 256 of them, the router
// keeps a connection for each, so a second burst of the same size opens
// no new connection to the instance (it neither closes some of them nor
// dials again).
func TestConnectionsAreKeptForTheConcurrencySeen(t *testing.T) {
	const n = 300
	var accepted atomic.Int64
	arrived := make(chan struct{}, n)
	var gateMu sync.Mutex
	var gate chan struct{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inst := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gateMu.Lock()
			g := gate
			gateMu.Unlock()
			arrived <- struct{}{}
			<-g
			w.Write([]byte("ok"))
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	go inst.Serve(ln)
	t.Cleanup(func() { inst.Close() })
	addr := ln.Addr().String()
	r, front := startRouter(t, table1("hello-001", false, 0, addr))
	// idle counts the router's idle connections to the instance.
	idle := func() int {
		r.mu.Lock()
		b := r.backends[addr]
		r.mu.Unlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.idle)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	t.Cleanup(client.CloseIdleConnections)

	burst := func() {
		g := make(chan struct{})
		gateMu.Lock()
		gate = g
		gateMu.Unlock()
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", front+"/", nil)
				req.Host = "hello." + testBase
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
				}
			})
		}
		for range n {
			select {
			case <-arrived:
			case err := <-errs:
				close(g)
				t.Fatalf("a request failed before all %d were in flight: %v", n, err)
			}
		}
		close(g)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("request: %v", err)
		}
	}

	burst()
	if got := accepted.Load(); got != n {
		t.Fatalf("the first burst opened %d connections to the instance; want %d (one per request in flight)", got, n)
	}
	// A response can reach the client just before its connection is back
	// in the pool; give them all a moment to come back (with a bound
	// below n they never all do, and the second burst shows it).
	for deadline := time.Now().Add(5 * time.Second); idle() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	burst()
	if got := accepted.Load(); got != n {
		t.Errorf("the second burst opened %d new connections to the instance; want 0 (the first burst's were kept)", got-n)
	}
}
