package bot

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/rollout/reason"
	"strconv"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/dashboard"
	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
)

// checkState is what the bot knows of a version it reports on GitHub.
type checkState struct {
	Repo    string `json:"repo"`
	Inst    int64  `json:"installation"`
	SHA     string `json:"sha"`
	Service string `json:"service"`
	PR      int    `json:"pr,omitempty"`
	Built   bool   `json:"built,omitempty"`
}

func checkName(service string) string { return "sluice / " + service }

// GitHub's limits on what sluice writes (REST API documentation of check
// runs, issue comments and deployment statuses).
const (
	// maxAnnotationsPerRequest is how many annotations one check run
	// create or update may carry.
	maxAnnotationsPerRequest = 50
	// maxAnnotationMessage is the limit of an annotation's message (64 KB).
	maxAnnotationMessage = 64 << 10
	// maxStatusDescription is the limit of a deployment status description.
	maxStatusDescription = 140
)

func environment(pr int) string {
	if pr == 0 {
		return "production"
	}
	return fmt.Sprintf("pr-%d", pr)
}

// steps derives the checklist of a deploy from the version's state.
func steps(v rollout.VersionStatus, built bool) []render.Step {
	names := []string{"checkout", "build", "start", "health"}
	out := make([]render.Step, len(names))
	done := 1 // the source was fetched before the version existed
	if built {
		done = 2
	}
	failedAt := -1
	switch v.Status {
	case rollout.StatusNormal, rollout.StatusStopped:
		done = 4
	case rollout.StatusFailed, rollout.StatusDeployFailed:
		switch v.Reason.Code {
		case reason.SourceUnavailable:
			failedAt = 0
		case reason.BuildFailed, reason.BuildTimeout:
			failedAt = 1
		case reason.ProcessExited, reason.PortNotListening, reason.StartFailed:
			failedAt = 2
		case reason.HealthCheckFailed, reason.HealthCheckTimeout:
			failedAt = 3
		default:
			failedAt = done
		}
		done = min(done, failedAt)
	}
	for i, n := range names {
		out[i] = render.Step{Name: n, Done: i < done, Failed: i == failedAt}
	}
	return out
}

// findVersion looks a version up in the engine.
func (b *Bot) findVersion(ctx context.Context, service, name string) (rollout.ServiceStatus, rollout.VersionStatus, bool) {
	st, err := b.eng.Status(ctx, service)
	if err != nil {
		return st, rollout.VersionStatus{}, false
	}
	for _, v := range st.Versions {
		if v.Name == name {
			return st, v, true
		}
	}
	return st, rollout.VersionStatus{}, false
}

// secretsFor lists what must never appear in a version's reports: the
// configured secrets and the version's env values that redact.Env hides.
func (b *Bot) secretsFor(v rollout.VersionStatus) []string {
	return append(append([]string(nil), b.cfg.Secrets...), redact.Env(v.Config.Env)...)
}

// allSecrets is secretsFor over every version sluice runs: what sluice
// says on a PR (a status table, a failure) may quote any of them.
func (b *Bot) allSecrets() []string {
	out := append([]string(nil), b.cfg.Secrets...)
	names, err := b.eng.Services()
	if err != nil {
		return out
	}
	for _, n := range names {
		st, err := b.eng.Status(context.Background(), n)
		if err != nil {
			continue
		}
		for _, v := range st.Versions {
			out = append(out, redact.Env(v.Config.Env)...)
		}
	}
	return out
}

func (b *Bot) detailsURL(service, version string) *string {
	if b.cfg.PublicURL == "" {
		return nil
	}
	u := b.cfg.PublicURL + dashboard.VersionPath(service, version)
	return &u
}

