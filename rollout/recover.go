package rollout

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// Recover brings the engine back to the stored state after a start or a
// crash. It stops processes an earlier run left behind, marks operations
// that were in flight Interrupted (a creating version fails; an updating
// one becomes deploy-failed and keeps its old configuration), publishes the
// stored policies at once (versions answer 503 until their instances are
// up), and starts the instances of every version that should run in the
// background. A runtime whose versions outlive sluice (runtime.Adopter) is
// first told, in the background, which stored versions should run and
// which must not. Call once, before serving.
func (e *Engine) Recover(ctx context.Context) error {
	if err := e.rt.Cleanup(ctx); err != nil {
		return fmt.Errorf("clean up leftover processes: %w", err)
	}
	svcs, err := e.store.Services()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var toStart []Version
	now := e.now().UTC()
	for _, s := range svcs {
		vs, err := e.store.Versions(s.Name)
		if err != nil {
			return fmt.Errorf("recover %s: %w", s.Name, err)
		}
		for _, v := range vs {
			var ev *Event
			switch v.Status {
			case StatusCreating:
				v.Status = StatusFailed
				v.Reason = Reason{Code: reason.Interrupted,
					Detail:     fmt.Sprintf("sluice stopped while %s was being built or started; nothing of it is running.", v.Name),
					Suggestion: "Deploy the same source again."}
				ev = &Event{Kind: EventVersionStatus, Status: v.Status, Reason: &v.Reason,
					Message: v.Name + " was interrupted while creating"}
			case StatusUpdating:
				v.Status, v.Pending = StatusDeployFailed, nil
				v.Reason = Reason{Code: reason.Interrupted,
					Detail:     fmt.Sprintf("sluice stopped while %s was being redeployed in place; the previous configuration was kept and started again.", v.Name),
					Suggestion: "Run the in-place redeploy again."}
				ev = &Event{Kind: EventVersionStatus, Status: v.Status, Reason: &v.Reason,
					Message: v.Name + " in-place redeploy was interrupted"}
				toStart = append(toStart, v)
			case StatusNormal, StatusDeployFailed:
				toStart = append(toStart, v)
			}
			if ev != nil {
				ev.Time, ev.Service, ev.Version, ev.Op = now, v.Service, v.Name, OpRecover
				ev.Origin = Origin{Via: ViaSluice}
				v.UpdatedAt = now
				if err := e.store.Commit(nil, []Version{v}, []Event{*ev}); err != nil {
					return fmt.Errorf("recover %s: %w", v.Name, err)
				}
			}
		}
	}
	if err := e.publish(); err != nil {
		return err
	}
	adopter, _ := e.rt.(runtime.Adopter)
	if adopter != nil || e.plane != nil {
		e.sched.Go(func() {
			// The runtime first learns where each service lives (the data
			// plane writes its routes there) and stops what should not run.
			if adopter != nil {
				e.adopt(adopter, svcs)
			}
			if e.plane == nil {
				return
			}
			// A crash between applying a policy and committing it leaves the
			// data plane ahead of the store: the stored policy wins.
			for _, s := range svcs {
				if err := e.plane.ApplyPolicy(e.ctx, s.Name, s.Policy); err != nil {
					e.log.Error("reapply stored policy", "service", s.Name, "err", err)
				}
			}
		})
	}
	for _, v := range toStart {
		e.sched.Go(func() { e.startAfterRecover(v) })
	}
	return nil
}

// adopt hands every stored version whose status is settled to a runtime
// whose versions outlive sluice: serving ones are to run, the others (a
// deploy interrupted by the crash, stopped, failed) are to be stopped.
// Creating and updating versions belong to operations started since
// Recover, which drive the runtime themselves.
func (e *Engine) adopt(a runtime.Adopter, svcs []Service) {
	for _, s := range svcs {
		unlock := e.lock(s.Name)
		vs, err := e.store.Versions(s.Name)
		if err != nil {
			unlock()
			e.log.Error("load versions to adopt", "service", s.Name, "err", err)
			continue
		}
		for _, v := range vs {
			if v.Status == StatusCreating || v.Status == StatusUpdating {
				continue
			}
			if err := a.Adopt(e.ctx, specOf(v, v.Config, v.Generation, nil), v.Status.Serving()); err != nil {
				e.log.Error("adopt version", "service", v.Service, "version", v.Name, "err", err)
			}
		}
		unlock()
	}
}

