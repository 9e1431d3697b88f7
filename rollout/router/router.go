package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// VersionHeader names the response header that tells which version served
// (or failed to serve) a request. The router sets it on every response for a
// known version, replacing any value the instance sent.
const VersionHeader = "X-Sluice-Version"

// Defaults of the shared transport to instances. Instances are near (the
// same host or cluster), so a dial that takes long means a dead instance.
const (
	DefaultDialTimeout         = 2 * time.Second
	DefaultMaxIdleConnsPerHost = 256
	DefaultMaxIdleConns        = 1024
	DefaultIdleConnTimeout     = 90 * time.Second
)

// drainPoll is how often Drain looks at the in-flight counters.
const drainPoll = 5 * time.Millisecond

// Table is everything the router serves: the services, their compiled
// policies and the live instances of each version. Build a new one for every
// change and hand it to Router.Update; the router does not keep the slices.
type Table struct {
	Services []ServiceTable
}

// ServiceTable is one service in a Table. Name is its DNS label (matched
// case-insensitively); a nil Policy serves nothing on the service's default
// URL, like an empty split.
type ServiceTable struct {
	Name     string
	Policy   *Compiled
	Versions []VersionTable
}

// VersionTable is one version of a service and the host:port of each of its
// live instances; Addrs may be empty (the version is known, nothing serves it).
type VersionTable struct {
	Name  string
	Addrs []string
}

// Router is the reverse proxy in front of every service: it maps a request's
// Host to a service or a version, lets the service's policy pick the version,
// and proxies to one of the version's instances round-robin. It is an
// http.Handler and safe for concurrent use; the zero value is not usable,
// call New.
type Router struct {
	suffix    string // "." + base domain, lowercase; "" when the base is empty
	log       *slog.Logger
	transport http.RoundTripper
	buffers   bufferPool

	table atomic.Pointer[table]

	// mu serializes Update and Drain's bookkeeping of backends; the request
	// path never takes it.
	mu       sync.Mutex
	backends map[string]*backend // addr -> backend, kept across tables
}

// table is the immutable routing table the request path reads.
type table struct {
	services map[string]*serviceRoute // by lowercase name
	addrs    map[string]*backend      // every address in the table
}

type serviceRoute struct {
	name     string
	policy   *Compiled
	versions map[string]*versionRoute // by lowercase name
}

type versionRoute struct {
	name     string
	backends []*backend
	next     atomic.Uint32 // round-robin cursor
}

// backend is one instance address. It outlives tables so that requests in
// flight to an address are counted across swaps (see Drain).
type backend struct {
	addr     string
	inflight atomic.Int64
	proxy    *httputil.ReverseProxy
}

// Option configures a Router.
type Option func(*Router)

// WithLogger sets the logger for proxy errors; the default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(r *Router) { r.log = l }
}

// WithTransport sets the RoundTripper requests to instances go through; the
// default is an http.Transport tuned for many keep-alive connections to
// nearby instances (see the Default* constants).
func WithTransport(t http.RoundTripper) Option {
	return func(r *Router) { r.transport = t }
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
	if r.transport == nil {
		r.transport = newTransport()
	}
	r.table.Store(&table{})
	return r
}

// newTransport is the one place the shared transport to instances is built.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Instances are reached directly, never through an environment proxy.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          DefaultMaxIdleConns,
		MaxIdleConnsPerHost:   DefaultMaxIdleConnsPerHost,
		IdleConnTimeout:       DefaultIdleConnTimeout,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

// Update atomically replaces the routing table: a request already routed
// finishes where it was sent, every later one sees t. The lookup maps are
// built here, never on the request path. Service names must be unique (a
// later duplicate replaces an earlier one), as must version names within a
// service. Safe for concurrent use with requests, Drain and other Updates.
func (r *Router) Update(t Table) {
	r.mu.Lock()
	defer r.mu.Unlock()

	nt := &table{
		services: make(map[string]*serviceRoute, len(t.Services)),
		addrs:    make(map[string]*backend),
	}
	for _, s := range t.Services {
		sr := &serviceRoute{
			name:     s.Name,
			policy:   s.Policy,
			versions: make(map[string]*versionRoute, len(s.Versions)),
		}
		for _, v := range s.Versions {
			vr := &versionRoute{name: v.Name}
			for _, a := range v.Addrs {
				b := r.backends[a]
				if b == nil {
					b = r.newBackend(a)
					r.backends[a] = b
				}
				nt.addrs[a] = b
				vr.backends = append(vr.backends, b)
			}
			sr.versions[strings.ToLower(v.Name)] = vr
		}
		key := strings.ToLower(s.Name)
		if _, dup := nt.services[key]; dup {
			r.log.Warn("duplicate service in routing table", "service", s.Name)
		}
		nt.services[key] = sr
	}
	r.table.Store(nt)
	r.forgetIdle(nt)
}

