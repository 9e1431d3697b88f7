package bot

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"slices"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/source"
)

// followup is work a command left for when its version is ready: the
// event watcher runs it once the version is normal or failed.
type followup struct {
	Kind      command.Name `json:"kind"` // the command that left it: NameDeploy or NameCanary
	Service   string       `json:"service"`
	Version   string       `json:"version"`
	Percent   int          `json:"percent,omitempty"`
	Repo      string       `json:"repo"`
	Inst      int64        `json:"installation"`
	PR        int          `json:"pr"`
	CommentID int64        `json:"comment_id"`
	Actor     string       `json:"actor"`
	URL       string       `json:"url"`
}

func (p *prCmd) followup(kind command.Name, service, version string, percent int) followup {
	return followup{Kind: kind, Service: service, Version: version, Percent: percent, Repo: p.repo, Inst: p.inst,
		PR: p.pr, CommentID: p.commentID, Actor: p.actor, URL: p.url}
}

// sourceService fetches the PR head and resolves the service the command
// deploys from its sluice.yaml. A fork's head is fetched only as fork.go
// allows. A refusal or a manifest problem comes back as a finished outcome
// (with a check run on the head).
func (cm *commands) sourceService(ctx context.Context, p *prCmd, c command.Command) (string, *outcome, error) {
	if why, err := cm.forkRefusal(ctx, p); err != nil || why != "" {
		if err != nil {
			return "", nil, err
		}
		out := cm.refuseFork(p, why)
		return "", &out, nil
	}
	archive, err := cm.headArchive(ctx, p)
	if err != nil {
		return "", nil, err
	}
	names, merr := manifestServices(archive)
	if merr != nil {
		out := failed(render.Failure(shortSHA(p.head), rollout.Reason{Code: reason.InvalidManifest, Detail: merr.Message,
			Suggestion: "Fix sluice.yaml at the lines shown, push, and run the command again."}))
		out.ops = append(out.ops, cm.rep.manifestCheck(p.repo, p.inst, p.head, brokenServices(c.Service, archive), merr)...)
		return "", &out, nil
	}
	svc, problem := chooseService(c.Service, names, "declared in sluice.yaml")
	if problem == "" && !slices.Contains(names, svc) {
		problem = fmt.Sprintf("sluice.yaml at %s declares no service %q.", shortSHA(p.head), svc)
	}
	if problem != "" {
		out := failed(problem + "\n\nUsage: `" + command.Usage(c.Name) + "`")
		return "", &out, nil
	}
	return svc, nil, nil
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// deployHead deploys the PR head as a canary (0%) version.
func (cm *commands) deployHead(ctx context.Context, p *prCmd, svc string) (rollout.Version, *outcome, error) {
	v, err := cm.eng.Deploy(ctx, rollout.DeployRequest{Service: svc, Archive: p.archive, Strategy: rollout.StrategyCanary, Origin: p.origin()})
	if err != nil {
		if re, ok := rollout.AsError(err); ok {
			out := failed(re.Message)
			if re.Code == rollout.ErrCodeManifest {
				out.ops = append(out.ops, cm.rep.manifestCheck(p.repo, p.inst, p.head, []string{svc}, re)...)
			}
			return v, &out, nil
		}
		return v, nil, err
	}
	return v, nil, nil
}

func (cm *commands) runDeploy(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	svc, done, err := cm.sourceService(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	// The head already has a live version: say so rather than build the
	// same commit twice (this also makes a re-handled delivery harmless;
	// "Re-run" on the check run deploys a commit again on purpose).
	// Only for a service of this repository: another repository's service
	// (one reassigned since) is the engine's to refuse.
	if st, err := cm.eng.Status(ctx, svc); err == nil && st.Repo == p.repo {
		if v, ok := prVersion(st, p, p.head); ok && (v.Status == rollout.StatusNormal || v.Status == rollout.StatusCreating) {
			return outcome{ok: true, entry: render.Entry{Body: fmt.Sprintf("%s already runs %s (%s) at %s.", v.Name, shortSHA(p.head), v.Status, v.URL)}}, nil
		}
	}
	v, done, err := cm.deployHead(ctx, p, svc)
	if err != nil || done != nil {
		return deref(done), err
	}
	fu := p.followup(command.NameDeploy, svc, v.Name, 0)
	return outcome{pending: true, ok: true,
		entry: render.Entry{Body: fmt.Sprintf("⏳ Deploying %s from %s; the check run `sluice / %s` shows its progress.", v.Name, shortSHA(p.head), svc)},
		ops:   []rollout.Op{rollout.Put(bucketFollowups, v.Name, mustJSON(fu))}}, nil
}

func deref(o *outcome) outcome {
	if o == nil {
		return outcome{}
	}
	return *o
}

func (cm *commands) runCanary(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	svc, done, err := cm.sourceService(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	st, err := cm.eng.Status(ctx, svc)
	if err == nil {
		if v, ok := prVersion(st, p, p.head); ok {
			switch {
			case v.Status == rollout.StatusNormal:
				entry, ok, err := cm.applyCanary(ctx, svc, v.Name, c.Percent, p.origin())
				return outcome{entry: entry, ok: ok}, err
			case v.Status == rollout.StatusCreating:
				fu := p.followup(command.NameCanary, svc, v.Name, c.Percent)
				return outcome{pending: true, ok: true,
					entry: render.Entry{Body: fmt.Sprintf("⏳ %s is still being created; it gets %d%% once it is healthy.", v.Name, c.Percent)},
					ops:   []rollout.Op{rollout.Put(bucketFollowups, v.Name, mustJSON(fu))}}, nil
			}
		}
	}
	v, done, err := cm.deployHead(ctx, p, svc)
	if err != nil || done != nil {
		return deref(done), err
	}
	fu := p.followup(command.NameCanary, svc, v.Name, c.Percent)
	return outcome{pending: true, ok: true,
		entry: render.Entry{Body: fmt.Sprintf("⏳ Deploying %s from %s; it gets %d%% of %s's traffic once it is healthy.", v.Name, shortSHA(p.head), c.Percent, svc)},
		ops:   []rollout.Op{rollout.Put(bucketFollowups, v.Name, mustJSON(fu))}}, nil
}

// applyCanary sets the split to {stable: 100-N, version: N}.
func (cm *commands) applyCanary(ctx context.Context, svc, version string, percent int, origin rollout.Origin) (render.Entry, bool, error) {
	st, err := cm.eng.Status(ctx, svc)
	if err != nil {
		return render.Entry{}, false, err
	}
	split := map[string]int{version: percent}
	switch {
	case st.Stable == "" || st.Stable == version:
		split = map[string]int{version: 100}
	case percent < 100:
		split[st.Stable] = 100 - percent
	}
	st, err = cm.eng.Traffic(ctx, svc, rollout.TrafficRequest{Split: split}, origin)
	if err != nil {
		out, err := engineFailure(err, command.Usage(command.NameCanary))
		return out.entry, false, err
	}
	return render.Entry{Body: fmt.Sprintf("🚦 %s now gets %d%% of %s's traffic.\n\n%s", version, st.Policy.Split[version], svc, render.Status(st))}, true, nil
}

// prScoped resolves the service and this PR's version of it.
func (cm *commands) prScoped(ctx context.Context, p *prCmd, c command.Command) (rollout.ServiceStatus, rollout.VersionStatus, *outcome, error) {
	st, problem, err := cm.serviceFor(ctx, p, c)
	if err != nil {
		return st, rollout.VersionStatus{}, nil, err
	}
	if problem != "" {
		o := failed(problem + "\n\nUsage: `" + command.Usage(c.Name) + "`")
		return st, rollout.VersionStatus{}, &o, nil
	}
	v, ok := prVersion(st, p, "")
	if !ok {
		o := failed(fmt.Sprintf("This pull request has no version of %s yet; run `/deploy` or `/canary N%%` first.", st.Name))
		return st, v, &o, nil
	}
	return st, v, nil, nil
}

// policyReply reports a policy change (or the engine's refusal).
func policyReply(st rollout.ServiceStatus, err error, usage, done string) (outcome, error) {
	if err != nil {
		return engineFailure(err, usage)
	}
	return outcome{ok: true, entry: render.Entry{Body: done + "\n\n" + render.Status(st)}}, nil
}

func (cm *commands) runRoute(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, v, done, err := cm.prScoped(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	st, err = cm.eng.Route(ctx, st.Name, policy.Rule{Version: v.Name, Match: c.Match}, p.origin())
	return policyReply(st, err, command.Usage(c.Name), fmt.Sprintf("🔀 Requests matching `%s` now go to %s.", formatMatch(c.Match), v.Name))
}

func (cm *commands) runUnroute(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, v, done, err := cm.prScoped(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	st, err = cm.eng.ClearRoutes(ctx, st.Name, v.Name, p.origin())
	return policyReply(st, err, command.Usage(c.Name), fmt.Sprintf("Rules to %s removed.", v.Name))
}

func (cm *commands) runPromote(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, v, done, err := cm.prScoped(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	st, err = cm.eng.Promote(ctx, st.Name, v.Name, false, p.origin())
	return policyReply(st, err, command.Usage(c.Name), fmt.Sprintf("🚀 %s is promoted: it takes 100%% and is the stable version.", v.Name))
}

func (cm *commands) runRollback(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, problem, err := cm.serviceFor(ctx, p, c)
	if err != nil {
		return outcome{}, err
	}
	if problem != "" {
		return failed(problem + "\n\nUsage: `" + command.Usage(c.Name) + "`"), nil
	}
	st, err = cm.eng.Rollback(ctx, st.Name, c.Version, p.origin())
	return policyReply(st, err, command.Usage(c.Name), fmt.Sprintf("⏪ Rolled back: %s takes 100%%.", st.Stable))
}

func (cm *commands) runAbort(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, v, done, err := cm.prScoped(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	st, err = cm.eng.Abort(ctx, st.Name, v.Name, p.origin())
	return policyReply(st, err, command.Usage(c.Name), fmt.Sprintf("🛑 %s left the split and the rules; %s has its share back.", v.Name, st.Stable))
}

// runRedeploy applies the PR's sluice.yaml configuration (env, instances,
// run) in place to the stable version; the stable's source is kept.
func (cm *commands) runRedeploy(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	svc, done, err := cm.sourceService(ctx, p, c)
	if err != nil || done != nil {
		return deref(done), err
	}
	info, err := source.Inspect(p.archive, source.DefaultLimits)
	if err != nil {
		return failed(err.Error()), nil
	}
	m, err := manifest.Parse(manifest.FileName, info.Manifest)
	if err != nil {
		return failed(err.Error()), nil
	}
	ms, _ := m.Service(svc)
	st, err := cm.eng.Status(ctx, svc)
	if err != nil {
		return engineFailure(err, command.Usage(c.Name))
	}
	if st.Stable == "" {
		return failed(fmt.Sprintf("%s has no stable version to redeploy.", svc)), nil
	}
	var cur rollout.VersionStatus
	for _, v := range st.Versions {
		if v.Name == st.Stable {
			cur = v
		}
	}
	var unset []string
	for k := range cur.Config.Env {
		if _, ok := ms.Env[k]; !ok {
			unset = append(unset, k)
		}
	}
	instances, run := ms.Instances, ms.Run
	v, err := cm.eng.Redeploy(ctx, svc, st.Stable, rollout.RedeployRequest{Env: ms.Env, UnsetEnv: unset, Instances: &instances, Run: &run, Origin: p.origin()})
	if err != nil {
		return engineFailure(err, command.Usage(c.Name))
	}
	return outcome{ok: true, entry: render.Entry{Body: fmt.Sprintf("♻️ %s is %s with this pull request's configuration; if the new instances fail it keeps its old ones.", v.Name, v.Status)}}, nil
}

func (cm *commands) runStatus(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, problem, err := cm.serviceFor(ctx, p, c)
	if err != nil {
		return outcome{}, err
	}
	if problem != "" {
		return failed(problem), nil
	}
	return outcome{ok: true, entry: render.Entry{Body: render.Status(st)}}, nil
}

func (cm *commands) runPredict(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	st, problem, err := cm.serviceFor(ctx, p, c)
	if err != nil {
		return outcome{}, err
	}
	if problem != "" {
		return failed(problem + "\n\nUsage: `" + command.Usage(c.Name) + "`"), nil
	}
	pr, err := cm.eng.Predict(ctx, st.Name, c.Query)
	if err != nil {
		return engineFailure(err, command.Usage(c.Name))
	}
	return outcome{ok: true, entry: render.Entry{Body: render.Prediction(st.Name, pr)}}, nil
}

func (cm *commands) runHelp(ctx context.Context, p *prCmd, c command.Command) (outcome, error) {
	return outcome{ok: true, entry: render.Entry{Title: "Help", Body: command.Help()}}, nil
}
