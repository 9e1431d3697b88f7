package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// group is the runtime.Group of one started generation.
type group struct {
	l       *Local
	spec    runtime.Spec
	dir     string
	health  string
	timeout time.Duration
	notify  func()
	log     *slog.Logger
	ctx     context.Context // ends when the group stops
	cancel  context.CancelFunc
	ports   []int
	wg      sync.WaitGroup // supervisors

	mu       sync.Mutex
	insts    []*instance
	stopping bool
	released bool
	live     bool // counted in Local.live
}

// instance is one supervised process slot; its port never changes.
type instance struct {
	idx     int
	port    int
	logPath string

	// Guarded by group.mu.
	p        *proc
	up       bool
	upSince  time.Time
	restarts int
}

var errStopping = errors.New("group is stopping")

func (g *group) url(inst *instance) string {
	return "http://127.0.0.1:" + strconv.Itoa(inst.port) + g.health
}

// launch starts a process for inst. The caller records it in inst.
func (g *group) launch(inst *instance) (*proc, error) {
	header := fmt.Sprintf("==== sluice: %s generation %d instance %d: started %s on port %d (restart %d): %s",
		g.spec.Version, g.spec.Generation, inst.idx, time.Now().UTC().Format(time.RFC3339), inst.port, inst.restarts, g.spec.Run)
	env := g.l.childEnv(g.spec.Env, map[string]string{
		EnvPort:    strconv.Itoa(inst.port),
		EnvVersion: g.spec.Version,
	})
	return g.l.startProc(g.dir, g.spec.Run, env, inst.logPath, header)
}

// Instances implements runtime.Group.
func (g *group) Instances() []runtime.Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]runtime.Instance, len(g.insts))
	for i, inst := range g.insts {
		out[i] = runtime.Instance{
			Addr:     "127.0.0.1:" + strconv.Itoa(inst.port),
			Up:       inst.up,
			Restarts: inst.restarts,
		}
		if inst.p != nil {
			out[i].PID = inst.p.pid
		}
	}
	return out
}

// Stop implements runtime.Group: it stops restarting, sends SIGTERM to every
// instance's process group, SIGKILL after grace (the Local's drain grace
// when grace <= 0), and waits until the processes are reaped. It returns
// ctx's error if ctx ends first (SIGKILL has been sent by then). notify is
// not called for instances Stop takes down. Idempotent and safe for
// concurrent use.
func (g *group) Stop(ctx context.Context, grace time.Duration) error {
	if grace <= 0 {
		grace = g.l.grace
	}
	procs, first := g.beginStop()
	if first {
		g.log.Info("stopping instances", "instances", len(g.insts))
	}
	if err := terminate(ctx, procs, grace); err != nil {
		return fmt.Errorf("stop %s: %w", g.spec.Version, err)
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", g.spec.Version, ctx.Err())
	}
	g.releasePorts()
	if first {
		g.log.Info("instances stopped")
	}
	return nil
}

// beginStop marks the group stopping and returns its current processes and
// whether this was the first call.
func (g *group) beginStop() ([]*proc, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := !g.stopping
	g.stopping = true
	g.cancel()
	var procs []*proc
	for _, inst := range g.insts {
		inst.up = false
		if inst.p != nil {
			procs = append(procs, inst.p)
		}
	}
	return procs, first
}

// abort kills every process of a group that failed to start.
func (g *group) abort(ctx context.Context) {
	procs, _ := g.beginStop()
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := terminate(kctx, procs, 0); err != nil {
		g.log.Error("instances of a failed start survived SIGKILL", "err", err)
	}
	g.releasePorts()
}

func (g *group) releasePorts() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.released {
		g.released = true
		g.l.releasePorts(g.ports)
		if g.live {
			g.l.setLive(g.spec.Version, g.spec.Generation, -1)
		}
	}
}

