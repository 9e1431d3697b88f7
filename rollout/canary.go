package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/routing"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// CanaryMetrics reads what a version served during a canary step from a
// data plane other than sluice's router (on the kubernetes runtime, the
// gateway's metrics in Prometheus). Implementations must be safe for
// concurrent use and should bound how long they wait.
type CanaryMetrics interface {
	// Served returns what version (of service) served from since to until.
	// An error means the figures are unknown and the step holds; a
	// *runtime.MetricsUnavailable error says why and what to do, in words
	// shown to users.
	Served(ctx context.Context, service, version string, since, until time.Time) (runtime.Served, error)
}

// canaryMetricsTimeout bounds one read of a step's figures (read outside
// the service's lock).
const canaryMetricsTimeout = 15 * time.Second

// canaryWindow is where a canary's current step began: when, and the
// router's counters of the version then, so a step is judged on the
// traffic of that step only. Kept in memory: after a restart a step's
// window starts again.
type canaryWindow struct {
	since time.Time
	base  routing.Stats
	// hold is the verdict that keeps the step waiting past its interval,
	// zero when it does not; it is recorded in the history once, when it
	// begins or changes.
	hold canaryVerdict
}

func (e *Engine) startCanaryWindow(version string) {
	w := canaryWindow{since: e.now(), base: e.router.Stats(version)}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.canaries == nil {
		e.canaries = map[string]canaryWindow{}
	}
	e.canaries[version] = w
}

func (e *Engine) canaryWindow(version string) (canaryWindow, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.canaries[version]
	return w, ok
}

func (e *Engine) setCanaryHold(version string, v canaryVerdict) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w, ok := e.canaries[version]; ok {
		w.hold = v
		e.canaries[version] = w
	}
}

// canaryOutcome is what a step's verdict does to the canary.
type canaryOutcome string

const (
	// canaryAdvance: the figures are within the plan: next step.
	canaryAdvance canaryOutcome = "advance"
	// canaryHold: there is nothing to judge on (no figures, no requests):
	// the step waits; a canary is never promoted on missing data.
	canaryHold canaryOutcome = "hold"
	// canaryStop: the figures break the plan: the canary leaves the policy.
	canaryStop canaryOutcome = "stop"
)

// canaryVerdict is the judgement of one step: the outcome, and for hold
// and stop why (and, for hold, what the user can do).
type canaryVerdict struct {
	outcome    canaryOutcome
	why        string
	suggestion string
}

// judgeCanary is the one decision of a canary step, whatever measured the
// figures (the router or Prometheus): hold without requests (or without
// latency figures when the plan bounds p99), stop when the 5xx rate or the
// p99 is above the plan, advance otherwise. Pure.
func judgeCanary(plan *CanaryPlan, s runtime.Served) canaryVerdict {
	if !(s.Requests > 0) {
		return canaryVerdict{outcome: canaryHold, why: "no requests reached it during this step",
			suggestion: "Send it traffic (or check that the metrics source sees it), or decide by hand: promote or abort."}
	}
	rate := s.Errors / s.Requests
	if plan.MaxErrorRate > 0 && rate > plan.MaxErrorRate {
		return canaryVerdict{outcome: canaryStop, why: fmt.Sprintf("5xx rate %.1f%% is above the plan's %.1f%%", rate*100, plan.MaxErrorRate*100)}
	}
	if max := time.Duration(plan.MaxP99); max > 0 {
		if !s.HasP99 {
			return canaryVerdict{outcome: canaryHold, why: "no latency figures for this step",
				suggestion: "Check that the metrics source records request durations, or decide by hand: promote or abort."}
		}
		if s.P99 > max {
			return canaryVerdict{outcome: canaryStop, why: fmt.Sprintf("p99 latency %s is above the plan's %s", s.P99.Round(time.Millisecond), max)}
		}
	}
	return canaryVerdict{outcome: canaryAdvance}
}

// stepServed is what version served since its step began: from the
// metrics source when there is one, else from the router's counters. With
// the router, quantiles cannot be subtracted: the version's p99 so far
// stands in for the step's.
func (e *Engine) stepServed(ctx context.Context, service, version string, win canaryWindow) (runtime.Served, error) {
	if e.served != nil {
		ctx, cancel := context.WithTimeout(ctx, canaryMetricsTimeout)
		defer cancel()
		return e.served.Served(ctx, service, version, win.since, e.now())
	}
	now := e.router.Stats(version)
	n := now.Responses() - win.base.Responses()
	return runtime.Served{Requests: float64(n), Errors: float64(now.Status5xx - win.base.Status5xx),
		P99: now.P99, HasP99: n > 0}, nil
}

// judgeStep reads a step's figures and judges them; figures that cannot
// be read hold the step, with the source's own reason when it gives one.
func (e *Engine) judgeStep(ctx context.Context, service string, v Version, win canaryWindow) canaryVerdict {
	s, err := e.stepServed(ctx, service, v.Name, win)
	var unavailable *runtime.MetricsUnavailable
	switch {
	case errors.As(err, &unavailable):
		return canaryVerdict{outcome: canaryHold, why: unavailable.Detail, suggestion: unavailable.Suggestion}
	case err != nil:
		e.log.Warn("read canary metrics", "service", service, "version", v.Name, "err", err)
		return canaryVerdict{outcome: canaryHold, why: "its metrics could not be read",
			suggestion: "See sluice's log for the error; meanwhile decide by hand: promote or abort."}
	}
	return judgeCanary(v.Config.Canary, s)
}

