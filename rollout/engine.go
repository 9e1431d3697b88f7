package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/routing"
	"github.com/sluicehq/sluice/rollout/runtime"
	"github.com/sluicehq/sluice/rollout/source"
)

// Router is what the engine needs of the data path: swap the routing table,
// wait for in-flight requests to instances that left it, and read what
// each version served (for status and canary analysis).
type Router interface {
	Update(routing.Table)
	Drain(ctx context.Context, addrs []string) error
	Stats(version string) routing.Stats
}

// DataPlane carries a service's policy to routing outside sluice's own
// router: on the kubernetes runtime, the service's Gateway API HTTPRoute.
type DataPlane interface {
	// ApplyPolicy makes the data plane route service by p and returns once
	// it does. On error it still routes by the previous policy; an error
	// matching policy.ErrInvalidPolicy means p cannot be expressed there.
	ApplyPolicy(ctx context.Context, service string, p policy.Policy) error
}

// goScheduler runs the engine's background work (builds, starts, drains),
// each func on its own goroutine, as a contained unit (package contain): a
// panic in one is logged and counted and ends that func only. Wait waits
// for them through wg.
type goScheduler struct {
	wg  *sync.WaitGroup
	log *slog.Logger
}

func (s goScheduler) Go(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = contain.Do(s.log, "background work", func() error { f(); return nil })
	}()
}

// Defaults for engine options.
const (
	DefaultDrainGrace = 10 * time.Second
	DefaultStopGrace  = 5 * time.Second
)

// Engine owns services, versions and policies, and carries out every
// operation of the spec: deploy, traffic, route, predict, promote, rollback,
// redeploy, abort, retire. It is the only writer of the Store and the only
// caller of the Runtime and the Router. Safe for concurrent use: operations
// on one service are serialized where they touch its record; builds and
// starts run concurrently and apply their outcome under that serialization.
type Engine struct {
	store  Store
	rt     runtime.Runtime
	router Router
	plane  DataPlane     // nil: the router is the only data plane
	served CanaryMetrics // nil: canaries are judged on the router's counters
	log    *slog.Logger
	now    func() time.Time
	sched  goScheduler
	wg     sync.WaitGroup

	baseDomain string
	routerPort string
	limits     source.Limits
	drainGrace time.Duration
	stopGrace  time.Duration

	ctx    context.Context // cancelled by Close: background work stops
	cancel context.CancelFunc

	mu       sync.Mutex
	locks    map[string]*sync.Mutex   // per service
	applies  map[string]chan struct{} // per service, see lockApply
	running  map[string]*instances    // by version name
	canaries map[string]canaryWindow  // by version name, automatic canaries only
	closed   bool

	publishMu sync.Mutex
}

// instances is the running generation of one version.
type instances struct {
	gen   int
	group runtime.Group
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithClock sets the time source (default time.Now).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithRouterAddr sets the router's public address, used to print service
// and version URLs: "http://<service>.<base-domain>:<port>/". A port of 80
// is omitted.
func WithRouterAddr(addr string) Option {
	return func(e *Engine) {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			e.routerPort = port
		}
	}
}

// WithSourceLimits bounds uploaded archives (default source.DefaultLimits).
func WithSourceLimits(l source.Limits) Option { return func(e *Engine) { e.limits = l } }

// WithDataPlane makes every policy change wait for d to apply it before it
// is committed; a change d refuses fails and changes nothing (default: none,
// sluice's router is the data plane).
func WithDataPlane(d DataPlane) Option { return func(e *Engine) { e.plane = d } }

// WithCanaryMetrics makes automatic canaries judge each step on what m
// reports instead of on sluice's router's counters (default: the router;
// on the kubernetes runtime the traffic does not pass through it).
func WithCanaryMetrics(m CanaryMetrics) Option { return func(e *Engine) { e.served = m } }

// WithDrainGrace bounds how long stopping instances wait for in-flight
// requests (default DefaultDrainGrace).
func WithDrainGrace(d time.Duration) Option { return func(e *Engine) { e.drainGrace = d } }