// findCheckRun finds a check run of ours on sha by name and external id:
// every run of that name (filter=all; GitHub lists only the newest per
// name by default), over every page.
func findCheckRun(ctx context.Context, gh *github.Client, owner, name, sha, check, external string) (int64, error) {
	opts := &github.ListCheckRunsOptions{CheckName: &check, Filter: github.String("all"), ListOptions: github.ListOptions{PerPage: 100}}
	for {
		res, resp, err := gh.Checks.ListCheckRunsForRef(ctx, owner, name, sha, opts)
		if err != nil {
			return 0, err
		}
		for _, r := range res.CheckRuns {
			if r.GetExternalID() == external {
				return r.GetID(), nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return 0, nil
		}
		opts.Page = resp.NextPage
	}
}

// findDeployment finds the deployment of version on sha in env, over
// every page.
func findDeployment(ctx context.Context, gh *github.Client, owner, name, sha, env, version string) (int64, error) {
	opts := &github.DeploymentsListOptions{SHA: sha, Environment: env, ListOptions: github.ListOptions{PerPage: 100}}
	for {
		ds, resp, err := gh.Repositories.ListDeployments(ctx, owner, name, opts)
		if err != nil {
			return 0, err
		}
		for _, d := range ds {
			if d.GetDescription() == version {
				return d.GetID(), nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return 0, nil
		}
		opts.Page = resp.NextPage
	}
}

func (b *Bot) knownID(key string) (int64, error) {
	data, err := b.journal.Get(bucketIDs, key)
	if err != nil {
		if isNotFound(err) {
			return 0, nil
		}
		return 0, err
	}
	return strconv.ParseInt(string(data), 10, 64)
}

func idOp(key string, id int64) rollout.Op {
	return rollout.Put(bucketIDs, key, []byte(strconv.FormatInt(id, 10)))
}

// sendCheck creates or updates a version's check run from its state now.
func (b *Bot) sendCheck(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(b.journal, bucketChecks, it.Version, &cs); err != nil || !ok {
		return nil, err
	}
	_, v, ok := b.findVersion(ctx, cs.Service, it.Version)
	if !ok {
		return nil, nil
	}
	title, summary, text := render.CheckOutput(v, steps(v, cs.Built))
	secrets := b.secretsFor(v)
	out := &github.CheckRunOutput{Title: &title, Summary: github.String(redact.String(summary, secrets)), Text: github.String(redact.String(text, secrets))}
	status, conclusion := "in_progress", ""
	switch v.Status {
	case rollout.StatusNormal, rollout.StatusStopped:
		status, conclusion = "completed", "success"
	case rollout.StatusFailed, rollout.StatusDeployFailed:
		status, conclusion = "completed", "failure"
	}
	var actions []*github.CheckRunAction
	if conclusion == "success" && cs.PR != 0 {
		actions = []*github.CheckRunAction{
			{Label: "Promote", Description: "Give this version 100% of traffic", Identifier: "promote"},
			{Label: "Abort", Description: "Remove this version from traffic", Identifier: "abort"},
			{Label: "Rollback", Description: "Back to the previous stable version", Identifier: "rollback"},
		}
	}
	key := "check:" + it.Version
	id, err := b.knownID(key)
	if err != nil {
		return nil, err
	}
	check := checkName(cs.Service)
	if id == 0 {
		if id, err = findCheckRun(ctx, gh, owner, name, cs.SHA, check, it.Version); err != nil {
			return nil, err
		}
	}
	var completedAt *github.Timestamp
	var concl *string
	if conclusion != "" {
		completedAt, concl = &github.Timestamp{Time: b.now()}, &conclusion
	}
	if id == 0 {
		r, _, err := gh.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
			Name: check, HeadSHA: cs.SHA, DetailsURL: b.detailsURL(cs.Service, it.Version), ExternalID: github.String(it.Version),
			Status: &status, Conclusion: concl, CompletedAt: completedAt, Output: out, Actions: actions})
		if err != nil {
			return nil, err
		}
		return []rollout.Op{idOp(key, r.GetID())}, nil
	}
	_, _, err = gh.Checks.UpdateCheckRun(ctx, owner, name, id, github.UpdateCheckRunOptions{
		Name: check, DetailsURL: b.detailsURL(cs.Service, it.Version), ExternalID: github.String(it.Version),
		Status: &status, Conclusion: concl, CompletedAt: completedAt, Output: out, Actions: actions})
	return []rollout.Op{idOp(key, id)}, err
}

