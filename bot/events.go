package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/source"
)

func isNotFound(err error) bool { return errors.Is(err, rollout.ErrNotFound) }

// sentBy is who sent an event, and through which installation of the App.
type sentBy struct {
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

// pushEvent is the part of a push payload the bot reads.
type pushEvent struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	HeadCommit struct {
		URL string `json:"url"`
	} `json:"head_commit"`
	Repository struct {
		FullName      string `json:"full_name"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	sentBy
}

// onPush deploys each service of the default branch's new head with its
// on_merge strategy. A service the engine refuses to change (another
// repository's, say) is not deployed, and a failed check run
// "sluice / <service>" on the commit says why: the push has no pull
// request to reply on.
func (cm *commands) onPush(ctx context.Context, d delivery) ([]rollout.Op, error) {
	var p pushEvent
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, permanent(fmt.Errorf("decode push: %w", err))
	}
	if p.Deleted || p.Ref != "refs/heads/"+p.Repository.DefaultBranch || p.After == "" {
		return nil, nil
	}
	log := cm.log.With("delivery", d.ID, "repo", p.Repository.FullName)
	owner, name := splitRepo(p.Repository.FullName)
	gh := cm.gh.Installation(p.Installation.ID)
	archive, err := fetchTarball(ctx, gh, owner, name, p.After)
	if err != nil {
		return nil, err
	}
	repo := p.Repository.FullName
	if _, merr := manifestServices(archive); merr != nil {
		log.Info("merge has an invalid sluice.yaml", "sha", p.After)
		return cm.rep.manifestCheck(repo, p.Installation.ID, p.After, brokenServices("", archive), merr), nil
	}
	info, _ := source.Inspect(archive, source.DefaultLimits)
	m, _ := manifest.Parse(manifest.FileName, info.Manifest)
	mg := merge{repo: repo, inst: p.Installation.ID, sha: p.After, archive: archive, log: log,
		origin: rollout.Origin{Via: rollout.ViaMerge, Actor: p.Sender.Login, URL: p.HeadCommit.URL, Ref: p.After, Repo: repo, Installation: p.Installation.ID,
			Principal: rollout.ServicePrincipal(repo)}}
	mg.digest, _ = source.Digest(archive, source.DefaultLimits)
	var ops []rollout.Op
	for _, s := range m.Services {
		more, err := cm.deployMerged(ctx, mg, s)
		if err != nil {
			return nil, err
		}
		ops = append(ops, more...)
	}
	return ops, nil
}

// merge is one push to a default branch being deployed.
type merge struct {
	repo, sha, digest string
	inst              int64
	archive           []byte
	origin            rollout.Origin
	log               *slog.Logger
}

// deployMerged deploys one service of a merge with its on_merge strategy,
// or reports on the commit (a check run) why it did not: the stable
// version already serves this tree, or the engine refused.
func (cm *commands) deployMerged(ctx context.Context, mg merge, s manifest.Service) ([]rollout.Op, error) {
	if s.OnMerge == manifest.OnMergeNone {
		return nil, nil
	}
	if st, err := cm.eng.Status(ctx, s.Name); err == nil && st.Repo == mg.repo {
		if v, ok := stableVersion(st); ok && v.Digest == mg.digest && v.Status == rollout.StatusNormal {
			// The merge's tree is what the stable version already
			// serves (a promoted PR): nothing to build.
			mg.log.Info("merge already served by the stable version", "service", s.Name, "version", v.Name)
			return []rollout.Op{staticCheck(mg.repo, mg.inst, mg.sha, static{Name: checkName(s.Name),
				ExternalID: "unchanged:" + s.Name + ":" + mg.sha, Conclusion: "success",
				Title:   v.Name + " already serves this tree",
				Summary: "The merged tree is identical to " + v.Name + ", the stable version of " + s.Name + "; nothing was rebuilt."})}, nil
		}
	}
	var err error
	if s.OnMerge == manifest.OnMergeRedeploy {
		err = cm.mergeRedeploy(ctx, s.Name, mg.archive, mg.origin)
	} else {
		strategy := rollout.StrategyFull
		if s.OnMerge == manifest.OnMergeCanary {
			strategy = rollout.StrategyCanary
		}
		// A canary merge follows the service's canary plan, if any.
		_, err = cm.eng.Deploy(ctx, rollout.DeployRequest{Service: s.Name, Archive: mg.archive, Strategy: strategy,
			AutoCanary: true, Origin: mg.origin})
	}
	if re, ok := rollout.AsError(err); ok {
		mg.log.Warn("merge deploy refused", "service", s.Name, "err", re.Message)
		if re.Code == rollout.ErrCodeManifest {
			return cm.rep.manifestCheck(mg.repo, mg.inst, mg.sha, []string{s.Name}, re), nil
		}
		// Nothing was built; the failed check says why (another
		// repository's service, a version that is not normal …).
		return []rollout.Op{staticCheck(mg.repo, mg.inst, mg.sha, static{Name: checkName(s.Name),
			ExternalID: "refused:" + s.Name + ":" + mg.sha, Title: "Not deployed: " + re.Code,
			Summary: redact.String(re.Message, cm.cfg.Secrets)})}, nil
	}
	if err != nil {
		return nil, err
	}
	mg.log.Info("merge deploy started", "service", s.Name, "sha", mg.sha, "on_merge", s.OnMerge)
	return nil, nil
}

func stableVersion(st rollout.ServiceStatus) (rollout.VersionStatus, bool) {
	for _, v := range st.Versions {
		if v.Name == st.Stable {
			return v, true
		}
	}
	return rollout.VersionStatus{}, false
}

// mergeRedeploy redeploys the stable version in place with the new source.
func (cm *commands) mergeRedeploy(ctx context.Context, service string, archive []byte, origin rollout.Origin) error {
	st, err := cm.eng.Status(ctx, service)
	if err != nil || st.Stable == "" {
		// Nothing to redeploy yet: the first merge deploys.
		_, err = cm.eng.Deploy(ctx, rollout.DeployRequest{Service: service, Archive: archive, Origin: origin})
		return err
	}
	_, err = cm.eng.Redeploy(ctx, service, st.Stable, rollout.RedeployRequest{Archive: archive, Origin: origin})
	return err
}

// onPullRequest remembers merges (to report their deploy on the PR) and,
// when a PR closes, stops its versions that hold no traffic.
func (cm *commands) onPullRequest(ctx context.Context, d delivery) ([]rollout.Op, error) {
	var p struct {
		Action      string `json:"action"`
		Number      int    `json:"number"`
		PullRequest struct {
			Merged         bool   `json:"merged"`
			MergeCommitSHA string `json:"merge_commit_sha"`
		} `json:"pull_request"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
		Sender struct {
			Login string `json:"login"`
		} `json:"sender"`
	}
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, permanent(fmt.Errorf("decode pull_request: %w", err))
	}
	ops := forkHeadOps(d)
	if p.Action != "closed" {
		return ops, nil
	}
	if p.PullRequest.Merged && p.PullRequest.MergeCommitSHA != "" {
		ops = append(ops, rollout.Put(bucketMerges, mergeKey(p.Repository.FullName, p.PullRequest.MergeCommitSHA), []byte(strconv.Itoa(p.Number))))
	}
	names, err := cm.repoServices(ctx, p.Repository.FullName)
	if err != nil {
		return nil, err
	}
	origin := rollout.Origin{Via: rollout.ViaPullRequest, Actor: p.Sender.Login, PR: p.Number, Repo: p.Repository.FullName,
		Principal: rollout.ServicePrincipal(p.Repository.FullName)}
	for _, n := range names {
		st, err := cm.eng.Status(ctx, n)
		if err != nil {
			continue
		}
		for _, v := range st.Versions {
			if v.CreatedBy.PR != p.Number || v.CreatedBy.Repo != p.Repository.FullName || v.Traffic > 0 || len(v.Rules) > 0 ||
				(v.Status != rollout.StatusNormal && v.Status != rollout.StatusDeployFailed) || v.Name == st.Stable {
				continue
			}
			if err := cm.eng.StopVersion(ctx, n, v.Name, origin); err != nil {
				cm.log.Warn("stop version of closed PR", "version", v.Name, "err", err)
			}
		}
	}
	return ops, nil
}

