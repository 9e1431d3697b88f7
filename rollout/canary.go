package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/policy"
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

// canaryMetricsTimeout bounds one read of a step's figures: the service's
// lock is held meanwhile.
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
// the joined error and the others still advance.
func (e *Engine) AdvanceCanaries(ctx context.Context) error {
	names, err := e.Services()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		err := contain.Do(e.log.With("service", name), "canary step", func() error { return e.advanceService(ctx, name) })
		if err != nil {
			errs = append(errs, fmt.Errorf("advance canaries of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) advanceService(ctx context.Context, service string) error {
	unlock, err := e.lockForPolicy(ctx, service)
	if err != nil {
		return err
	}
	defer unlock()
	svc, vs, err := e.loadService(service)
	if err != nil {
		return err
	}
	for i, v := range vs {
		plan := v.Config.Canary
		w := svc.Policy.Split[v.Name]
		if !v.AutoCanary || plan == nil || v.Status != StatusNormal || w == 0 || w == 100 {
			continue
		}
		win, ok := e.canaryWindow(v.Name)
		if !ok { // started before a restart: this step starts again
			e.startCanaryWindow(v.Name)
			continue
		}
		if e.now().Sub(win.since) < time.Duration(plan.Interval) {
			continue
		}
		origin := Origin{Via: ViaSluice, Actor: "canary"}
		verdict := e.judgeStep(ctx, service, v, win)
		if verdict.outcome == canaryHold {
			if err := e.recordHold(service, v, w, win, verdict, origin); err != nil {
				return err
			}
			continue
		}
		stable := svc.Stable()
		p := clonePolicy(svc.Policy)
		var msg string
		if verdict.outcome == canaryStop {
			vs[i].AutoCanary = false
			p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version != v.Name })
			delete(p.Split, v.Name)
			if stable != "" && stable != v.Name {
				p.Split[stable] += w
			}
			msg = fmt.Sprintf("automatic canary of %s stopped: %s; its traffic went back to %s", v.Name, verdict.why, stable)
		} else {
			next := 100
			for _, s := range plan.Steps {
				if s > w {
					next = s
					break
				}
			}
			if next >= 100 || stable == "" || stable == v.Name {
				vs[i].AutoCanary = false
				p.Split = map[string]int{v.Name: 100}
				msg = fmt.Sprintf("automatic canary of %s passed every step: promoted", v.Name)
			} else {
				p.Split = map[string]int{stable: 100 - next, v.Name: next}
				msg = fmt.Sprintf("automatic canary of %s: %d%% → %d%%", v.Name, w, next)
			}
		}
		ev := Event{Time: e.now().UTC(), Kind: EventVersionStep, Service: service, Version: v.Name, Origin: origin,
			Op: OpCanary, Status: v.Status, Message: msg}
		if err := e.commitPolicy(&svc, vs, p, "canary", origin, ev); err != nil {
			return err
		}
		e.log.Info("canary step", "service", service, "version", v.Name, "result", msg)
		if vs[i].AutoCanary {
			e.startCanaryWindow(v.Name)
		}
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
	if !v.AutoCanary || v.Config.Canary == nil || weight == 0 || weight == 100 {
		return nil
	}
	win, ok := e.canaryWindow(v.Name)
	if !ok {
		return nil
	}
	return &CanaryStep{Since: win.since.UTC(), Hold: win.hold.why, Suggestion: win.hold.suggestion}
}
