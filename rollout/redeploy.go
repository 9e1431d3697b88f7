package rollout

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/source"
)

// RedeployRequest is a new configuration for an existing version. With an
// Archive, the service's entry in that source's sluice.yaml is the new base
// configuration and the source is rebuilt; without one, the recorded
// configuration is the base and the built tree is reused. Env, UnsetEnv,
// Instances and Run then override the base.
type RedeployRequest struct {
	Archive   []byte
	Env       map[string]string
	UnsetEnv  []string
	Instances *int
	Run       *string
	Origin    Origin
}

// Redeploy replaces a version's configuration in place (SPEC §3.6). The
// version becomes updating at once and Redeploy returns; in the background
// new instances start beside the old ones, and only when they are healthy
// does the router switch to them, the old ones drain, and the new
// configuration is recorded. On failure the version becomes deploy-failed
// with a reason, the old instances keep serving and the recorded
// configuration stays the old one. Traffic weights never change.
func (e *Engine) Redeploy(ctx context.Context, service, version string, req RedeployRequest) (Version, error) {
	// Refused callers learn nothing about the source they sent: the
	// ownership check comes first (and again under the lock below).
	if err := e.authorizeExisting(service, req.Origin.Principal, OpRedeploy); err != nil {
		return Version{}, err
	}
	cur, err := e.version(service, version)
	if err != nil {
		return Version{}, err
	}
	base := cloneConfig(cur.Config)
	if req.Archive != nil {
		if base, err = e.configFromSource(service, req.Archive); err != nil {
			return Version{}, err
		}
		base.Commit = commitOf(req.Origin)
	}
	cfg, err := applyOverrides(base, req)
	if err != nil {
		return Version{}, err
	}
	digest := cur.Digest
	if req.Archive != nil {
		if digest, err = source.Digest(req.Archive, e.limits); err != nil {
			return Version{}, invalid(ErrCodeInvalidSource, "%v", err)
		}
	}
	var started *instances // a retired version started again, not yet handed over
	defer func() { e.stopStarted(started) }()
	for range maxPlanRounds {
		unlock := e.lock(service)
		if err := e.authorizeExisting(service, req.Origin.Principal, OpRedeploy); err != nil {
			unlock()
			return Version{}, err
		}
		v, err := e.version(service, version)
		if err != nil {
			unlock()
			return Version{}, err
		}
		pl, err := decideRedeploy(v, cfg, req.Origin, e.now().UTC())
		if err != nil {
			unlock()
			return Version{}, err
		}
		if starts := pl.starts(); len(starts) > 0 && (started == nil || started.gen != v.Generation) {
			// A retired version keeps its configuration: start it outside
			// the lock, then decide again.
			unlock()
			e.stopStarted(started)
			if started, err = e.startAgain(ctx, v); err != nil {
				return Version{}, err
			}
			continue
		}
		handed := len(pl.starts()) > 0
		if handed {
			e.stopStarted(e.setRunning(v.Name, started))
			started = nil
		}
		nv := pl.Versions[0]
		if err := e.store.Commit(nil, pl.Versions, pl.Events); err != nil {
			if handed {
				started = e.setRunning(v.Name, nil) // still recorded stopped: stop it
			}
			unlock()
			return Version{}, fmt.Errorf("record redeploy: %w", err)
		}
		archive := req.Archive
		e.sched.Go(func() { e.runRedeploy(nv, cfg, digest, archive, req.Origin) })
		unlock()
		return nv, nil
	}
	return Version{}, conflict(ErrCodeBusy, "%s kept changing while it was being redeployed; nothing changed, try again", version)
}

