package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/routing"
)

// canaryWindow is where a canary's current step began: when, and the
// router's counters of the version then, so a step is judged on the
// traffic of that step only. Kept in memory: after a restart a step's
// window starts again.
type canaryWindow struct {
	since time.Time
	base  routing.Stats
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

// canaryVerdict judges one step of a canary: "" to go on, or why to stop.
func canaryVerdict(plan *CanaryPlan, base, now routing.Stats) string {
	n := now.Responses() - base.Responses()
	if n == 0 {
		return ""
	}
	rate := float64(now.Status5xx-base.Status5xx) / float64(n)
	if plan.MaxErrorRate > 0 && rate > plan.MaxErrorRate {
		return fmt.Sprintf("5xx rate %.1f%% is above the plan's %.1f%%", rate*100, plan.MaxErrorRate*100)
	}
	// Quantiles cannot be subtracted; the version's p99 so far stands in.
	if max := time.Duration(plan.MaxP99); max > 0 && now.P99 > max {
		return fmt.Sprintf("p99 latency %s is above the plan's %s", now.P99.Round(time.Millisecond), max)
	}
	return ""
}

// AdvanceCanaries moves every automatic canary whose step has lasted its
// plan's interval: to the next step when its 5xx rate and p99 stayed
// within bounds (promoting it at 100%), or out of the policy (abort) when
// they did not. Safe to call often (serve calls it every few seconds);
// versions whose traffic the user moved elsewhere are left alone. Each
// service is a unit of its own (package contain): one that fails or
// panics is reported in the joined error and the others still advance.
func (e *Engine) AdvanceCanaries(ctx context.Context) error {
	names, err := e.Services()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		err := contain.Do(e.log.With("service", name), "canary step", func() error { return e.advanceService(name) })
		if err != nil {
			errs = append(errs, fmt.Errorf("advance canaries of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) advanceService(service string) error {
	unlock := e.lock(service)
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
		stable := svc.Stable()
		p := clonePolicy(svc.Policy)
		var msg string
		if why := canaryVerdict(plan, win.base, e.router.Stats(v.Name)); why != "" {
			vs[i].AutoCanary = false
			p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version != v.Name })
			delete(p.Split, v.Name)
			if stable != "" && stable != v.Name {
				p.Split[stable] += w
			}
			msg = fmt.Sprintf("automatic canary of %s stopped: %s; its traffic went back to %s", v.Name, why, stable)
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
