package rollout

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// maxPlanRounds bounds how often a policy operation decides again because
// its service changed while its slow actions ran outside the lock.
const maxPlanRounds = 4

// restoreTimeout bounds putting the committed policy back on the data
// plane after an operation applied one it then did not commit.
const restoreTimeout = 30 * time.Second

// changePolicy carries out one policy operation (see package doc, "Policy
// operations"): carry with a decision that checks the origin's principal
// owns the service (see authorize) and decides (decidePolicy). An *Error
// or a ctx error means nothing was committed.
func (e *Engine) changePolicy(ctx context.Context, service string, ch policyChange, origin Origin) (ServiceStatus, error) {
	decide := func(svc Service, vs []Version) (plan, error) {
		if err := authorize(origin.Principal, &svc, true, ch.Op); err != nil {
			return plan{}, err
		}
		return decidePolicy(svc, vs, ch, origin, e.now().UTC())
	}
	if _, err := e.carry(ctx, service, ch.Op, nil, decide); err != nil {
		return ServiceStatus{}, err
	}
	return e.status(service)
}

// decision decides, under the service lock, from the service as loaded:
// the plan that carries it out, or a plan without actions when there is
// nothing (left) to do. It is called again whenever the service changed
// while the plan's slow actions ran, so it must not have effects of its
// own.
type decision func(svc Service, vs []Version) (plan, error)

// carry carries out a decision, for an operation a caller asked for and
// for the engine's background work (a deploy's outcome, a canary step)
// alike: under the service lock it loads the service and decides; the
// slow actions (starting stopped versions, the data plane's ApplyPolicy)
// run with ctx outside the lock, so reads and other operations on the
// service go on meanwhile; then, under the lock again, it decides afresh
// and commits only if that plan needs nothing more, else it goes round
// again, at most maxPlanRounds times. The data plane's apply lock is held
// throughout, so no other policy is applied in between.
//
// handed (nil: none; carry takes it over) are instances the caller
// started (a deploy's build), by version name: an actHandOver action puts
// them in the running set at commit.
// Whatever carry started or was handed and did not hand over is stopped
// when it returns. It reports whether it committed; false with a nil
// error means the last decision found nothing to do. An *Error or a ctx
// error means nothing was committed, and the data plane routes by the
// committed policy again.
func (e *Engine) carry(ctx context.Context, service string, op Operation, handed map[string]*instances, decide decision) (bool, error) {
	if handed == nil {
		handed = map[string]*instances{}
	}
	r := policyRun{e: e, service: service, started: handed}
	defer r.stopLeftovers()
	if e.plane != nil {
		release, err := e.lockApply(ctx, service)
		if err != nil {
			return false, err
		}
		defer release()
	}
	for range maxPlanRounds {
		done, committed, err := r.round(ctx, decide)
		if err != nil {
			r.restorePlane(ctx)
			return false, err
		}
		if done {
			if !committed {
				r.restorePlane(ctx)
			}
			return committed, nil
		}
	}
	r.restorePlane(ctx)
	return false, conflict(ErrCodeBusy, "%s kept changing while this %s was carried out; nothing changed, try again", service, op)
}

// policyRun is the state of one carry call across its rounds: the
// instances it started (or was handed) and not yet handed over, and the
// policy it last had the data plane apply (nil: none).
type policyRun struct {
	e       *Engine
	service string
	started map[string]*instances // by version name
	applied *policy.Policy
}

// round decides under the lock and then either commits (done, committed),
// finds nothing to do (done, not committed), or runs the slow actions the
// plan still needs outside the lock (not done).
func (r *policyRun) round(ctx context.Context, decide decision) (done, committed bool, err error) {
	e := r.e
	unlock := e.lock(r.service)
	svc, vs, err := e.loadService(r.service)
	var pl plan
	if err == nil {
		pl, err = decide(svc, vs)
	}
	if err != nil {
		unlock()
		return false, false, err
	}
	if len(pl.Actions) == 0 {
		unlock()
		return true, false, nil
	}
	var todo []Version
	for _, v := range pl.starts() {
		if in, ok := r.started[v.Name]; !ok || in.gen != v.Generation {
			todo = append(todo, v)
		}
	}
	for _, v := range pl.handOvers() {
		if in, ok := r.started[v.Name]; !ok || in.gen != v.Generation {
			unlock()
			return false, false, fmt.Errorf("hand over %s: no instances of generation %d were started", v.Name, v.Generation)
		}
	}
	next, sets := svc.Policy, false
	for _, a := range pl.Actions {
		if a.Kind == actApply {
			next, sets = a.Policy, true
		}
	}
	// The data plane applies the plan's policy once, and the committed
	// one again when an earlier round applied another.
	apply := e.plane != nil && ((sets && r.applied == nil) || (r.applied != nil && !reflect.DeepEqual(*r.applied, next)))
	if len(todo) == 0 && !apply {
		err := r.commit(pl)
		unlock()
		return err == nil, err == nil, err
	}
	unlock()
	for _, v := range todo {
		if old := r.started[v.Name]; old != nil {
			delete(r.started, v.Name)
			e.stopStarted(old)
		}
		in, err := e.startAgain(ctx, v)
		if err != nil {
			return false, false, err
		}
		r.started[v.Name] = in
	}
	if apply {
		p := clonePolicy(next)
		if err := e.applyPolicy(ctx, r.service, p); err != nil {
			return false, false, err // the data plane still routes by what it did
		}
		r.applied = &p
	}
	return false, false, nil
}