// decideRedeploy decides an in-place redeploy of v to cfg: a stopped
// version is started again first (an actStart, recorded normal with a
// start event); then only a normal or deploy-failed version becomes
// updating, with cfg pending. Pure.
func decideRedeploy(v Version, cfg Config, origin Origin, now time.Time) (plan, error) {
	var out plan
	if v.Status == StatusStopped {
		out.Actions = append(out.Actions, action{Kind: actStart, Version: v})
		v.Status, v.Reason, v.UpdatedAt = StatusNormal, Reason{}, now
		out.Events = append(out.Events, Event{Time: now, Kind: EventVersionStatus, Service: v.Service, Version: v.Name,
			Origin: origin, Op: OpStart, Status: StatusNormal, Message: v.Name + " started again"})
	}
	if v.Status != StatusNormal && v.Status != StatusDeployFailed {
		return plan{}, conflict(ErrCodeBusy, "%s is %s; only a normal, deploy-failed or stopped version can be redeployed in place", v.Name, v.Status)
	}
	pending := cloneConfig(cfg)
	v.Status, v.Reason, v.Pending, v.UpdatedAt = StatusUpdating, Reason{}, &pending, now
	out.Events = append(out.Events, Event{Time: now, Kind: EventVersionStatus, Service: v.Service, Version: v.Name, Origin: origin,
		Op: OpRedeploy, Status: v.Status, Message: fmt.Sprintf("%s is updating in place", v.Name)})
	out.Versions = []Version{v}
	out.Actions = append(out.Actions, action{Kind: actCommit})
	return out, nil
}
func applyOverrides(c Config, req RedeployRequest) (Config, error) {
	c = cloneConfig(c)
	for _, k := range req.UnsetEnv {
		delete(c.Env, k)
	}
	for k, v := range req.Env {
		if !manifest.ValidEnvName(k) {
			return Config{}, invalid(ErrCodeInvalidConfig, "invalid environment variable name %q", k)
		}
		c.Env[k] = v
	}
	if req.Instances != nil {
		if n := *req.Instances; n < 1 || n > manifest.MaxInstances {
			return Config{}, invalid(ErrCodeInvalidConfig, "instances must be between 1 and %d, not %d", manifest.MaxInstances, n)
		}
		c.Instances = *req.Instances
	}
	if req.Run != nil {
		if strings.TrimSpace(*req.Run) == "" {
			return Config{}, invalid(ErrCodeInvalidConfig, "run command must not be empty")
		}
		c.Run = *req.Run
	}
	return c, nil
}

// runRedeploy is the background half of Redeploy.
func (e *Engine) runRedeploy(v Version, cfg Config, digest string, archive []byte, origin Origin) {
	log := e.log.With("service", v.Service, "version", v.Name)
	gen := v.Generation + 1
	group, reason := e.buildAndStart(specOf(v, cfg, gen, archive), OpRedeploy, origin)
	if e.ctx.Err() != nil {
		if group != nil {
			_ = group.Stop(context.Background(), e.stopGrace)
		}
		return
	}
	unlock := e.lock(v.Service)
	cur, err := e.version(v.Service, v.Name)
	if err != nil {
		unlock()
		log.Error("load version after redeploy", "err", err)
		return
	}
	now := e.now().UTC()
	cur.Pending, cur.UpdatedAt = nil, now
	ev := Event{Time: now, Service: v.Service, Version: v.Name, Origin: origin, Op: OpRedeploy}
	var old *instances
	if reason != nil {
		cur.Status, cur.Reason = StatusDeployFailed, *reason
		ev.Kind, ev.Status, ev.Reason = EventVersionStatus, cur.Status, reason
		ev.Message = fmt.Sprintf("in-place redeploy of %s failed (%s); the previous configuration keeps serving", v.Name, reason.Code)
	} else {
		cur.Status, cur.Reason, cur.Config, cur.Generation, cur.Digest = StatusNormal, Reason{}, cfg, gen, digest
		ev.Kind, ev.Status = EventVersionConfig, cur.Status
		ev.Message = fmt.Sprintf("%s now serves generation %d (%s)", v.Name, gen, diffConfig(v.Config, cfg))
	}
	if reason == nil {
		// The router switches to the new instances before the version is
		// recorded normal, so whoever sees it normal reaches them.
		old = e.setRunning(v.Name, &instances{gen: gen, group: group})
		if err := e.publish(); err != nil {
			log.Error("publish after redeploy", "err", err)
		}
	}
	if err := e.store.Commit(nil, []Version{cur}, []Event{ev}); err != nil {
		log.Error("record redeploy outcome", "err", err)
		if reason == nil {
			e.setRunning(v.Name, old)
			_ = e.publish()
		}
		if group != nil {
			_ = group.Stop(context.Background(), e.stopGrace)
		}
		unlock()
		return
	}
	if err := e.publish(); err != nil {
		log.Error("publish after redeploy", "err", err)
	}
	unlock()
	// The router no longer sends to the old instances; let them finish.
	e.stopInstances(old)
	log.Info("redeploy finished", "ok", reason == nil)
}

// diffConfig summarizes what an in-place redeploy changed.
func diffConfig(a, b Config) string {
	var d []string
	if a.Run != b.Run {
		d = append(d, "run")
	}
	if a.Build != b.Build {
		d = append(d, "build")
	}
	if a.Instances != b.Instances {
		d = append(d, fmt.Sprintf("instances %d→%d", a.Instances, b.Instances))
	}
	if !maps.Equal(a.Env, b.Env) {
		d = append(d, "env")
	}
	if a.Health != b.Health {
		d = append(d, "health")
	}
	if len(d) == 0 {
		return "same configuration"
	}
	return "changed " + strings.Join(d, ", ")
}
