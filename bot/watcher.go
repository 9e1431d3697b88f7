package bot

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/reason"
)

// watchEvents turns the engine's history into reports: check runs and
// deployments for versions created from GitHub, follow-ups of commands,
// and the outcome of merges on their pull requests. The cursor moves in
// the same transaction as the reports it caused. Each event is a unit of
// work (package contain): one whose handling panics is skipped, with its
// follow-up, and the cursor moves past it.
func (w *watcher) watchEvents(ctx context.Context) error {
	for ctx.Err() == nil {
		cursor, err := w.cursor()
		if err != nil {
			return err
		}
		evs, err := w.eng.Events(ctx, "", cursor, 100)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, e := range evs {
			var ops []rollout.Op
			err := contain.Do(w.log.With("service", e.Service, "version", e.Version), "engine event", func() (err error) {
				ops, err = w.onEngineEvent(ctx, e)
				return err
			})
			var panicked *contain.PanicError
			if errors.As(err, &panicked) {
				// Its reports are lost, and so is its follow-up: the
				// watcher goes on with the next event.
				ops, err = []rollout.Op{rollout.Delete(bucketFollowups, e.Version)}, nil
			}
			if err != nil {
				return err
			}
			ops = append(ops, rollout.Put(bucketCursor, "events", []byte(strconv.FormatUint(e.Seq, 10))))
			if err := w.journal.Apply(ops...); err != nil {
				return err
			}
			w.poke()
		}
	}
	return ctx.Err()
}

func isFinal(s rollout.Status) bool {
	return s == rollout.StatusNormal || s == rollout.StatusFailed || s == rollout.StatusDeployFailed
}

func (w *watcher) onEngineEvent(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	if e.Kind == rollout.EventVersionStatus && e.Version != "" && (e.Op == rollout.OpStop || e.Op == rollout.OpRetire || e.Op == rollout.OpStart) {
		return w.deploymentChanged(e)
	}
	if e.Kind == rollout.EventVersionStep && e.Op == rollout.OpCanary {
		return w.tellCanaryStep(ctx, e)
	}
	if e.Origin.Repo == "" || e.Version == "" || (w.cfg.Repo != "" && e.Origin.Repo != w.cfg.Repo) {
		return nil, nil
	}
	report := func() []rollout.Op {
		base := outboxItem{Repo: e.Origin.Repo, Inst: e.Origin.Installation, Version: e.Version, Service: e.Service}
		c, d := base, base
		c.Kind, d.Kind = kindCheck, kindDeployment
		return []rollout.Op{rollout.Append(bucketOutbox, mustJSON(c)), rollout.Append(bucketOutbox, mustJSON(d))}
	}
	switch {
	case e.Kind == rollout.EventVersionCreated:
		cs := checkState{Repo: e.Origin.Repo, Inst: e.Origin.Installation, SHA: e.Origin.Ref, Service: e.Service, PR: e.Origin.PR}
		return append([]rollout.Op{rollout.Put(bucketChecks, e.Version, mustJSON(cs))}, report()...), nil
	case e.Kind == rollout.EventVersionStep && e.Op == rollout.OpDeploy:
		var cs checkState
		if ok, err := getJSON(w.journal, bucketChecks, e.Version, &cs); err != nil || !ok {
			return nil, err
		}
		cs.Built = true
		return []rollout.Op{rollout.Put(bucketChecks, e.Version, mustJSON(cs)),
			rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindCheck, Repo: cs.Repo, Inst: cs.Inst, Version: e.Version, Service: e.Service}))}, nil
	case e.Kind == rollout.EventVersionStatus && (e.Op == rollout.OpDeploy || e.Op == rollout.OpRecover) && isFinal(e.Status):
		ops := report()
		more, err := w.runFollowup(ctx, e)
		if err != nil {
			return nil, err
		}
		ops = append(ops, more...)
		if e.Origin.Via == "merge" {
			more, err := w.tellMergedPR(ctx, e)
			if err != nil {
				return nil, err
			}
			ops = append(ops, more...)
		}
		return ops, nil
	case (e.Kind == rollout.EventVersionStatus || e.Kind == rollout.EventVersionConfig) && e.Op == rollout.OpRedeploy && e.Origin.PR != 0 && isFinal(e.Status):
		body := fmt.Sprintf("♻️ In-place redeploy of %s finished: %s.", e.Version, e.Status)
		if e.Reason != nil {
			body = render.Failure(e.Version, *e.Reason) + "\n\nThe previous configuration keeps serving."
		}
		return w.rep.addPREntries(ctx, e.Origin.Repo, e.Origin.Installation, e.Origin.PR,
			render.Entry{Time: w.now(), Title: "Redeploy of " + e.Version, Body: body, OK: e.Reason == nil})
	}
	return nil, nil
}

