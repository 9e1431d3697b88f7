package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// 250 connections to the API that never send a request, with sluice held
// to 256 file descriptors: the router keeps serving, and the API answers
// again once they go.
func TestIdleAPIConnectionsCannotTakeTheRouterDown(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 256 && exec "$0" serve`, sluiceBin)
	s := startServerCmd(t, cmd, t.TempDir(), freePort(t), freePort(t))
	s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait")

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 250 {
		c, err := net.Dial("tcp", s.api)
		if err != nil {
			t.Fatalf("dial API: %v", err)
		}
		idle = append(idle, c)
	}
	// The client timeout only keeps a broken server from hanging the test.
	c := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.route+"/", nil)
		req.Host = "hello.localhost"
		req.Close = true // a new connection each time
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("router request %d with 250 idle API connections: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("router request %d: %s", i, resp.Status)
		}
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + s.api + "/healthz")
	if err != nil {
		t.Fatalf("API after the idle connections went: %v", err)
	}
	resp.Body.Close()
}

func TestServeRefusesABadTrustedProxy(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cmd := exec.Command(sluiceBin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0",
		"--trusted-proxies", "10.0.0.0/8,proxy.example.com")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--trusted-proxies: "proxy.example.com" is neither a CIDR`) {
		t.Fatalf("serve with a host name as a trusted proxy: %v %s", err, out)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Fatalf("serve created %d entries in its data directory before refusing", len(entries))
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got, err := parsePrefixes([]string{"10.1.2.3/8", " 192.0.2.1 ", "::ffff:198.51.100.1", "2001:db8::/32", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "198.51.100.1/32", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}