// New returns an engine over a store, a runtime and a router. Call Recover
// once before serving, and Close when done.
func New(st Store, rt runtime.Runtime, rtr Router, baseDomain string, opts ...Option) *Engine {
	e := &Engine{
		store: st, rt: rt, router: rtr,
		log:        slog.Default(),
		now:        time.Now,
		baseDomain: baseDomain,
		routerPort: "8000",
		limits:     source.DefaultLimits,
		drainGrace: DefaultDrainGrace,
		stopGrace:  DefaultStopGrace,
		locks:      map[string]*sync.Mutex{},
		running:    map[string]*instances{},
	}
	for _, o := range opts {
		o(e)
	}
	e.sched = goScheduler{wg: &e.wg, log: e.log}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e
}

// lock serializes operations on one service; the returned func unlocks.
func (e *Engine) lock(service string) func() {
	e.mu.Lock()
	m, ok := e.locks[service]
	if !ok {
		m = &sync.Mutex{}
		e.locks[service] = m
	}
	e.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// lockApply serializes, per service, the span from a data plane's
// ApplyPolicy to the commit of that policy, so the data plane never routes
// by a policy that another operation's commit went past. Taken before the
// service lock, never while holding it; waiting ends with ctx.
func (e *Engine) lockApply(ctx context.Context, service string) (func(), error) {
	e.mu.Lock()
	if e.applies == nil {
		e.applies = map[string]chan struct{}{}
	}
	c, ok := e.applies[service]
	if !ok {
		c = make(chan struct{}, 1)
		e.applies[service] = c
	}
	e.mu.Unlock()
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s's data plane: %w", service, ctx.Err())
	}
}

func (e *Engine) getRunning(version string) *instances {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[version]
}

// setRunning records the running generation of a version and returns the
// one it replaces, if any.
func (e *Engine) setRunning(version string, in *instances) *instances {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.running[version]
	if in == nil {
		delete(e.running, version)
	} else {
		e.running[version] = in
	}
	return old
}

// ServiceURL is the default URL of a service.
func (e *Engine) ServiceURL(service string) string {
	return e.url(service + "." + e.baseDomain)
}

// VersionURL is the URL that reaches one version, bypassing the policy.
func (e *Engine) VersionURL(service, version string) string {
	return e.url(version + "." + service + "." + e.baseDomain)
}

func (e *Engine) url(host string) string {
	if e.routerPort == "" || e.routerPort == "80" {
		return "http://" + host + "/"
	}
	return "http://" + host + ":" + e.routerPort + "/"
}

// publish rebuilds the routing table from the committed state and the
// running instances, and swaps it into the router. Serialized, so a table
// built from older state never replaces a newer one.
func (e *Engine) publish() error {
	e.publishMu.Lock()
	defer e.publishMu.Unlock()
	svcs, err := e.store.Services()
	if err != nil {
		return fmt.Errorf("publish table: %w", err)
	}
	var t routing.Table
	for _, s := range svcs {
		vs, err := e.store.Versions(s.Name)
		if err != nil {
			return fmt.Errorf("publish table: %w", err)
		}
		c, err := policy.Compile(s.Policy)
		if err != nil {
			// A stored policy was validated before commit; refuse to
			// serve a corrupt one rather than guess.
			e.log.Error("stored policy does not compile", "service", s.Name, "err", err)
			c, _ = policy.Compile(policy.Policy{})
		}
		st := routing.Service{Name: s.Name, Policy: c}
		for _, v := range vs {
			if v.Name == s.Stable() {
				// Service-wide router settings come with the stable
				// version's configuration.
				st.Sticky, st.MaxBodyBytes = v.Config.Sticky, v.Config.MaxBodyBytes
			}
			vt := routing.Version{Name: v.Name, Stopped: v.Status == StatusStopped}
			if in := e.getRunning(v.Name); in != nil && v.Status.Serving() {
				for _, i := range in.group.Instances() {
					if i.Up {
						vt.Addrs = append(vt.Addrs, i.Addr)
					}
				}
			}
			st.Versions = append(st.Versions, vt)
		}
		t.Services = append(t.Services, st)
	}
	e.router.Update(t)
	return nil
}

