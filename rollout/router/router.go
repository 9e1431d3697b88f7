package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/sluicehq/sluice/rollout/routing"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// VersionHeader names the response header that tells which version served
// (or failed to serve) a request. The router sets it on every response for a
// known version, replacing any value the instance sent.
const VersionHeader = "X-Sluice-Version"

// RequestIDHeader names the request header that identifies a request to the
// instance: a client's value (visible ASCII, at most 200 bytes) is kept,
// otherwise the router makes one up, unique within the process.
const RequestIDHeader = "X-Request-Id"

// StickyCookiePrefix starts the name of the cookie that pins a client to a
// version of a sticky service: "sluice-<service>" (lowercase), whose value
// is the version's name.
const StickyCookiePrefix = "sluice-"

// Defaults of the connections to instances. Instances are near (the same
// host or cluster), so a dial that takes long means a dead instance.
const (
	DefaultDialTimeout = 2 * time.Second
	// DefaultMaxIdleConnsPerHost bounds the idle keep-alive connections
	// kept to one instance. The pool only ever holds as many as were in
	// use at once, so the bound matters only under high concurrency: with
	// more requests in flight to one instance than it allows, every
	// response beyond it closes its connection and a later request dials
	// a new one (a TIME_WAIT socket each, and a wait in the instance's
	// accept queue). With 1,000 client connections on one instance, 256
	// doubled the p99 latency against 1,024 (bench/README.md).
	DefaultMaxIdleConnsPerHost = 1024
	// DefaultMaxIdleConns bounds the idle connections kept to all
	// instances together.
	DefaultMaxIdleConns = 4096
	// DefaultIdleConnTimeout is how long an idle connection to an
	// instance is kept unused.
	DefaultIdleConnTimeout = 90 * time.Second
)

// drainPoll is how often Drain looks at the in-flight counters.
const drainPoll = 5 * time.Millisecond

// msgStopped is the router's answer on the URL of a stopped version.
const msgStopped = "this version is stopped (retired); it serves again once a rollback, traffic change or redeploy names it"

// Router is the reverse proxy in front of every service: it maps a request's
// Host to a service or a version, lets the service's policy pick the version,
// and proxies to one of the version's live instances round-robin. It serves
// connections itself (Serve, Shutdown); it is not an http.Handler (see the
// package doc). Safe for concurrent use; the zero value is not usable, call
// New.
type Router struct {
	suffix string // "." + base domain, lowercase; "" when the base is empty
	log    *slog.Logger
	limits Limits
	pool   pool

	// trusted are the addresses of proxies in front of the router whose
	// forwarding fields are kept (see WithTrustedProxies).
	trusted []netip.Prefix

	idPrefix string // prefix of generated request ids
	idSeq    atomic.Uint64

	table atomic.Pointer[table]

	// mu serializes Update and Drain's bookkeeping of backends; the request
	// path never takes it.
	mu       sync.Mutex
	backends map[string]*backend // addr -> backend, kept across tables

	srv server
}

// table is the immutable routing table the request path reads.
type table struct {
	services map[string]*serviceRoute // by lowercase name
	addrs    map[string]*backend      // every address in the table
	stats    map[string]*versionStats // by exact version name
}

type serviceRoute struct {
	name     string
	key      string // lowercase name
	policy   *policy.Compiled
	versions map[string]*versionRoute // by lowercase name
	exact    map[string]*versionRoute // by name as written
	maxBody  int64                    // < 0: no limit

	sticky bool
	cookie string                   // the sticky cookie's name
	pinned map[string]*versionRoute // versions a cookie may pin, by name
}

type versionRoute struct {
	name     string
	svc      *serviceRoute
	backends []*backend
	next     atomic.Uint32 // round-robin cursor
	stats    *versionStats
	stopped  bool // retired: its URL answers msgStopped

	// Precomputed header lines for the Serve path.
	versionLine []byte // "X-Sluice-Version: <name>\r\n"
	cookieLine  []byte // "Set-Cookie: ...\r\n" pinning the client here
}

// pick returns the next live instance round-robin that is not in skip
// (the ones a request tried already), nil when none is: every other
// instance refused its last connection and none is due for a probe.
func (v *versionRoute) pick(skip []*backend) *backend {
	n := uint32(len(v.backends))
	if n == 0 {
		return nil
	}
	i := v.next.Add(1) - 1
	for k := range n {
		if b := v.backends[(i+k)%n]; !slices.Contains(skip, b) && b.usable() {
			return b
		}
	}
	return nil
}

// Option configures a Router.
type Option func(*Router)

// WithLogger sets the logger for proxy errors; the default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(r *Router) { r.log = l }
}