// forgetIdle drops the backends of addresses absent from t with nothing in
// flight. Callers hold r.mu and have already published t: a request that
// counts itself on a dropped backend afterwards sees t changed and retries.
func (r *Router) forgetIdle(t *table) {
	for a, b := range r.backends {
		if t.addrs[a] == nil && b.inflight.Load() == 0 {
			delete(r.backends, a)
		}
	}
}

func (r *Router) newBackend(addr string) *backend {
	b := &backend{addr: addr}
	target := &url.URL{Scheme: "http", Host: addr}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the instance sees the Host the client sent
			pr.SetXForwarded()
		},
		Transport:     r.transport,
		FlushInterval: -1, // stream: flush every write (SSE, chunked progress)
		BufferPool:    &r.buffers,
		ErrorLog:      slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			// The router's X-Sluice-Version is the only one the client sees.
			resp.Header.Del(VersionHeader)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			level := slog.LevelWarn
			if errors.Is(err, context.Canceled) {
				level = slog.LevelDebug // the client went away
			}
			r.log.Log(req.Context(), level, "proxy to instance failed",
				"version", w.Header().Get(VersionHeader), "addr", addr, "err", err)
			http.Error(w, "sluice: the instance did not answer", http.StatusBadGateway)
		},
	}
	return b
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
// Compiled.Decide over the service's current policy.
func (r *Router) Decide(service, rawQuery string) (Decision, bool) {
	s := r.table.Load().services[strings.ToLower(service)]
	if s == nil {
		return Decision{Rule: -1}, false
	}
	return s.policy.Decide(rawQuery), true
}

// ServeHTTP routes one request by its Host; see New. It takes no lock: it
// reads the current table once and counts itself in flight on the chosen
// instance, trying again on the newer table if one was published meanwhile.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	service, version, ok := r.parseHost(req.Host)
	if !ok {
		http.Error(w, "sluice: unknown host", http.StatusNotFound)
		return
	}
	for {
		t := r.table.Load()
		s := t.services[service]
		if s == nil {
			http.Error(w, "sluice: unknown service", http.StatusNotFound)
			return
		}
		var v *versionRoute
		if version != "" {
			if v = s.versions[version]; v == nil {
				http.Error(w, "sluice: unknown version", http.StatusNotFound)
				return
			}
		} else {
			d := s.policy.Decide(req.URL.RawQuery)
			if d.Version == "" {
				w.Header().Del(VersionHeader)
				unavailable(w, "sluice: no version of this service serves traffic yet")
				return
			}
			if v = s.versions[strings.ToLower(d.Version)]; v == nil {
				// The policy names a version the table has no entry for:
				// known to the policy, served by nothing.
				w.Header().Set(VersionHeader, d.Version)
				unavailable(w, "sluice: no instance of this version is running")
				return
			}
		}
		w.Header().Set(VersionHeader, v.name)
		n := len(v.backends)
		if n == 0 {
			unavailable(w, "sluice: no instance of this version is running")
			return
		}
		b := v.backends[(v.next.Add(1)-1)%uint32(n)]
		b.inflight.Add(1)
		if r.table.Load() != t {
			// An Update may have removed b and a Drain may already have seen
			// it idle: do not send; route again on the new table.
			b.inflight.Add(-1)
			w.Header().Del(VersionHeader)
			continue
		}
		b.serve(w, req)
		return
	}
}

// serve proxies req to the instance and counts it in flight until the
// response body is copied (or the copy is aborted).
func (b *backend) serve(w http.ResponseWriter, req *http.Request) {
	defer b.inflight.Add(-1)
	b.proxy.ServeHTTP(w, req)
}

func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// parseHost maps a Host header to (service, version): version is "" for a
// service's default URL. Both are lowercase.
func (r *Router) parseHost(host string) (service, version string, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(stripPort(host), "."))
	rest, found := strings.CutSuffix(host, r.suffix)
	if !found || rest == "" {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return rest, "", true
	}
	version, service = rest[:i], rest[i+1:]
	if version == "" || service == "" || strings.IndexByte(version, '.') >= 0 {
		return "", "", false
	}
	return service, version, true
}

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

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (bp *bufferPool) Put(b []byte) {
	bp.p.Put(&b)
}