// sendStatic creates (once) a finished check run with fixed output.
func (b *Bot) sendStatic(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	s := it.Static
	key := "check:" + s.ExternalID
	if id, err := b.knownID(key); err != nil || id != 0 {
		return nil, err
	}
	id, err := findCheckRun(ctx, gh, owner, name, it.SHA, s.Name, s.ExternalID)
	if err != nil || id != 0 {
		return []rollout.Op{idOp(key, id)}, err
	}
	var anns []*github.CheckRunAnnotation
	for _, p := range s.Annotations {
		line := max(p.Line, 1)
		msg := p.Message
		if p.Field != "" {
			msg = p.Field + ": " + msg
		}
		msg = render.Fit(msg, maxAnnotationMessage)
		anns = append(anns, &github.CheckRunAnnotation{Path: github.String("sluice.yaml"), StartLine: &line, EndLine: &line,
			AnnotationLevel: github.String("failure"), Title: github.String("InvalidManifest"), Message: &msg})
	}
	batch := func() []*github.CheckRunAnnotation {
		n := min(len(anns), maxAnnotationsPerRequest)
		out := anns[:n]
		anns = anns[n:]
		return out
	}
	conclusion := s.Conclusion
	if conclusion == "" {
		conclusion = "failure"
	}
	title, summary := render.Fit(s.Title, render.MaxCheckText), render.Fit(s.Summary, render.MaxCheckText)
	r, _, err := gh.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
		Name: s.Name, HeadSHA: it.SHA, ExternalID: &s.ExternalID, Status: github.String("completed"),
		Conclusion: &conclusion, CompletedAt: &github.Timestamp{Time: b.now()},
		Output: &github.CheckRunOutput{Title: &title, Summary: &summary, Annotations: batch()}})
	if err != nil {
		return nil, err
	}
	// GitHub takes 50 annotations per request and adds those of each
	// update to the run's.
	for len(anns) > 0 {
		if _, _, err := gh.Checks.UpdateCheckRun(ctx, owner, name, r.GetID(), github.UpdateCheckRunOptions{
			Name: s.Name, Output: &github.CheckRunOutput{Title: &title, Summary: &summary, Annotations: batch()}}); err != nil {
			return []rollout.Op{idOp(key, r.GetID())}, err
		}
	}
	return []rollout.Op{idOp(key, r.GetID())}, nil
}

// sendDeployment creates a version's GitHub deployment (once) and adds a
// status when the version's state changed since the last one sent.
func (b *Bot) sendDeployment(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(b.journal, bucketChecks, it.Version, &cs); err != nil || !ok {
		return nil, err
	}
	st, v, ok := b.findVersion(ctx, cs.Service, it.Version)
	if !ok {
		return nil, nil
	}
	env := environment(cs.PR)
	key := "deployment:" + it.Version
	id, err := b.knownID(key)
	if err != nil {
		return nil, err
	}
	var ops []rollout.Op
	if id == 0 {
		if id, err = findDeployment(ctx, gh, owner, name, cs.SHA, env, it.Version); err != nil {
			return nil, err
		}
	}
	if id == 0 {
		d, _, err := gh.Repositories.CreateDeployment(ctx, owner, name, &github.DeploymentRequest{
			Ref: &cs.SHA, Environment: &env, Description: &it.Version, AutoMerge: github.Bool(false),
			RequiredContexts: &[]string{}, TransientEnvironment: github.Bool(cs.PR != 0), ProductionEnvironment: github.Bool(cs.PR == 0)})
		if err != nil {
			return nil, err
		}
		id = d.GetID()
	}
	ops = append(ops, idOp(key, id))
	state := "in_progress"
	switch v.Status {
	case rollout.StatusNormal:
		state = "success"
	case rollout.StatusFailed, rollout.StatusDeployFailed:
		state = "failure"
	case rollout.StatusStopped:
		state = "inactive"
	}
	sentKey := "deployment-state:" + it.Version
	if last, err := b.journal.Get(bucketIDs, sentKey); err == nil && string(last) == state {
		return ops, nil
	}
	url := v.URL
	if cs.PR == 0 {
		url = st.URL
	}
	desc := string(v.Status)
	if v.Reason.Code != "" {
		desc += ": " + string(v.Reason.Code)
	}
	desc = clip(desc, maxStatusDescription)
	_, _, err = gh.Repositories.CreateDeploymentStatus(ctx, owner, name, id, &github.DeploymentStatusRequest{
		State: &state, EnvironmentURL: &url, Description: &desc, Environment: &env, LogURL: b.detailsURL(cs.Service, it.Version)})
	if err != nil {
		return ops, err
	}
	return append(ops, rollout.Put(bucketIDs, sentKey, []byte(state))), nil
}

