package rollout

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/runtime"
	"github.com/sluicehq/sluice/rollout/source"
)

// DeployRequest asks for a new version of Service built from Archive, a
// tar.gz whose root holds sluice.yaml.
type DeployRequest struct {
	Service  string
	Archive  []byte
	Strategy Strategy // "" means full
	Origin   Origin
	// AutoCanary makes a canary deploy follow the manifest's canary plan
	// (ignored when the manifest has none or the strategy is full).
	AutoCanary bool
}

// Deploy validates the source and its manifest, records a new version in
// status creating and returns it at once; the build, start and health check
// run in the background and end in normal (with the strategy applied to the
// split) or a failure status with a reason. An *Error means nothing was
// recorded.
//
// Who may deploy is decided before anything in the request is looked at:
// a principal that may not deploy the service is refused with
// KindForbidden whatever its source or strategy, so a stranger learns
// nothing from sluice's validation of what it sent.
func (e *Engine) Deploy(ctx context.Context, req DeployRequest) (Version, error) {
	unlock := e.lock(req.Service)
	defer unlock()
	svc, err := e.store.Service(req.Service)
	if err != nil && !isNotFound(err) {
		return Version{}, fmt.Errorf("load service %s: %w", req.Service, err)
	}
	now := e.now().UTC()
	exists := !isNotFound(err)
	if !exists {
		svc = Service{Name: req.Service, NextSeq: 1, Policy: policy.Policy{Split: map[string]int{}}, CreatedAt: now}
	}
	p := req.Origin.Principal
	if err := authorize(p, &svc, exists, OpDeploy); err != nil {
		return Version{}, err
	}
	switch req.Strategy {
	case "":
		req.Strategy = StrategyFull
	case StrategyFull, StrategyCanary:
	default:
		return Version{}, invalid(ErrCodeInvalidConfig, "unknown strategy %q: use full or canary", req.Strategy)
	}
	cfg, err := e.configFromSource(req.Service, req.Archive)
	if err != nil {
		return Version{}, err
	}
	cfg.Commit = commitOf(req.Origin)
	digest, err := source.Digest(req.Archive, e.limits)
	if err != nil {
		return Version{}, invalid(ErrCodeInvalidSource, "%v", err)
	}
	switch {
	case !p.Admin:
		// A scoped principal acts for its own repository, whatever the
		// origin says; authorize made sure the service is (or becomes) its.
		svc.Repo, req.Origin.Repo = p.Repo, p.Repo
	case svc.Repo == "" && !exists:
		svc.Repo = req.Origin.Repo
	case req.Origin.Repo != "" && req.Origin.Repo != svc.Repo:
		// The admin speaking for a repository (the Action's event mode
		// with the admin token) acts on that repository's services only;
		// an unowned service is assigned with SetRepo, not adopted.
		return Version{}, conflict(ErrCodeWrongRepo, "service %s belongs to %s, not %s", svc.Name, orNone(svc.Repo), req.Origin.Repo)
	}
	v := Version{
		Name:       fmt.Sprintf("%s-%03d", svc.Name, svc.NextSeq),
		Service:    svc.Name,
		Seq:        svc.NextSeq,
		Status:     StatusCreating,
		Config:     cfg,
		Generation: 1,
		Strategy:   req.Strategy,
		Digest:     digest,
		AutoCanary: req.AutoCanary && req.Strategy == StrategyCanary && cfg.Canary != nil,
		CreatedBy:  req.Origin,
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	svc.NextSeq++
	ev := Event{Time: now, Kind: EventVersionCreated, Service: svc.Name, Version: v.Name, Origin: req.Origin,
		Op: OpDeploy, Status: v.Status, Message: fmt.Sprintf("%s created (%s deploy)", v.Name, req.Strategy)}
	if err := e.store.Commit(&svc, []Version{v}, []Event{ev}); err != nil {
		return Version{}, fmt.Errorf("record version: %w", err)
	}
	if err := e.publish(); err != nil {
		e.log.Error("publish after create", "err", err)
	}
	archive := req.Archive
	e.sched.Go(func() { e.runDeploy(v, archive) })
	return v, nil
}

// configFromSource validates an archive and returns the configuration its
// manifest declares for service.
func (e *Engine) configFromSource(service string, archive []byte) (Config, error) {
	info, err := source.Inspect(archive, e.limits)
	if err != nil {
		var se *source.Error
		if errors.As(err, &se) {
			return Config{}, invalid(ErrCodeInvalidSource, "%s", se.Message)
		}
		return Config{}, invalid(ErrCodeInvalidSource, "invalid source archive: %v", err)
	}
	m, err := manifest.Parse(manifest.FileName, info.Manifest)
	if err != nil {
		return Config{}, manifestError(err)
	}
	ms, ok := m.Service(service)
	if !ok {
		names := make([]string, 0, len(m.Services))
		for _, s := range m.Services {
			names = append(names, s.Name)
		}
		sort.Strings(names)
		return Config{}, &Error{Kind: KindInvalid, Code: ErrCodeManifest,
			Message: fmt.Sprintf("%s declares no service %q (it declares: %s)", manifest.FileName, service, strings.Join(names, ", "))}
	}
	return configOf(ms), nil
}

func manifestError(err error) *Error {
	var me *manifest.Error
	if !errors.As(err, &me) {
		return invalid(ErrCodeManifest, "%s: %v", manifest.FileName, err)
	}
	out := &Error{Kind: KindInvalid, Code: ErrCodeManifest, Message: me.Error()}
	for _, p := range me.Problems {
		out.Problems = append(out.Problems, Problem{File: p.File, Line: p.Line, Column: p.Column, Field: p.Field, Message: p.Message})
	}
	return out
}

func configOf(s manifest.Service) Config {
	return cloneConfig(Config{
		Build:        s.Build,
		Run:          s.Run,
		Health:       s.Health,
		Env:          s.Env,
		Instances:    s.Instances,
		BuildTimeout: Duration(s.Timeouts.Build),
		StartTimeout: Duration(s.Timeouts.Start),
		OnMerge:      s.OnMerge,
		Sticky:       s.Sticky,
		MaxBodyBytes: s.MaxBodyBytes,
		Canary:       canaryOf(s.Canary),
		Kubernetes:   placementOf(s.Kubernetes),
	})
}

func placementOf(k *manifest.Kubernetes) *KubePlacement {
	if k == nil {
		return nil
	}
	return &KubePlacement{Image: k.Image, Namespace: k.Namespace}
}

// commitOf is the commit SHA an origin's source came from, "" for uploads.
func commitOf(o Origin) string {
	if o.Ref == "upload" {
		return ""
	}
	return o.Ref
}

func canaryOf(c *manifest.Canary) *CanaryPlan {
	if c == nil {
		return nil
	}
	return &CanaryPlan{Steps: append([]int(nil), c.Steps...), Interval: Duration(c.Interval),
		MaxErrorRate: c.MaxErrorRate, MaxP99: Duration(c.MaxP99)}
}

func specOf(v Version, cfg Config, gen int, archive []byte) runtime.Spec {
	health := cfg.Health
	if health == "" {
		health = runtime.DefaultHealth
	}
	bt, st := time.Duration(cfg.BuildTimeout), time.Duration(cfg.StartTimeout)
	if bt <= 0 {
		bt = runtime.DefaultBuildTimeout
	}
	if st <= 0 {
		st = runtime.DefaultStartTimeout
	}
	spec := runtime.Spec{
		Service: v.Service, Version: v.Name, Generation: gen,
		Archive: archive, BaseGeneration: v.Generation,
		Build: cfg.Build, Run: cfg.Run, Health: health, Env: cfg.Env, Instances: max(cfg.Instances, 1),
		BuildTimeout: bt, StartTimeout: st,
		SHA: cfg.Commit, PR: v.CreatedBy.PR,
	}
	if k := cfg.Kubernetes; k != nil {
		spec.Image, spec.Namespace = k.Image, k.Namespace
	}
	return spec
}

// StepBuilt is the Message of the EventVersionStep recorded when a
// generation's build finished.
const StepBuilt = "built"

// buildAndStart runs one generation to healthy instances, or returns the
// reason it could not. It records a step event once the build is done.
func (e *Engine) buildAndStart(spec runtime.Spec, op Operation, origin Origin) (runtime.Group, *Reason) {
	if err := e.contained("build", spec, func() error { return e.rt.Build(e.ctx, spec) }); err != nil {
		return nil, reasonOf(err)
	}
	ev := Event{Time: e.now().UTC(), Kind: EventVersionStep, Service: spec.Service, Version: spec.Version,
		Origin: origin, Op: op, Message: StepBuilt}
	if err := e.store.Commit(nil, nil, []Event{ev}); err != nil {
		e.log.Error("record build step", "service", spec.Service, "version", spec.Version, "err", err)
	}
	g, err := e.start(e.ctx, spec)
	if err != nil {
		return nil, reasonOf(err)
	}
	return g, nil
}

// contained runs one call into the runtime driver for spec as a unit of
// work: a panic in the driver comes back as a *contain.PanicError, which
// reasonOf turns into the version's InternalError, so it fails that
// version only and never leaves the service locked.
func (e *Engine) contained(unit string, spec runtime.Spec, f func() error) error {
	return contain.Do(e.log.With("service", spec.Service, "version", spec.Version), unit, f)
}

// start starts spec's instances, contained, and waits with ctx until they
// are healthy.
func (e *Engine) start(ctx context.Context, spec runtime.Spec) (g runtime.Group, err error) {
	err = e.contained("start", spec, func() error {
		g, err = e.rt.Start(ctx, spec, e.notify)
		return err
	})
	return g, err
}

func reasonOf(err error) *Reason {
	var f *runtime.Failure
	if errors.As(err, &f) {
		return &Reason{Code: f.Code, Detail: f.Detail, Suggestion: f.Suggestion}
	}
	return &Reason{Code: reason.InternalError, Detail: err.Error(),
		Suggestion: "This is a problem in sluice itself; check the server log and deploy again."}
}

// runDeploy is the background half of Deploy: it builds and starts v,
// then records a failure (failDeploy), or carries out decideDeployed with
// the engine's lifetime ctx, outside the service lock but for the
// decisions and the commit. When that cannot be committed (the data plane
// refused the policy) the new instances are stopped and the version fails
// with the data plane's words.
func (e *Engine) runDeploy(v Version, archive []byte) {
	log := e.log.With("service", v.Service, "version", v.Name)
	group, reason := e.buildAndStart(specOf(v, v.Config, 1, archive), OpDeploy, v.CreatedBy)
	if e.ctx.Err() != nil {
		// Shutting down: leave the version creating; Recover marks it
		// Interrupted.
		if group != nil {
			_ = group.Stop(context.Background(), e.stopGrace)
		}
		return
	}
	if reason != nil {
		e.failDeploy(v, *reason)
		return
	}
	var canary bool
	decide := func(svc Service, vs []Version) (plan, error) {
		pl, c, err := decideDeployed(svc, vs, v.Name, e.now().UTC())
		canary = c
		return pl, err
	}
	handed := map[string]*instances{v.Name: {gen: v.Generation, group: group}}
	_, err := e.carry(e.ctx, v.Service, OpDeploy, handed, decide)
	switch {
	case err == nil:
		if canary {
			e.startCanaryWindow(v.Name)
		}
		log.Info("deploy succeeded", "strategy", string(v.Strategy))
	case e.ctx.Err() != nil: // shutting down, as above
	default:
		log.Error("record deploy success", "err", err)
		e.failDeploy(v, deployNotCarried(err))
	}
}

// deployNotCarried is the reason a deploy whose instances were healthy
// fails when its outcome could not be committed (see runDeploy).
func deployNotCarried(err error) Reason {
	if e, ok := AsError(err); ok && (e.Code == ErrCodeDataPlane || e.Code == ErrCodeInvalidPolicy) {
		return Reason{Code: reason.DataPlaneFailed, Detail: e.Message,
			Suggestion: "Fix what the data plane reports, then deploy again; the version's instances were stopped."}
	}
	return *reasonOf(err)
}

// failDeploy records that the deploy of v failed for r, if v is still
// being created, and publishes.
func (e *Engine) failDeploy(v Version, r Reason) {
	log := e.log.With("service", v.Service, "version", v.Name)
	unlock := e.lock(v.Service)
	defer unlock()
	_, vs, err := e.loadService(v.Service)
	if err != nil {
		log.Error("load service after build", "err", err)
		return
	}
	i, ok := findVersion(vs, v.Name)
	if !ok || vs[i].Status != StatusCreating {
		log.Error("version vanished or changed during build")
		return
	}
	cur := vs[i]
	cur.UpdatedAt = e.now().UTC()
	cur.Status, cur.Reason = StatusFailed, r
	ev := Event{Time: cur.UpdatedAt, Kind: EventVersionStatus, Service: v.Service, Version: v.Name, Origin: v.CreatedBy,
		Op: OpDeploy, Status: cur.Status, Reason: &r, Message: fmt.Sprintf("%s failed: %s", v.Name, r.Code)}
	if err := e.store.Commit(nil, []Version{cur}, []Event{ev}); err != nil {
		log.Error("record deploy failure", "err", err)
	}
	log.Info("deploy failed", "reason", r.Code)
	_ = e.publish()
}

// startVersion starts a stopped (or not running) version's recorded
// configuration again and waits until it is healthy, with the engine's
// lifetime ctx (it is background work after a restart). Caller holds the
// service lock.
func (e *Engine) startVersion(v Version) *Reason {
	spec := specOf(v, v.Config, v.Generation, nil)
	g, err := e.start(e.ctx, spec)
	if err != nil {
		return reasonOf(err)
	}
	if old := e.setRunning(v.Name, &instances{gen: v.Generation, group: g}); old != nil {
		_ = old.group.Stop(context.Background(), e.stopGrace)
	}
	return nil
}