// deploymentChanged queues the deployment status of a version GitHub
// knows that was stopped (closed PR, retired: `inactive`) or started again
// (rollback: `success`), whoever stopped or started it.
func (w *watcher) deploymentChanged(e rollout.Event) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(w.journal, bucketChecks, e.Version, &cs); err != nil || !ok {
		return nil, err
	}
	if w.cfg.Repo != "" && cs.Repo != w.cfg.Repo {
		return nil, nil
	}
	return []rollout.Op{rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindDeployment, Repo: cs.Repo, Inst: cs.Inst, Version: e.Version, Service: e.Service}))}, nil
}

// runFollowup finishes what a command started once its version is ready.
func (w *watcher) runFollowup(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	var fu followup
	if ok, err := getJSON(w.journal, bucketFollowups, e.Version, &fu); err != nil || !ok {
		return nil, err
	}
	p := &prCmd{repo: fu.Repo, inst: fu.Inst, pr: fu.PR, commentID: fu.CommentID, actor: fu.Actor, url: fu.URL}
	ops := []rollout.Op{rollout.Delete(bucketFollowups, e.Version)}
	var entry render.Entry
	ok := e.Status == rollout.StatusNormal
	switch {
	case !ok:
		r := rollout.Reason{Code: reason.Failed}
		if e.Reason != nil {
			r = *e.Reason
		}
		entry = render.Entry{Title: fu.Version + " failed", Body: render.Failure(fu.Version, r)}
	case fu.Kind == command.NameCanary:
		origin := rollout.Origin{Via: rollout.ViaComment, Actor: fu.Actor, URL: fu.URL, PR: fu.PR, Repo: fu.Repo, Installation: fu.Inst,
			Principal: rollout.ServicePrincipal(fu.Repo)}
		var err error
		entry, ok, err = w.cmds.applyCanary(ctx, fu.Service, fu.Version, fu.Percent, origin)
		if err != nil {
			return nil, err
		}
		entry.Title = fmt.Sprintf("/canary %d%% → %s", fu.Percent, fu.Version)
	default:
		_, v, _ := w.findVersion(ctx, fu.Service, fu.Version)
		entry = render.Entry{Title: fu.Version + " is ready", Body: fmt.Sprintf("✅ %s is normal at %s (0%% of traffic until you ask).", fu.Version, v.URL)}
	}
	entry.Time, entry.OK = w.now(), ok
	more, err := w.rep.addEntries(ctx, p, entry)
	if err != nil {
		return nil, err
	}
	ops = append(ops, more...)
	if ok {
		ops = append(ops, reaction(p, "rocket"))
	} else {
		ops = append(ops, reaction(p, "confused"))
	}
	return ops, nil
}

// tellCanaryStep tells the pull request a version came from (the PR of
// its commands, or the merged PR of a merge deploy) what the version's
// automatic canary did: a step, a hold and why, a stop and why, the
// promotion. A version sluice made no check run for is nobody's PR's.
func (w *watcher) tellCanaryStep(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(w.journal, bucketChecks, e.Version, &cs); err != nil || !ok {
		return nil, err
	}
	if w.cfg.Repo != "" && cs.Repo != w.cfg.Repo {
		return nil, nil
	}
	pr := cs.PR
	if pr == 0 {
		var err error
		if pr, err = mergedPR(w.journal, cs.Repo, cs.SHA); err != nil {
			return nil, err
		}
	}
	if pr == 0 {
		return nil, nil
	}
	body := e.Message
	if e.Reason != nil {
		body = render.Failure(e.Version, *e.Reason) + "\n\n" + e.Message
	}
	return w.rep.addPREntries(ctx, cs.Repo, cs.Inst, pr,
		render.Entry{Time: w.now(), Title: "Automatic canary of " + e.Version, Body: body, OK: e.Reason == nil})
}

// tellMergedPR reports a merge deploy's outcome on the pull request that
// was merged, when sluice saw it merged.
func (w *watcher) tellMergedPR(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	pr, err := mergedPR(w.journal, e.Origin.Repo, e.Origin.Ref)
	if err != nil || pr == 0 {
		return nil, err
	}
	body := fmt.Sprintf("✅ Merged as %s: %s is %s.", shortSHA(e.Origin.Ref), e.Version, e.Status)
	if e.Reason != nil {
		body = render.Failure(e.Version, *e.Reason)
	}
	return w.rep.addPREntries(ctx, e.Origin.Repo, e.Origin.Installation, pr,
		render.Entry{Time: w.now(), Title: "Merge deploy of " + e.Service, Body: body, OK: e.Reason == nil})
}
