package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/rollout/reason"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// Start starts spec.Instances instances of a built generation, each running
// `/bin/sh -c spec.Run` in gen-<N>/src in its own process group with $PORT
// set to a free 127.0.0.1 port, and returns once every instance answers
// spec.Health with 2xx. Instances are probed in parallel until
// spec.StartTimeout (runtime.DefaultStartTimeout when zero).
//
// On failure it kills every instance it started and returns a
// *runtime.Failure saying which instance failed how (reason.ProcessExited,
// reason.PortNotListening, reason.HealthCheckFailed, reason.HealthCheckTimeout,
// reason.StartFailed, or reason.SourceUnavailable when the generation is not
// built); if ctx ends first it returns ctx's error, also leaving nothing
// running.
//
// Ports are checked free when they are handed out, but another program
// can bind one before the instance does. A start that fails while another
// process holds the failed instance's port (once the start's own
// instances are gone) is not the version's fault: Start tries again on
// other ports, up to maxPortTries times in all.
//
// After Start returns, a crashed instance is restarted on the same port
// with exponential backoff, and notify (nil allowed) is called from the
// supervising goroutine whenever an instance goes down or comes back up.
func (l *Local) Start(ctx context.Context, spec runtime.Spec, notify func()) (runtime.Group, error) {
	for try := 1; ; try++ {
		g, err := l.start(ctx, spec, notify)
		var taken *portTaken
		if !errors.As(err, &taken) {
			return g, err
		}
		if try == maxPortTries {
			return nil, taken.failure
		}
		l.log.Warn("another process took an instance's port; starting again on other ports",
			"service", spec.Service, "version", spec.Version, "generation", spec.Generation, "port", taken.port, "try", try)
	}
}

// maxPortTries bounds the starts of one Start call that fail because
// another process took an instance's port.
const maxPortTries = 3

// portTaken is a failed start whose failed instance's port another
// process holds: the start's failure, had it not been retried.
type portTaken struct {
	port    int
	failure *runtime.Failure
}

func (e *portTaken) Error() string { return e.failure.Error() }

// failedStart ends a start whose instance inst failed with f: it kills
// the group's instances, then reports a *portTaken when another process
// still listens on inst's port.
func (g *group) failedStart(ctx context.Context, inst *instance, f *runtime.Failure) error {
	g.abort(ctx)
	if anyListens(inst.port) {
		return &portTaken{port: inst.port, failure: f}
	}
	return f
}

