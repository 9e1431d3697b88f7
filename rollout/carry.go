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
// operations"): under the service lock it loads the service, checks the
// origin's principal owns it (see authorize) and decides (decidePolicy);
// the slow actions (starting stopped versions, the data plane's
// ApplyPolicy) run with ctx outside the lock; then, under the lock again,
// it decides afresh and commits only if that plan needs nothing more,
// else it goes round again, at most maxPlanRounds times. An *Error or a
// ctx error means nothing was committed: what it started is stopped and
// the data plane routes by the committed policy again.
func (e *Engine) changePolicy(ctx context.Context, service string, ch policyChange, origin Origin) (ServiceStatus, error) {
	if e.plane != nil {
		release, err := e.lockApply(ctx, service)
		if err != nil {
			return ServiceStatus{}, err
		}
		defer release()
	}
	r := policyRun{e: e, service: service, started: map[string]*instances{}}
	defer r.stopLeftovers()
	for range maxPlanRounds {
		done, err := r.round(ctx, ch, origin)
		if err != nil {
			r.restorePlane(ctx)
			return ServiceStatus{}, err
		}
		if done {
			return e.status(service)
		}
	}
	r.restorePlane(ctx)
	return ServiceStatus{}, conflict(ErrCodeBusy, "%s kept changing while this %s was carried out; nothing changed, try again", service, ch.Op)
}

// policyRun is the state of one changePolicy call across its rounds: the
// instances it started and not yet handed over, and the policy it last
// had the data plane apply (nil: none).
type policyRun struct {
	e       *Engine
	service string
	started map[string]*instances // by version name
	applied *policy.Policy
}

// round decides under the lock and either commits (true) or runs the slow
// actions the plan still needs outside the lock (false).
func (r *policyRun) round(ctx context.Context, ch policyChange, origin Origin) (bool, error) {
	e := r.e
	unlock := e.lock(r.service)
	svc, vs, err := e.loadService(r.service)
	if err == nil {
		err = authorize(origin.Principal, &svc, true, ch.Op)
	}
	var pl plan
	if err == nil {
		pl, err = decidePolicy(svc, vs, ch, origin, e.now().UTC())
	}
	if err != nil {
		unlock()
		return false, err
	}
	var todo []Version
	for _, v := range pl.starts() {
		if in, ok := r.started[v.Name]; !ok || in.gen != v.Generation {
			todo = append(todo, v)
		}
	}
	next := svc.Policy
	for _, a := range pl.Actions {
		if a.Kind == actApply {
			next = a.Policy
		}
	}
	apply := e.plane != nil && (r.applied == nil || !reflect.DeepEqual(*r.applied, next))
	if len(todo) == 0 && !apply {
		err := r.commit(pl)
		unlock()
		return err == nil, err
	}
	unlock()
	for _, v := range todo {
		if old := r.started[v.Name]; old != nil {
			delete(r.started, v.Name)
			e.stopStarted(old)
		}
		in, err := e.startAgain(ctx, v)
		if err != nil {
			return false, err
		}
		r.started[v.Name] = in
	}
	if apply {
		p := clonePolicy(next)
		if err := e.applyPolicy(ctx, r.service, p); err != nil {
			return false, err // the data plane still routes by what it did
		}
		r.applied = &p
	}
	return false, nil
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
	for _, v := range pl.starts() {
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

// lockForPolicy takes, for the engine's own background work that sets a
// policy, the apply lock (when there is a data plane) and then the service
// lock, in the one order every caller uses; the returned func releases
// both.
func (e *Engine) lockForPolicy(ctx context.Context, service string) (func(), error) {
	release := func() {}
	if e.plane != nil {
		r, err := e.lockApply(ctx, service)
		if err != nil {
			return nil, err
		}
		release = r
	}
	unlock := e.lock(service)
	return func() { unlock(); release() }, nil
}

// commitPolicy sets p as the service's policy for the engine's own
// background work (a deploy's outcome, a canary step): caller holds both
// locks of lockForPolicy. On success svc and vs are what was committed. It plans
// (planPolicy: nothing is started), has the data plane apply p with the
// engine's lifetime ctx, commits svc, vs and the events (extra first) in
// one transaction and publishes. On error nothing is committed.
func (e *Engine) commitPolicy(svc *Service, vs []Version, p policy.Policy, op Operation, origin Origin, extra ...Event) error {
	pl, err := planPolicy(*svc, vs, p, op, origin, e.now().UTC(), false, extra...)
	if err != nil {
		return err
	}
	for _, a := range pl.Actions {
		switch a.Kind {
		case actApply:
			if e.plane != nil {
				if err := e.applyPolicy(e.ctx, svc.Name, a.Policy); err != nil {
					return err
				}
			}
		case actCommit:
			if err := e.store.Commit(&pl.Service, pl.Versions, pl.Events); err != nil {
				return fmt.Errorf("record policy: %w", err)
			}
			*svc = pl.Service
			copy(vs, pl.Versions)
		case actPublish:
			if err := e.publish(); err != nil {
				return err
			}
		}
	}
	return nil
}
