package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// WithTrustedProxies names the proxies whose X-Forwarded-For and X-Real-IP
// headers say who the client is. Without it (or with an empty list) the
// client is always the connection's peer: a header anyone can send names
// no one in the logs.
func WithTrustedProxies(prefixes []netip.Prefix) Option {
	return func(s *server) { s.trusted = prefixes }
}

// ClientIP returns the address to log for r: the peer, unless the peer is
// a trusted proxy. Then it is the right-most X-Forwarded-For entry that is
// not itself a trusted proxy (the left-most when all are), or else
// X-Real-IP, or else the peer. Entries that are not IP addresses end the
// walk: nothing left of them can be trusted. Pure.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	isTrusted := func(s string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return netip.Addr{}, false
		}
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return a, true
			}
		}
		return a, false
	}
	if _, ok := isTrusted(peer); !ok {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := ""
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := isTrusted(hops[i])
		if !a.IsValid() {
			break
		}
		client = a.String()
		if !ok {
			return client
		}
	}
	if client != "" {
		return client
	}
	if a, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return a.Unmap().String()
	}
	return peer
}

// ipExtractor is echo's view of ClientIP.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	return func(r *http.Request) string { return ClientIP(r, trusted) }
}