func (l *Local) start(ctx context.Context, spec runtime.Spec, notify func()) (runtime.Group, error) {
	if err := checkVersion(spec.Version); err != nil {
		return nil, fmt.Errorf("start version: %w", err)
	}
	if spec.Generation < 1 || spec.Instances < 1 {
		return nil, fmt.Errorf("start %s: invalid generation %d or instance count %d", spec.Version, spec.Generation, spec.Instances)
	}
	log := l.log.With("service", spec.Service, "version", spec.Version, "generation", spec.Generation)
	dir := l.srcDir(spec.Version, spec.Generation)
	if !l.built(spec.Version, spec.Generation) {
		log.Warn("start of an unbuilt generation")
		return nil, &runtime.Failure{
			Code:       reason.SourceUnavailable,
			Detail:     fmt.Sprintf("Generation %d of %s has no built work directory.", spec.Generation, spec.Version),
			Suggestion: "Deploy the version again so it is rebuilt.",
		}
	}
	health := spec.Health
	if health == "" {
		health = "/"
	}
	if !strings.HasPrefix(health, "/") {
		health = "/" + health
	}
	if _, err := url.ParseRequestURI(health); err != nil {
		return nil, &runtime.Failure{
			Code:       reason.HealthCheckFailed,
			Detail:     fmt.Sprintf("The health path %q is not a valid URL path.", spec.Health),
			Suggestion: "Set `health:` in sluice.yaml to a path such as /healthz.",
		}
	}
	timeout := spec.StartTimeout
	if timeout <= 0 {
		timeout = runtime.DefaultStartTimeout
	}
	if err := os.MkdirAll(l.logDir(spec.Version), 0o750); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	ports, err := l.allocPorts(spec.Instances)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Version, err)
	}

	spec.Archive = nil // not needed, and not worth keeping alive
	env := make(map[string]string, len(spec.Env))
	for k, v := range spec.Env {
		env[k] = v
	}
	spec.Env = env // restarts use it after Start returns; the caller's map may change
	gctx, gcancel := context.WithCancel(context.Background())
	g := &group{
		l:       l,
		spec:    spec,
		dir:     dir,
		health:  health,
		timeout: timeout,
		notify:  notify,
		log:     log,
		ctx:     gctx,
		cancel:  gcancel,
		ports:   ports,
	}
	for i, port := range ports {
		inst := &instance{idx: i, port: port, logPath: filepath.Join(l.logDir(spec.Version), runLogName(spec.Generation, i))}
		g.insts = append(g.insts, inst)
		p, err := g.launch(inst)
		if err != nil {
			g.abort(ctx)
			log.Warn("instance could not start", "instance", i, "port", port, "err", err)
			return nil, &runtime.Failure{
				Code: reason.StartFailed,
				Detail: withTail(fmt.Sprintf("Instance %d: the run command `%s` could not be started: %v.", i, spec.Run, err),
					"its log ("+filepath.Base(inst.logPath)+")", readTail(inst.logPath, 0, tailLines, tailBytes)),
				Suggestion: "Check that the run command and the env values in sluice.yaml are valid and that the work directory exists.",
			}
		}
		inst.p = p
		log.Info("instance started", "instance", i, "pid", p.pid, "port", port)
	}

	// Probe all instances in parallel; the first instance that exits or is
	// clearly failing ends the wait for all, a timeout ends it for each.
	pctx, pcancel := context.WithTimeout(ctx, timeout)
	defer pcancel()
	results := make([]healthResult, len(g.insts))
	var firstExit atomic.Int64
	firstExit.Store(-1)
	var wg sync.WaitGroup
	for i, inst := range g.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.waitHealthy(pctx, inst.p, g.url(inst))
			if (results[i].exited || results[i].failing) && firstExit.CompareAndSwap(-1, int64(i)) {
				pcancel()
			}
		}()
	}
	wg.Wait()

	if err := ctx.Err(); err != nil {
		g.abort(ctx)
		log.Info("start cancelled")
		return nil, fmt.Errorf("start %s: %w", spec.Version, err)
	}
	failed := int(firstExit.Load())
	if failed < 0 {
		for i, r := range results {
			if !r.healthy {
				failed = i
				break
			}
		}
	}
	if failed >= 0 {
		f := g.failure(g.insts[failed], results[failed])
		log.Warn("start failed", "instance", failed, "port", g.insts[failed].port, "code", f.Code)
		return nil, g.failedStart(ctx, g.insts[failed], f)
	}

	for _, inst := range g.insts {
		if why, code := portViolation(inst.p.pid, inst.port); why != "" {
			log.Warn("start failed", "instance", inst.idx, "port", inst.port, "code", code, "reason", why)
			return nil, g.failedStart(ctx, inst, &runtime.Failure{
				Code: code,
				Detail: withTail(fmt.Sprintf("Instance %d (run command `%s`) passed its health check, but %s.", inst.idx, spec.Run, why),
					"its log ("+filepath.Base(inst.logPath)+")", readTail(inst.logPath, inst.p.logOff, tailLines, tailBytes)),
				Suggestion: "An instance may listen only on the port in the PORT environment variable: remove other listeners (debug or metrics servers, a second app) from the run command, or run them as services of their own.",
			})
		}
	}
	g.mu.Lock()
	for _, inst := range g.insts {
		inst.up = true
		inst.upSince = time.Now()
	}
	g.mu.Unlock()
	for _, inst := range g.insts {
		g.wg.Add(1)
		go g.supervise(inst)
	}
	g.mu.Lock()
	g.live = true
	g.mu.Unlock()
	l.setLive(spec.Version, spec.Generation, 1)
	g.wg.Add(1)
	go g.watch()
	l.prune(spec.Service, spec.Version, spec.Generation)
	log.Info("instances healthy", "instances", len(g.insts))
	return g, nil
}

// obsKind is what one health probe saw.
type obsKind int

const (
	// Ordered by how far the probe got.
	obsNone     obsKind = iota // nothing conclusive (the wait ended mid-dial)
	obsRefused                 // no connection: nothing listening
	obsNoAnswer                // connected, but no HTTP answer in time
	obsStatus                  // an HTTP answer other than 2xx
	obsHealthy                 // a 2xx answer
)

type observation struct {
	kind   obsKind
	status int
	err    error
}

// probe sends one GET to u. ctx bounds the whole wait; each probe also has
// its own probeTimeout.
func (l *Local) probe(ctx context.Context, u string) observation {
	rctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var connected atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), http.MethodGet, u, nil)
	if err != nil {
		return observation{kind: obsRefused, err: err}
	}
	req.Header.Set("User-Agent", "sluice-health-check")
	resp, err := l.client.Do(req)
	if err != nil {
		switch {
		case connected.Load():
			return observation{kind: obsNoAnswer, err: err}
		case ctx.Err() != nil:
			return observation{kind: obsNone, err: err}
		default:
			return observation{kind: obsRefused, err: err}
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return observation{kind: obsHealthy, status: resp.StatusCode}
	}
	return observation{kind: obsStatus, status: resp.StatusCode}
}

