package bot_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/githubtest"
)

// otherBot serves a second bot with cfg over w's engine. The server
// closes when the test ends, after connections the test holds.
func (w *world) otherBot(cfg bot.Config) (*bot.Bot, *httptest.Server) {
	b := bot.New(w.eng, w.db, w.f, cfg)
	e := echo.New()
	b.Register(e)
	srv := httptest.NewServer(e)
	w.t.Cleanup(srv.Close)
	return b, srv
}

// holdDelivery opens a connection that sends a signed push's headers and
// waits until the server starts reading its body (100 Continue), then
// holds the body back. Writing the returned body finishes the delivery.
func holdDelivery(t *testing.T, addr string, body []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
		"Expect: 100-continue\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: held-%p\r\nX-Hub-Signature-256: %s\r\n\r\n",
		addr, len(body), c, githubtest.Sign(secret, body))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("held delivery: %q %v", line, err)
	}
	if _, err := r.ReadString('\n'); err != nil { // the blank line after 100
		t.Fatal(err)
	}
	return c, r
}

func TestWebhookBuffersAtMostMaxInflightBodies(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	_, srv := w.otherBot(bot.Config{WebhookSecret: secret, MaxInflight: 2})
	addr := strings.TrimPrefix(srv.URL, "http://")
	push := githubtest.Fixture(t, "push.json")

	first, firstR := holdDelivery(t, addr, push)
	holdDelivery(t, addr, push)
	post := func() int {
		resp, err := http.DefaultClient.Do(githubtest.Delivery(t, srv.URL+"/webhooks/github", "push", push, secret))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		return resp.StatusCode
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("a third delivery while two bodies are read: %d, want 503", code)
	}
	// The first sender finishes: its delivery is accepted and its slot
	// is free again.
	if _, err := first.Write(push); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(firstR, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("held delivery answered %d", resp.StatusCode)
	}
	if code := post(); code != http.StatusAccepted {
		t.Fatalf("a delivery once a slot is free: %d, want 202", code)
	}
}