// checkRunEvent is the part of a check_run payload the bot reads.
type checkRunEvent struct {
	Action   string `json:"action"`
	CheckRun struct {
		ExternalID string `json:"external_id"`
		HeadSHA    string `json:"head_sha"`
		Name       string `json:"name"`
	} `json:"check_run"`
	RequestedAction struct {
		Identifier string `json:"identifier"`
	} `json:"requested_action"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	sentBy
}

// onCheckRun handles "Re-run" (deploy that commit again) and the check
// run's buttons (promote, abort, rollback) of a check run of ours, for a
// sender who may write to the repository; the outcome goes on the PR.
func (cm *commands) onCheckRun(ctx context.Context, d delivery) ([]rollout.Op, error) {
	var p checkRunEvent
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, permanent(fmt.Errorf("decode check_run: %w", err))
	}
	if p.Action != "rerequested" && p.Action != "requested_action" {
		return nil, nil
	}
	var cs checkState
	if ok, err := getJSON(cm.journal, bucketChecks, p.CheckRun.ExternalID, &cs); err != nil || !ok || cs.Repo != p.Repository.FullName {
		return nil, err // not one of ours
	}
	_, v, ok := cm.findVersion(ctx, cs.Service, p.CheckRun.ExternalID)
	if !ok {
		return nil, nil
	}
	gh := cm.gh.Installation(p.Installation.ID)
	if ops, refused, err := cm.checkRunRefused(ctx, gh, p, cs); err != nil || refused {
		return ops, err
	}
	origin := rollout.Origin{Via: rollout.ViaCheckRun, Actor: p.Sender.Login, Ref: cs.SHA, PR: cs.PR, Repo: cs.Repo, Installation: p.Installation.ID,
		Principal: rollout.ServicePrincipal(cs.Repo)}
	var (
		body string
		ops  []rollout.Op
		err  error
	)
	if p.Action == "rerequested" {
		body, ops, err = cm.rerunCheck(ctx, gh, p, cs, v, origin)
	} else {
		body, err = cm.checkRunButton(ctx, p, cs, v, origin)
	}
	if err != nil || body == "" || cs.PR == 0 {
		return ops, err
	}
	more, err := cm.rep.addPREntries(ctx, cs.Repo, p.Installation.ID, cs.PR, render.Entry{Time: cm.now(), Title: "Check run: " + p.Action, Body: body, OK: true})
	return append(ops, more...), err
}

// checkRunRefused reports whether the sender of a check run event may not
// write to the repository, with the refusal for its PR.
func (cm *commands) checkRunRefused(ctx context.Context, gh *github.Client, p checkRunEvent, cs checkState) ([]rollout.Op, bool, error) {
	owner, name := splitRepo(cs.Repo)
	perm, _, err := gh.Repositories.GetPermissionLevel(ctx, owner, name, p.Sender.Login)
	if err != nil {
		return nil, false, fmt.Errorf("read permission of %s: %w", p.Sender.Login, err)
	}
	if writePermissions[perm.GetPermission()] {
		return nil, false, nil
	}
	cm.log.Info("check run action refused", "actor", p.Sender.Login, "permission", perm.GetPermission())
	if cs.PR == 0 {
		return nil, true, nil
	}
	ops, err := cm.rep.addPREntries(ctx, cs.Repo, p.Installation.ID, cs.PR, render.Entry{Time: cm.now(), Title: "Refused", Body: render.Refusal(p.Sender.Login, perm.GetPermission())})
	return ops, true, err
}

// rerunCheck deploys a check run's commit again ("Re-run"), unless a
// fork's head may not be built, and says what happened.
func (cm *commands) rerunCheck(ctx context.Context, gh *github.Client, p checkRunEvent, cs checkState, v rollout.VersionStatus, origin rollout.Origin) (string, []rollout.Op, error) {
	why, refusal, err := cm.rerunForkRefusal(ctx, gh, p.Installation.ID, cs)
	if err != nil {
		return "", nil, err
	}
	if why != "" {
		return "Re-run refused: " + why, refusal, nil
	}
	owner, name := splitRepo(cs.Repo)
	archive, err := fetchTarball(ctx, gh, owner, name, cs.SHA)
	if err != nil {
		return "", nil, err
	}
	nv, err := cm.eng.Deploy(ctx, rollout.DeployRequest{Service: cs.Service, Archive: archive, Strategy: v.Strategy, Origin: origin})
	if re, ok := rollout.AsError(err); ok {
		return "Re-run refused: " + re.Message, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("⏳ Re-run: deploying %s again as %s.", shortSHA(cs.SHA), nv.Name), nil, nil
}

// checkRunButton runs a check run's button (promote, abort, rollback) and
// says what happened; "" for a button sluice does not have.
func (cm *commands) checkRunButton(ctx context.Context, p checkRunEvent, cs checkState, v rollout.VersionStatus, origin rollout.Origin) (string, error) {
	var (
		st  rollout.ServiceStatus
		err error
	)
	id := p.RequestedAction.Identifier
	switch id {
	case "promote":
		st, err = cm.eng.Promote(ctx, cs.Service, v.Name, false, origin)
	case "abort":
		st, err = cm.eng.Abort(ctx, cs.Service, v.Name, origin)
	case "rollback":
		st, err = cm.eng.Rollback(ctx, cs.Service, "", origin)
	default:
		return "", nil
	}
	if re, ok := rollout.AsError(err); ok {
		return id + " refused: " + re.Message, nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s of %s done (from the check run, by @%s).\n\n%s", id, v.Name, p.Sender.Login, render.Status(st)), nil
}