// AdvanceCanaries moves every automatic canary whose step has lasted its
// plan's interval: to the next step when its 5xx rate and p99 stayed
// within bounds (promoting it at 100%), or out of the policy (abort) when
// they did not. A step with nothing to judge on (no requests, or a
// metrics source without figures) holds: it is judged again at the next
// call on the longer window, and the history says once why it waits.
// Safe to call often (serve calls it every few seconds); versions whose
// traffic the user moved elsewhere are left alone. Each service is a unit
// of its own (package contain): one that fails or panics is reported in
// the joined error and the others still advance. Services are handled
// side by side (canaryParallel at a time), so one whose metrics source is
// slow does not hold up the canaries of the others.
func (e *Engine) AdvanceCanaries(ctx context.Context) error {
	names, err := e.Services(ctx)
	if err != nil {
		return err
	}
	errs := make([]error, len(names))
	sem := make(chan struct{}, canaryParallel)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := contain.Do(e.log.With("service", name), "canary step", func() error { return e.advanceService(ctx, name) })
			if err != nil {
				errs[i] = fmt.Errorf("advance canaries of %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// canaryParallel bounds how many services' canary steps AdvanceCanaries
// handles at once.
const canaryParallel = 8

// advanceService judges, with ctx and outside the service lock, each
// automatic canary of service whose step has lasted its interval, and
// carries out what the verdict decides (decideCanaryStep) with carry.
func (e *Engine) advanceService(ctx context.Context, service string) error {
	unlock := e.lock(service)
	svc, vs, err := e.loadService(service)
	unlock()
	if err != nil {
		return err
	}
	for _, v := range vs {
		w := svc.Policy.Split[v.Name]
		if !followsCanaryPlan(v, w) {
			continue
		}
		win, ok := e.canaryWindow(v.Name)
		if !ok { // started before a restart: this step starts again
			e.startCanaryWindow(v.Name)
			continue
		}
		if e.now().Sub(win.since) < time.Duration(v.Config.Canary.Interval) {
			continue
		}
		if err := e.stepCanary(ctx, service, v, w, win); err != nil {
			return err
		}
	}
	return nil
}

// stepCanary judges the step of v's automatic canary that began with win
// at weight w, then records a hold or carries out the next step or the
// stop. Nothing is done when v left its plan or its weight changed while
// the step was judged.
func (e *Engine) stepCanary(ctx context.Context, service string, v Version, w int, win canaryWindow) error {
	origin := Origin{Via: ViaSluice, Actor: "canary"}
	verdict := e.judgeStep(ctx, service, v, win)
	if verdict.outcome == canaryHold {
		unlock := e.lock(service)
		defer unlock()
		svc, vs, err := e.loadService(service)
		if err != nil {
			return err
		}
		if _, ok := canaryStillAt(svc, vs, v.Name, w); !ok {
			return nil
		}
		return e.recordHold(service, v, w, win, verdict, origin)
	}
	var msg string
	var following bool
	decide := func(svc Service, vs []Version) (plan, error) {
		pl, m, f, err := decideCanaryStep(svc, vs, v.Name, w, verdict, origin, e.now().UTC())
		msg, following = m, f
		return pl, err
	}
	committed, err := e.carry(ctx, service, OpCanary, nil, decide)
	if err != nil || !committed {
		return err
	}
	e.log.Info("canary step", "service", service, "version", v.Name, "result", msg)
	if following {
		e.startCanaryWindow(v.Name)
	}
	return nil
}

// recordHold appends to the history why a canary step waits, when the
// reason is new for this step; the policy is untouched.
func (e *Engine) recordHold(service string, v Version, weight int, win canaryWindow, verdict canaryVerdict, origin Origin) error {
	if win.hold == verdict {
		return nil
	}
	msg := fmt.Sprintf("automatic canary of %s holds at %d%%: %s. %s", v.Name, weight, verdict.why, verdict.suggestion)
	ev := Event{Time: e.now().UTC(), Kind: EventVersionStep, Service: service, Version: v.Name, Origin: origin,
		Op: OpCanary, Status: v.Status, Message: msg}
	if err := e.store.Commit(nil, nil, []Event{ev}); err != nil {
		return fmt.Errorf("record canary hold of %s: %w", v.Name, err)
	}
	e.setCanaryHold(v.Name, verdict)
	e.log.Info("canary holds", "service", service, "version", v.Name, "reason", verdict.why)
	return nil
}

// canaryStep is the state of a version's automatic canary step for
// status views; nil when the version follows no plan right now.
func (e *Engine) canaryStep(v Version, weight int) *CanaryStep {
	if !followsCanaryPlan(v, weight) {
		return nil
	}
	win, ok := e.canaryWindow(v.Name)
	if !ok {
		return nil
	}
	return &CanaryStep{Since: win.since.UTC(), Hold: win.hold.why, Suggestion: win.hold.suggestion}
}