// WithTrustedProxies names the proxies in front of the router (a load
// balancer, a CDN) whose forwarding fields are believed. A request whose
// peer address is in one of the prefixes keeps its X-Forwarded-For and
// Forwarded lists, with the peer appended, and its X-Forwarded-Host and
// X-Forwarded-Proto; from any other peer those fields are dropped and the
// router's own describe the peer. X-Real-IP is dropped from every request
// either way. None by default: the router is the edge.
func WithTrustedProxies(prefixes []netip.Prefix) Option {
	return func(r *Router) {
		r.trusted = nil
		for _, p := range prefixes {
			r.trusted = append(r.trusted, p.Masked())
		}
	}
}

// trustedPeer reports whether ip, a client's address as remoteIP gives it,
// is a trusted proxy.
func (r *Router) trustedPeer(ip string) bool {
	if len(r.trusted) == 0 || ip == "" {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// New returns a Router serving `<service>.<baseDomain>` and
// `<version>.<service>.<baseDomain>` (baseDomain is lowercased; a port or
// surrounding dots are ignored). It serves nothing until the first Update.
func New(baseDomain string, opts ...Option) *Router {
	base := strings.Trim(strings.ToLower(stripPort(baseDomain)), ".")
	r := &Router{
		log:      slog.Default(),
		backends: make(map[string]*backend),
	}
	if base != "" {
		r.suffix = "." + base
	}
	for _, o := range opts {
		o(r)
	}
	r.limits = r.limits.withDefaults()
	r.pool = pool{
		dialer:      net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:     DefaultMaxIdleConns,
		maxIdleHost: DefaultMaxIdleConnsPerHost,
		idleTimeout: DefaultIdleConnTimeout,
	}
	var id [6]byte
	rand.Read(id[:])
	r.idPrefix = hex.EncodeToString(id[:]) + "-"
	r.table.Store(&table{})
	return r
}

// Update atomically replaces the routing table: a request already routed
// finishes where it was sent, every later one sees t. The lookup maps are
// built here, never on the request path. Service names must be unique (a
// later duplicate replaces an earlier one), as must version names. Safe for
// concurrent use with requests, Drain and other Updates.
func (r *Router) Update(t routing.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()

	old := r.table.Load()
	nt := &table{
		services: make(map[string]*serviceRoute, len(t.Services)),
		addrs:    make(map[string]*backend),
		stats:    make(map[string]*versionStats),
	}
	for _, s := range t.Services {
		key := strings.ToLower(s.Name)
		sr := &serviceRoute{
			name:     s.Name,
			key:      key,
			policy:   s.Policy,
			versions: make(map[string]*versionRoute, len(s.Versions)),
			exact:    make(map[string]*versionRoute, len(s.Versions)),
			maxBody:  s.MaxBodyBytes,
			sticky:   s.Sticky,
			cookie:   StickyCookiePrefix + key,
		}
		if sr.maxBody == 0 {
			sr.maxBody = r.limits.MaxBodyBytes
		}
		if sr.sticky {
			sr.pinned = make(map[string]*versionRoute)
		}
		for _, v := range s.Versions {
			st := old.stats[v.Name]
			if st == nil || st.service != s.Name {
				st = &versionStats{service: s.Name, version: v.Name}
			}
			nt.stats[v.Name] = st
			vr := &versionRoute{
				name:        v.Name,
				svc:         sr,
				stats:       st,
				stopped:     v.Stopped,
				versionLine: []byte(VersionHeader + ": " + v.Name + "\r\n"),
			}
			for _, a := range v.Addrs {
				b := r.backends[a]
				if b == nil {
					b = &backend{addr: a, pool: &r.pool}
					r.backends[a] = b
				}
				nt.addrs[a] = b
				vr.backends = append(vr.backends, b)
			}
			sr.versions[strings.ToLower(v.Name)] = vr
			sr.exact[v.Name] = vr
			if sr.sticky && validCookieValue(v.Name) && s.Policy.Holds(v.Name) {
				sr.pinned[v.Name] = vr
				vr.cookieLine = []byte("Set-Cookie: " + sr.cookie + "=" + v.Name + "; Path=/; HttpOnly; SameSite=Lax\r\n")
			}
		}
		if _, dup := nt.services[key]; dup {
			r.log.Warn("duplicate service in routing table", "service", s.Name)
		}
		nt.services[key] = sr
	}
	r.table.Store(nt)
	r.forgetIdle(nt)
}

// validCookieValue reports whether s can be a cookie value as it is.
func validCookieValue(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !tokenChar[c] || c == '%' {
			return false
		}
	}
	return true
}

// forgetIdle drops the backends of addresses absent from t with nothing in
// flight. Callers hold r.mu and have already published t: a request that
// counts itself on a dropped backend afterwards sees it gone from the
// current table and does not use it.
func (r *Router) forgetIdle(t *table) {
	for a, b := range r.backends {
		if t.addrs[a] == nil && b.inflight.Load() == 0 {
			delete(r.backends, a)
			b.forget()
		}
	}
}

// Drain waits until no request is in flight to any of addrs, then returns
// nil; it returns an error matching ctx.Err() if ctx ends first. Call it
// after an Update that removed the addresses (e.g. before stopping the
// instances): from that Update on no new request is sent to them, so the
// count can only fall. A request counts until its response body is copied;
// an upgraded connection (WebSocket) until it closes. Addresses the router
// never served are idle. Safe for concurrent use.
func (r *Router) Drain(ctx context.Context, addrs []string) error {
	r.mu.Lock()
	bs := make([]*backend, 0, len(addrs))
	for _, a := range addrs {
		if b := r.backends[a]; b != nil {
			bs = append(bs, b)
		}
	}
	r.mu.Unlock()

	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		var busy int64
		for _, b := range bs {
			busy += b.inflight.Load()
		}
		if busy == 0 {
			r.mu.Lock()
			r.forgetIdle(r.table.Load())
			r.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %d requests still in flight: %w", strings.Join(addrs, ", "), busy, ctx.Err())
		case <-tick.C:
		}
	}
}

