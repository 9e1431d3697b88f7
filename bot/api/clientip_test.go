package api_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/internal/enginetest"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name, peer, xff, realIP string
		trusted                 []netip.Prefix
		want                    string
	}{
		{"no proxies: the peer, whatever the headers say", "203.0.113.9:4000", "6.6.6.6", "7.7.7.7", nil, "203.0.113.9"},
		{"untrusted peer's headers are ignored", "203.0.113.9:4000", "6.6.6.6", "7.7.7.7", proxies, "203.0.113.9"},
		{"trusted proxy: its client", "10.1.2.3:4000", "198.51.100.7", "", proxies, "198.51.100.7"},
		{"spoofed entries left of the real client are skipped", "10.1.2.3:4000", "6.6.6.6, 198.51.100.7, 10.9.9.9", "", proxies, "198.51.100.7"},
		{"no headers: the proxy itself", "10.1.2.3:4000", "", "", proxies, "10.1.2.3"},
		{"X-Real-IP when no X-Forwarded-For", "10.1.2.3:4000", "", "198.51.100.8", proxies, "198.51.100.8"},
		{"all hops trusted: the left-most", "10.1.2.3:4000", "10.0.0.1, 10.0.0.2", "", proxies, "10.0.0.1"},
		{"garbage ends the walk", "10.1.2.3:4000", "198.51.100.7, nonsense", "", proxies, "10.1.2.3"},
		{"ipv6 proxy", "[::1]:4000", "2001:db8::5", "", proxies, "2001:db8::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.realIP != "" {
				r.Header.Set("X-Real-IP", tc.realIP)
			}
			if got := api.ClientIP(r, tc.trusted); got != tc.want {
				t.Errorf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// lockedBuffer is a log destination the test reads while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// An attacker's forged X-Forwarded-For does not put someone else's address
// in the log of a refused call; a trusted proxy's does.
func TestRefusedCallsLogThePeerNotForgedHeaders(t *testing.T) {
	for _, tc := range []struct {
		trusted []netip.Prefix
		want    string
	}{
		{nil, "remote=127.0.0.1"},
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "remote=198.51.100.7"},
	} {
		w := enginetest.New(t, t.TempDir())
		var logs lockedBuffer
		e := echo.New()
		api.Register(e, w.Engine, api.WithAuthenticator(auth.New(w.DB, auth.WithAdminToken(adminToken))),
			api.WithTrustedProxies(tc.trusted), api.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		srv := httptest.NewServer(e)
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/services", nil)
		req.Header.Set("Authorization", "Bearer sluice_forged")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		req.Header.Set("X-Real-IP", "198.51.100.8")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged token: %d", resp.StatusCode)
		}
		if got := logs.String(); !strings.Contains(got, tc.want) {
			t.Errorf("trusted %v: log lacks %q:\n%s", tc.trusted, tc.want, got)
		}
	}
}