// healthResult is how waiting for one instance to become healthy ended.
type healthResult struct {
	healthy bool
	exited  bool        // the process exited first
	failing bool        // failingProbes 5xx answers in a row ended the wait
	last    observation // the last conclusive probe
}

// waitHealthy probes u every probeInterval until a 2xx answer, the exit of
// p, failingProbes 5xx answers in a row, or the end of ctx.
func (l *Local) waitHealthy(ctx context.Context, p *proc, u string) healthResult {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	var last observation
	serverErrors := 0
	for {
		if p.exited() {
			return healthResult{exited: true, last: last}
		}
		obs := l.probe(ctx, u)
		if obs.kind == obsHealthy {
			return healthResult{healthy: true, last: obs}
		}
		if obs.kind == obsStatus && obs.status >= 500 {
			serverErrors++
		} else if obs.kind != obsNone {
			serverErrors = 0
		}
		if serverErrors >= failingProbes {
			return healthResult{failing: true, last: obs}
		}
		// A probe the end of the wait cut short only counts if it got
		// further than the probes before it (connected where they were
		// refused), so an app answering 500 is not reported as silent.
		cut := obs.err != nil && ctx.Err() != nil
		if obs.kind != obsNone && (!cut || obs.kind > last.kind) {
			last = obs
		}
		select {
		case <-p.done:
			return healthResult{exited: true, last: last}
		case <-ctx.Done():
			return healthResult{last: last}
		case <-t.C:
		}
	}
}

// failure describes why inst did not become healthy.
func (g *group) failure(inst *instance, r healthResult) *runtime.Failure {
	spec := g.spec
	addr := "127.0.0.1:" + strconv.Itoa(inst.port)
	logName := "its log (" + filepath.Base(inst.logPath) + ")"
	tail := readTail(inst.logPath, inst.p.logOff, tailLines, tailBytes)
	if r.exited {
		return &runtime.Failure{
			Code: reason.ProcessExited,
			Detail: withTail(fmt.Sprintf("Instance %d (run command `%s`, port %d) %s before it passed the health check at %s.",
				inst.idx, spec.Run, inst.port, inst.p.exitText(), g.health), logName, tail),
			Suggestion: fmt.Sprintf("Read the log above and fix what makes the process exit; `run: %s` must start a server that keeps running in the source directory and listens on $PORT.", spec.Run),
		}
	}
	switch r.last.kind {
	case obsStatus:
		if r.failing {
			return &runtime.Failure{
				Code: reason.HealthCheckFailed,
				Detail: withTail(fmt.Sprintf("Instance %d (%s) answered GET %s with HTTP %d %d times in a row, never with 2xx; sluice stopped waiting before the start timeout of %v.",
					inst.idx, addr, g.health, r.last.status, failingProbes, g.timeout), logName, tail),
				Suggestion: fmt.Sprintf("Make %s return a 2xx status once the app is ready (and no 5xx while it starts), or set `health:` in sluice.yaml to a path that does.", g.health),
			}
		}
		return &runtime.Failure{
			Code: reason.HealthCheckFailed,
			Detail: withTail(fmt.Sprintf("Instance %d (%s) answered GET %s with HTTP %d, never with 2xx, within the start timeout of %v.",
				inst.idx, addr, g.health, r.last.status, g.timeout), logName, tail),
			Suggestion: fmt.Sprintf("Make %s return a 2xx status once the app is ready, or set `health:` in sluice.yaml to a path that does.", g.health),
		}
	case obsNoAnswer:
		return &runtime.Failure{
			Code: reason.HealthCheckTimeout,
			Detail: withTail(fmt.Sprintf("Instance %d (%s) accepted connections but never answered GET %s (each probe waits %v) within the start timeout of %v.",
				inst.idx, addr, g.health, probeTimeout, g.timeout), logName, tail),
			Suggestion: fmt.Sprintf("Make %s answer quickly, without waiting on slow dependencies, or raise `timeouts.start` in sluice.yaml.", g.health),
		}
	default:
		return &runtime.Failure{
			Code: reason.PortNotListening,
			Detail: withTail(fmt.Sprintf("Instance %d kept running but nothing accepted connections on %s ($PORT=%d) within the start timeout of %v.",
				inst.idx, addr, inst.port, g.timeout), logName, tail),
			Suggestion: fmt.Sprintf("Make the app listen on the port in the PORT environment variable (here %d), on 127.0.0.1 or all interfaces, or raise `timeouts.start` in sluice.yaml if it needs longer to start.", inst.port),
		}
	}
}