// notify is handed to the runtime: an instance went up or down.
func (e *Engine) notify() {
	if err := e.publish(); err != nil {
		e.log.Error("republish after instance change", "err", err)
	}
}

// stopInstances takes a running generation out of service: it must already
// be absent from the published table. It waits for in-flight requests, then
// stops the processes.
func (e *Engine) stopInstances(in *instances) {
	if in == nil {
		return
	}
	var addrs []string
	for _, i := range in.group.Instances() {
		addrs = append(addrs, i.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.drainGrace)
	if err := e.router.Drain(ctx, addrs); err != nil {
		e.log.Warn("drain timed out; stopping anyway", "err", err)
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), e.stopGrace+5*time.Second)
	defer cancel()
	if err := in.group.Stop(ctx, e.stopGrace); err != nil {
		e.log.Error("stop instances", "err", err)
	}
}

// stopAfterCommit stops generations that already left the published
// table (draining them first) as engine background work. The caller waits
// for it until ctx ends and no longer: the change that took them out is
// committed either way, and the stop finishes on its own.
func (e *Engine) stopAfterCommit(ctx context.Context, gone ...*instances) {
	done := make(chan struct{})
	e.sched.Go(func() {
		defer close(done)
		for _, in := range gone {
			e.stopInstances(in)
		}
	})
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Close stops background work and every instance, in parallel. In-flight
// deploys are left in the store as they are; the next Recover marks them
// Interrupted. Call after the router stopped accepting requests.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	all := e.running
	e.running = map[string]*instances{}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = in.group.Stop(ctx, e.stopGrace)
		}()
	}
	wg.Wait()
	return nil
}

// Wait blocks until background work scheduled so far has finished. For
// front doors that need a synchronous answer (and tests).
func (e *Engine) Wait() { e.wg.Wait() }

// loadService returns a service record and its versions, or a not-found Error.
func (e *Engine) loadService(name string) (Service, []Version, error) {
	s, err := e.store.Service(name)
	if err != nil {
		if isNotFound(err) {
			return Service{}, nil, notFound(ErrCodeUnknownService, "unknown service %q", name)
		}
		return Service{}, nil, fmt.Errorf("load service %s: %w", name, err)
	}
	vs, err := e.store.Versions(name)
	if err != nil {
		return Service{}, nil, fmt.Errorf("load versions of %s: %w", name, err)
	}
	return s, vs, nil
}

// Services lists the known service names, sorted. A done ctx returns its
// error before anything is read.
func (e *Engine) Services(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	svcs, err := e.store.Services()
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	names := make([]string, 0, len(svcs))
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names, nil
}

// Events returns the history of one service (all when ""), oldest first.
// A done ctx returns its error before anything is read.
func (e *Engine) Events(ctx context.Context, service string, after uint64, limit int) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return e.store.Events(service, after, limit)
}

// LatestEvents returns the newest limit events of one service (all when
// "") with Seq less than before (any when 0), oldest first: the page a
// person reading the history wants first. A done ctx returns its error
// before anything is read.
func (e *Engine) LatestEvents(ctx context.Context, service string, before uint64, limit int) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return e.store.LatestEvents(service, before, limit)
}

// Logs returns the tail of a version's build and run logs, reading them
// with ctx (on a cluster, from its API server).
func (e *Engine) Logs(ctx context.Context, service, version string, max int) (string, error) {
	if _, err := e.version(service, version); err != nil {
		return "", err
	}
	return e.rt.Logs(ctx, version, max)
}

func (e *Engine) version(service, name string) (Version, error) {
	if _, err := e.store.Service(service); err != nil {
		if isNotFound(err) {
			return Version{}, notFound(ErrCodeUnknownService, "unknown service %q", service)
		}
		return Version{}, err
	}
	v, err := e.store.Version(service, name)
	if err != nil {
		if isNotFound(err) {
			return Version{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, name)
		}
		return Version{}, fmt.Errorf("load version %s: %w", name, err)
	}
	return v, nil
}