// Restarts after a crash are retried this many times, waiting
// recoverBackoff, then twice as long each time.
const (
	recoverAttempts = 6
	recoverBackoff  = time.Second
)

// startAfterRecover starts a version that should run after a restart,
// retrying with backoff while it fails (it may need something that is not
// up yet), until it runs, sluice stops, or the version is no longer meant
// to run. The service lock is held only while starting.
func (e *Engine) startAfterRecover(v Version) {
	log := e.log.With("service", v.Service, "version", v.Name)
	for attempt := 0; ; attempt++ {
		unlock := e.lock(v.Service)
		cur, err := e.version(v.Service, v.Name)
		if err != nil || !cur.Status.Serving() || e.getRunning(v.Name) != nil {
			unlock()
			return
		}
		r := e.startVersion(cur)
		unlock()
		if r == nil {
			_ = e.publish()
			return
		}
		// The detail (a log tail) stays out of sluice's own log.
		log.Error("start version after restart", "attempt", attempt+1, "reason", r.Code)
		if attempt+1 >= recoverAttempts {
			return
		}
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(recoverBackoff << attempt):
		}
	}
}

// Retire stops every version of service (all services when "") that has
// had no weight and no rule for at least olderThan, keeping its record and
// configuration so rollback can start it again. It returns the names of
// the versions it stopped. It waits for their instances to drain and stop
// until ctx ends (they stop all the same); a ctx that ends between
// services stops the walk with ctx's error, returning what was retired.
func (e *Engine) Retire(ctx context.Context, service string, olderThan time.Duration, origin Origin) ([]string, error) {
	names := []string{service}
	if service == "" {
		if !origin.Principal.Admin {
			return nil, forbidden("retiring the versions of every service needs the admin; %s may retire only its own services", origin.Principal)
		}
		var err error
		if names, err = e.Services(ctx); err != nil {
			return nil, err
		}
	}
	var stopped []string
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return stopped, fmt.Errorf("retire versions: %w", err)
		}
		s, err := e.retireService(ctx, name, olderThan, origin)
		if err != nil {
			return stopped, err
		}
		stopped = append(stopped, s...)
	}
	return stopped, nil
}

func (e *Engine) retireService(ctx context.Context, service string, olderThan time.Duration, origin Origin) ([]string, error) {
	unlock := e.lock(service)
	svc, vs, err := e.loadService(service)
	if err != nil {
		unlock()
		return nil, err
	}
	if err := authorize(origin.Principal, &svc, true, OpRetire); err != nil {
		unlock()
		return nil, err
	}
	changed, events := decideRetire(svc, vs, olderThan, origin, e.now().UTC())
	stopped := make([]string, 0, len(changed))
	for _, v := range changed {
		stopped = append(stopped, v.Name)
	}
	if len(changed) == 0 {
		unlock()
		return nil, nil
	}
	if err := e.store.Commit(nil, changed, events); err != nil {
		unlock()
		return nil, fmt.Errorf("record retire: %w", err)
	}
	var gone []*instances
	for _, n := range stopped {
		if in := e.setRunning(n, nil); in != nil {
			gone = append(gone, in)
		}
	}
	err = e.publish()
	unlock()
	e.stopAfterCommit(ctx, gone...)
	return stopped, err
}