// terminate sends SIGTERM to each process group, SIGKILL to those left
// after grace (at once when grace is 0), and waits until all are gone.
func terminate(ctx context.Context, procs []*proc, grace time.Duration) error {
	if grace > 0 {
		for _, p := range procs {
			if !p.gone() {
				p.signal(syscall.SIGTERM)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		ok := waitGone(gctx, procs)
		cancel()
		if ok {
			return nil
		}
	}
	for _, p := range procs {
		if !p.gone() {
			p.signal(syscall.SIGKILL)
		}
	}
	if waitGone(ctx, procs) {
		return nil
	}
	// SIGKILL takes effect within moments; give it those even when ctx is
	// over, so that Stop rarely returns with processes still exiting.
	kctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if waitGone(kctx, procs) {
		return nil
	}
	return fmt.Errorf("wait for instances to exit: %w", ctx.Err())
}

// supervise restarts inst whenever its process exits, until the group
// stops.
func (g *group) supervise(inst *instance) {
	defer g.wg.Done()
	log := g.log.With("instance", inst.idx, "port", inst.port)
	g.mu.Lock()
	p, upSince := inst.p, inst.upSince
	g.mu.Unlock()
	backoff := g.l.backoffMin
	for {
		select {
		case <-p.done:
		case <-g.ctx.Done():
			return
		}
		if !g.setUp(inst, false, nil) {
			return
		}
		upFor := time.Since(upSince)
		log.Warn("instance exited", "pid", p.pid, "exit", p.exitText(), "up_for", upFor.Round(time.Millisecond))
		g.changed()
		// Children the leader left behind may hold the port; they go with it.
		kctx, kcancel := context.WithTimeout(g.ctx, 10*time.Second)
		_ = terminate(kctx, []*proc{p}, 0)
		kcancel()

		delay, next := backoffStep(backoff, g.l.backoffMin, g.l.backoffMax, upFor)
		for {
			backoff = next
			if !g.sleep(delay) {
				return
			}
			np, err := g.relaunch(inst)
			if errors.Is(err, errStopping) {
				return
			}
			if err != nil {
				log.Error("instance restart failed", "err", err)
				delay, next = backoffStep(backoff, g.l.backoffMin, g.l.backoffMax, 0)
				continue
			}
			log.Info("instance restarted", "pid", np.pid)
			hctx, cancel := context.WithTimeout(g.ctx, g.timeout)
			r := g.l.waitHealthy(hctx, np, g.url(inst))
			cancel()
			if g.ctx.Err() != nil {
				return
			}
			if r.healthy {
				if why, _ := portViolation(np.pid, inst.port); why != "" {
					log.Error("restarted instance killed: it listens where it may not", "pid", np.pid, "reason", why)
					_ = appendFile(inst.logPath, "==== sluice: restarted instance killed: "+why+"; an instance may listen only on $PORT\n")
					kctx, kcancel := context.WithTimeout(g.ctx, 10*time.Second)
					_ = terminate(kctx, []*proc{np}, 0)
					kcancel()
					delay, next = backoffStep(backoff, g.l.backoffMin, g.l.backoffMax, 0)
					continue
				}
				if !g.setUp(inst, true, np) {
					return
				}
				log.Info("instance healthy", "pid", np.pid)
				g.changed()
				p, upSince = np, time.Now()
				break
			}
			if !r.exited {
				kctx, kcancel := context.WithTimeout(g.ctx, 10*time.Second)
				_ = terminate(kctx, []*proc{np}, 0)
				kcancel()
			}
			log.Warn("restarted instance did not become healthy", "pid", np.pid, "exited", r.exited)
			delay, next = backoffStep(backoff, g.l.backoffMin, g.l.backoffMax, 0)
		}
	}
}

// relaunch starts a new process for inst unless the group is stopping.
// Holding mu across the start means Stop either sees the new process or
// prevents it.
func (g *group) relaunch(inst *instance) (*proc, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return nil, errStopping
	}
	inst.restarts++
	p, err := g.launch(inst)
	if err != nil {
		return nil, err
	}
	inst.p = p
	return p, nil
}

// setUp records inst's liveness (and, when it comes up, its process); it
// reports false if the group is stopping.
func (g *group) setUp(inst *instance, up bool, p *proc) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	inst.up = up
	if up {
		inst.upSince = time.Now()
		inst.p = p
	}
	return true
}

func (g *group) changed() {
	if g.notify != nil {
		g.notify()
	}
}

// sleep waits d; it reports false if the group stopped meanwhile.
func (g *group) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.ctx.Done():
		return false
	}
}

// backoffStep returns the delay before the next restart and the delay to
// use after that: cur (reset to min when the instance had been up for
// backoffResetAfter), then doubled up to max.
func backoffStep(cur, min, max, upFor time.Duration) (delay, next time.Duration) {
	if upFor >= backoffResetAfter || cur < min {
		cur = min
	}
	if cur > max {
		cur = max
	}
	next = cur * 2
	if next > max {
		next = max
	}
	return cur, next
}