// Decide says which version the current table would send a request for
// service with rawQuery to, and why; false if the service is unknown. It is
// Compiled.Decide over the service's current policy (stickiness aside: a
// cookie is per client).
func (r *Router) Decide(service, rawQuery string) (policy.Decision, bool) {
	s := r.table.Load().services[strings.ToLower(service)]
	if s == nil {
		return policy.Decision{Rule: -1}, false
	}
	return s.policy.Decide(rawQuery), true
}

// choose is the decision the request path makes for a service's default
// URL: Compiled.Decide, then, for a sticky service whose split chose, the
// version the client's cookie pins if the policy still holds it. It returns
// the version's route (nil when the table has none), the version's name
// ("" when the policy chose none) and whether the response should pin the
// client to the version.
func (s *serviceRoute) choose(rawQuery, pinned string) (v *versionRoute, name string, pin bool) {
	d := s.policy.Decide(rawQuery)
	if d.Rule < 0 && s.sticky {
		if pv := s.pinned[pinned]; pv != nil && pinned != "" {
			return pv, pv.name, false
		}
		pin = true
	}
	if d.Version == "" {
		return nil, "", false
	}
	v = s.exact[d.Version]
	if v == nil {
		v = s.versions[strings.ToLower(d.Version)]
	}
	return v, d.Version, pin && v != nil && v.cookieLine != nil
}

// current returns the route of v in table t, nil if t has none.
func (t *table) current(v *versionRoute) *versionRoute {
	s := t.services[v.svc.key]
	if s == nil {
		return nil
	}
	return s.exact[v.name]
}

// parseHost maps a Host header to (service, version), lowercased into buf:
// version is nil for a service's default URL. A host with characters no
// host name has is refused.
func (r *Router) parseHost(buf *[hostBufSize]byte, host []byte) (service, version []byte, ok bool) {
	if len(host) == 0 || len(host) > hostBufSize {
		return nil, nil, false
	}
	h := buf[:len(host)]
	for i, c := range host {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return nil, nil, false
		}
		h[i] = c
	}
	h = stripPortBytes(h)
	if n := len(h); n > 0 && h[n-1] == '.' {
		h = h[:n-1]
	}
	if len(h) <= len(r.suffix) || string(h[len(h)-len(r.suffix):]) != r.suffix {
		return nil, nil, false
	}
	rest := h[:len(h)-len(r.suffix)]
	i := strings.LastIndexByte(bstr(rest), '.')
	if i < 0 {
		return rest, nil, true
	}
	version, service = rest[:i], rest[i+1:]
	if len(version) == 0 || len(service) == 0 || strings.IndexByte(bstr(version), '.') >= 0 {
		return nil, nil, false
	}
	return service, version, true
}

// hostBufSize bounds a Host header the router looks at.
const hostBufSize = 300

// stripPort removes a trailing ":port" from a host, leaving IPv6 literals
// ("[::1]") intact.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return host
	}
	if strings.IndexByte(host[:i], ':') >= 0 && !strings.HasPrefix(host, "[") {
		return host // a bare IPv6 address without a port
	}
	return host[:i]
}

func stripPortBytes(host []byte) []byte {
	return host[:len(stripPort(bstr(host)))]
}

// appendRequestID appends a new request id, unique within the process.
func (r *Router) appendRequestID(b []byte) []byte {
	b = append(b, r.idPrefix...)
	return appendHex(b, r.idSeq.Add(1))
}
