package router

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/rollout/policy"
)

// benchPolicy is a 90/10 split with a rule benchQuery does not match, so
// every request goes through the rules and then the split.
var benchPolicy = policy.Policy{
	Rules: []policy.Rule{{Version: "hello-003", Match: map[string]string{"env": "canary*", "region": "eu-*"}}},
	Split: map[string]int{"hello-001": 90, "hello-002": 10},
}

const benchQuery = "env=prod&region=eu-west&user=123"

func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	r := New("sluice.test", WithLogger(slog.New(slog.DiscardHandler)))
	pol, err := policy.Compile(benchPolicy)
	if err != nil {
		b.Fatal(err)
	}
	r.Update(routing.Table{Services: []routing.Service{{
		Name:   "hello",
		Policy: pol,
		Versions: []routing.Version{
			{Name: "hello-001", Addrs: []string{backend.Listener.Addr().String()}},
			{Name: "hello-002", Addrs: []string{backend.Listener.Addr().String()}},
		},
	}}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(ln)
	defer r.Shutdown(b.Context())
	front := "http://" + ln.Addr().String()
	for _, tc := range []struct{ name, url, host string }{
		{"direct", backend.URL + "/?" + benchQuery, ""},
		{"http", front + "/?" + benchQuery, "hello.sluice.test"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// A client over loopback; "direct" skips the router for scale.
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("GET", tc.url, nil)
				if tc.host != "" {
					req.Host = tc.host
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkServe measures the forwarding path as Serve runs it: a raw
// keep-alive client (so that little of the time is the client's) sends
// GETs through the router to a net/http instance; "direct" is the same
// client on the instance alone, for scale. The router's own cost is the
// difference.
func BenchmarkServe(b *testing.B) {
	inst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 64))
	}))
	defer inst.Close()
	r := New("sluice.test", WithLogger(slog.New(slog.DiscardHandler)))
	pol, err := policy.Compile(policy.Policy{Split: map[string]int{"hello-001": 90, "hello-002": 10}})
	if err != nil {
		b.Fatal(err)
	}
	addr := inst.Listener.Addr().String()
	r.Update(routing.Table{Services: []routing.Service{{
		Name:     "hello",
		Policy:   pol,
		Versions: []routing.Version{{Name: "hello-001", Addrs: []string{addr}}, {Name: "hello-002", Addrs: []string{addr}}},
	}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(ln)
	defer r.Shutdown(b.Context())

	req := []byte("GET /?env=prod HTTP/1.1\r\nHost: hello.sluice.test\r\nUser-Agent: bench\r\n\r\n")
	for _, tc := range []struct{ name, addr string }{
		{"direct", addr},
		{"router", ln.Addr().String()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := readRawResponse(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readRawResponse reads one 200 response with a Content-Length, cheaply.
func readRawResponse(br *bufio.Reader) error {
	n := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first && !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("status line %q", line)
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err := br.Discard(n)
	return err
}