// commit carries out a plan's commit and publish under the service lock:
// the instances it started take the place of what ran before.
func (r *policyRun) commit(pl plan) error {
	e := r.e
	type swap struct {
		name string
		in   *instances
		old  *instances
	}
	var swaps []swap
	for _, v := range append(pl.starts(), pl.handOvers()...) {
		in := r.started[v.Name]
		swaps = append(swaps, swap{v.Name, in, e.setRunning(v.Name, in)})
		delete(r.started, v.Name)
	}
	if err := e.store.Commit(&pl.Service, pl.Versions, pl.Events); err != nil {
		for _, s := range swaps {
			e.setRunning(s.name, s.old)
			r.started[s.name] = s.in
		}
		return fmt.Errorf("record policy: %w", err)
	}
	for _, s := range swaps {
		e.stopStarted(s.old)
	}
	return e.publish()
}

// stopLeftovers stops what the call started and did not hand over.
func (r *policyRun) stopLeftovers() {
	for name, in := range r.started {
		delete(r.started, name)
		r.e.stopStarted(in)
	}
}

// restorePlane has the data plane route by the committed policy again
// after the call applied one it did not commit. It runs even when ctx is
// cancelled (bounded by restoreTimeout): the data plane must not keep an
// uncommitted policy.
func (r *policyRun) restorePlane(ctx context.Context) {
	if r.applied == nil {
		return
	}
	e := r.e
	unlock := e.lock(r.service)
	svc, err := e.store.Service(r.service)
	unlock()
	if err != nil {
		e.log.Error("load policy to restore the data plane", "service", r.service, "err", err)
		return
	}
	if reflect.DeepEqual(*r.applied, svc.Policy) {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
	defer cancel()
	if err := e.plane.ApplyPolicy(rctx, r.service, svc.Policy); err != nil {
		e.log.Error("restore the committed policy on the data plane", "service", r.service, "err", err)
	}
}

// startAgain starts a stopped version's recorded configuration and waits,
// with ctx, until it is healthy. It does not touch the store or the
// running set; the caller hands the instances over or stops them.
func (e *Engine) startAgain(ctx context.Context, v Version) (*instances, error) {
	g, err := e.start(ctx, specOf(v, v.Config, v.Generation, nil))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("start %s again: %w", v.Name, ctx.Err())
		}
		r := reasonOf(err)
		return nil, conflict(ErrCodeStartFailed, "could not start %s again: %s: %s", v.Name, r.Code, r.Detail)
	}
	return &instances{gen: v.Generation, group: g}, nil
}

// stopStarted stops instances that never were in the routing table (or no
// longer are), without draining. Nil is a no-op.
func (e *Engine) stopStarted(in *instances) {
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.stopGrace+5*time.Second)
	defer cancel()
	if err := in.group.Stop(context.WithoutCancel(ctx), e.stopGrace); err != nil {
		e.log.Error("stop instances", "err", err)
	}
}

// applyPolicy has the data plane route service by p, with ctx.
func (e *Engine) applyPolicy(ctx context.Context, service string, p policy.Policy) error {
	err := e.plane.ApplyPolicy(ctx, service, p)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("apply policy of %s: %w", service, ctx.Err())
	case errors.Is(err, policy.ErrInvalidPolicy):
		return invalid(ErrCodeInvalidPolicy, "%v", err)
	}
	return conflict(ErrCodeDataPlane, "the new policy of %s was not applied, the previous one still routes: %v", service, err)
}