// watchEvents turns the engine's history into reports: check runs and
// deployments for versions created from GitHub, follow-ups of commands,
// and the outcome of merges on their pull requests. The cursor moves in
// the same transaction as the reports it caused. Each event is a unit of
// work (package contain): one whose handling panics is skipped, with its
// follow-up, and the cursor moves past it.
func (b *Bot) watchEvents(ctx context.Context) error {
	for ctx.Err() == nil {
		var cursor uint64
		if data, err := b.journal.Get(bucketCursor, "events"); err == nil {
			cursor, _ = strconv.ParseUint(string(data), 10, 64)
		} else if !isNotFound(err) {
			return err
		}
		evs, err := b.eng.Events("", cursor, 100)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, e := range evs {
			var ops []rollout.Op
			err := contain.Do(b.log.With("service", e.Service, "version", e.Version), "engine event", func() (err error) {
				ops, err = b.onEngineEvent(ctx, e)
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
			if err := b.journal.Apply(ops...); err != nil {
				return err
			}
			b.poke()
		}
	}
	return ctx.Err()
}

func isFinal(s rollout.Status) bool {
	return s == rollout.StatusNormal || s == rollout.StatusFailed || s == rollout.StatusDeployFailed
}

func (b *Bot) onEngineEvent(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	if e.Kind == rollout.EventVersionStatus && e.Version != "" && (e.Op == rollout.OpStop || e.Op == rollout.OpRetire || e.Op == rollout.OpStart) {
		return b.deploymentChanged(e)
	}
	if e.Origin.Repo == "" || e.Version == "" || (b.cfg.Repo != "" && e.Origin.Repo != b.cfg.Repo) {
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
		if ok, err := getJSON(b.journal, bucketChecks, e.Version, &cs); err != nil || !ok {
			return nil, err
		}
		cs.Built = true
		return []rollout.Op{rollout.Put(bucketChecks, e.Version, mustJSON(cs)),
			rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindCheck, Repo: cs.Repo, Inst: cs.Inst, Version: e.Version, Service: e.Service}))}, nil
	case e.Kind == rollout.EventVersionStatus && (e.Op == rollout.OpDeploy || e.Op == rollout.OpRecover) && isFinal(e.Status):
		ops := report()
		more, err := b.runFollowup(ctx, e)
		if err != nil {
			return nil, err
		}
		ops = append(ops, more...)
		if e.Origin.Via == "merge" {
			more, err := b.tellMergedPR(e)
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
		return b.addPREntries(e.Origin.Repo, e.Origin.Installation, e.Origin.PR,
			render.Entry{Time: b.now(), Title: "Redeploy of " + e.Version, Body: body, OK: e.Reason == nil})
	}
	return nil, nil
}

// deploymentChanged queues the deployment status of a version GitHub
// knows that was stopped (closed PR, retired: `inactive`) or started again
// (rollback: `success`), whoever stopped or started it.
func (b *Bot) deploymentChanged(e rollout.Event) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(b.journal, bucketChecks, e.Version, &cs); err != nil || !ok {
		return nil, err
	}
	if b.cfg.Repo != "" && cs.Repo != b.cfg.Repo {
		return nil, nil
	}
	return []rollout.Op{rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindDeployment, Repo: cs.Repo, Inst: cs.Inst, Version: e.Version, Service: e.Service}))}, nil
}

// runFollowup finishes what a command started once its version is ready.
func (b *Bot) runFollowup(ctx context.Context, e rollout.Event) ([]rollout.Op, error) {
	var fu followup
	if ok, err := getJSON(b.journal, bucketFollowups, e.Version, &fu); err != nil || !ok {
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
		entry, ok, err = b.applyCanary(ctx, fu.Service, fu.Version, fu.Percent, origin)
		if err != nil {
			return nil, err
		}
		entry.Title = fmt.Sprintf("/canary %d%% → %s", fu.Percent, fu.Version)
	default:
		_, v, _ := b.findVersion(ctx, fu.Service, fu.Version)
		entry = render.Entry{Title: fu.Version + " is ready", Body: fmt.Sprintf("✅ %s is normal at %s (0%% of traffic until you ask).", fu.Version, v.URL)}
	}
	entry.Time, entry.OK = b.now(), ok
	more, err := b.addEntries(p, entry)
	if err != nil {
		return nil, err
	}
	ops = append(ops, more...)
	if ok {
		ops = append(ops, b.reaction(p, "rocket"))
	} else {
		ops = append(ops, b.reaction(p, "confused"))
	}
	return ops, nil
}

// tellMergedPR reports a merge deploy's outcome on the pull request that
// was merged, when sluice saw it merged.
func (b *Bot) tellMergedPR(e rollout.Event) ([]rollout.Op, error) {
	data, err := b.journal.Get(bucketMerges, e.Origin.Repo+"@"+e.Origin.Ref)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pr, _ := strconv.Atoi(string(data))
	body := fmt.Sprintf("✅ Merged as %s: %s is %s.", shortSHA(e.Origin.Ref), e.Version, e.Status)
	if e.Reason != nil {
		body = render.Failure(e.Version, *e.Reason)
	}
	return b.addPREntries(e.Origin.Repo, e.Origin.Installation, pr,
		render.Entry{Time: b.now(), Title: "Merge deploy of " + e.Service, Body: body, OK: e.Reason == nil})
}

// clip cuts s to at most n characters, ending with "…" when cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