// decideRetire decides which versions of svc a retire stops: running
// (normal or deploy-failed) versions with no weight and no rule, idle for
// at least olderThan. It returns them recorded stopped, with one event
// each. Pure.
func decideRetire(svc Service, vs []Version, olderThan time.Duration, origin Origin, now time.Time) ([]Version, []Event) {
	var (
		changed []Version
		events  []Event
	)
	for _, v := range vs {
		if v.Status != StatusNormal && v.Status != StatusDeployFailed {
			continue
		}
		if inPolicy(svc.Policy, v.Name) || v.IdleSince.IsZero() || now.Sub(v.IdleSince) < olderThan {
			continue
		}
		v.Status, v.Reason, v.UpdatedAt = StatusStopped, Reason{}, now
		changed = append(changed, v)
		events = append(events, Event{Time: now, Kind: EventVersionStatus, Service: svc.Name, Version: v.Name,
			Origin: origin, Op: OpRetire, Status: StatusStopped,
			Message: fmt.Sprintf("%s stopped after %s without traffic", v.Name, now.Sub(v.IdleSince).Round(time.Second))})
	}
	return changed, events
}

// StopVersion stops one version that has no weight and no rule, keeping
// its record and configuration (as retire does). Stopping a version that
// is already stopped is a no-op. It waits for the instances to drain and
// stop until ctx ends (they stop all the same).
func (e *Engine) StopVersion(ctx context.Context, service, version string, origin Origin) error {
	unlock := e.lock(service)
	svc, vs, err := e.loadService(service)
	if err != nil {
		unlock()
		return err
	}
	if err := authorize(origin.Principal, &svc, true, "stop"); err != nil {
		unlock()
		return err
	}
	i, ok := findVersion(vs, version)
	if !ok {
		unlock()
		return notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, version)
	}
	v := vs[i]
	if v.Status == StatusStopped {
		unlock()
		return nil
	}
	if inPolicy(svc.Policy, version) {
		unlock()
		return conflict(ErrCodeBusy, "%s still takes traffic; move its traffic away first", version)
	}
	if v.Status != StatusNormal && v.Status != StatusDeployFailed {
		unlock()
		return conflict(ErrCodeBusy, "%s is %s; only a running version can be stopped", version, v.Status)
	}
	now := e.now().UTC()
	v.Status, v.Reason, v.UpdatedAt = StatusStopped, Reason{}, now
	ev := Event{Time: now, Kind: EventVersionStatus, Service: service, Version: version, Origin: origin, Op: OpStop,
		Status: StatusStopped, Message: version + " stopped"}
	if err := e.store.Commit(nil, []Version{v}, []Event{ev}); err != nil {
		unlock()
		return fmt.Errorf("record stop: %w", err)
	}
	in := e.setRunning(version, nil)
	err = e.publish()
	unlock()
	e.stopAfterCommit(ctx, in)
	return err
}

// DeleteVersion deletes a failed version's record (its configuration, its
// reason) so it no longer clutters the service; the history of it is
// kept, plus an event saying it was deleted. Versions that are normal,
// busy, stopped or named by the policy are refused: only a version that
// can never serve again may go.
func (e *Engine) DeleteVersion(ctx context.Context, service, version string, origin Origin) error {
	unlock := e.lock(service)
	defer unlock()
	svc, vs, err := e.loadService(service)
	if err != nil {
		return err
	}
	if err := authorize(origin.Principal, &svc, true, "delete"); err != nil {
		return err
	}
	i, ok := findVersion(vs, version)
	if !ok {
		return notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, version)
	}
	if inPolicy(svc.Policy, version) {
		return conflict(ErrCodeBusy, "%s is in the traffic policy of %s; move its traffic and rules away first", version, service)
	}
	if st := vs[i].Status; st != StatusFailed {
		return conflict(ErrCodeBusy, "%s is %s; only failed versions can be deleted (retire stops a version, keeping it)", version, st)
	}
	ev := Event{Time: e.now().UTC(), Kind: EventVersionDeleted, Service: service, Version: version, Origin: origin,
		Op: OpDelete, Message: version + " deleted"}
	if err := e.store.DeleteVersion(service, version, []Event{ev}); err != nil {
		return fmt.Errorf("delete version: %w", err)
	}
	return e.publish()
}
