package bot

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/dashboard"
	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/reason"
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
		if v.Reason.Code == reason.DataPlaneFailed { // every step passed; the traffic change did not
			done = 4
			break
		}
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
		done = failedAt // every step before the one that failed passed
	}
	for i, n := range names {
		out[i] = render.Step{Name: n, Done: i < done, Failed: i == failedAt}
	}
	return out
}

// findVersion looks a version up in the engine.
func (c *core) findVersion(ctx context.Context, service, name string) (rollout.ServiceStatus, rollout.VersionStatus, bool) {
	st, err := c.eng.Status(ctx, service)
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

func (rp *reporter) detailsURL(service, version string) *string {
	if rp.cfg.PublicURL == "" {
		return nil
	}
	u := rp.cfg.PublicURL + dashboard.VersionPath(service, version)
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

func (rp *reporter) knownID(key string) (int64, error) {
	data, err := rp.journal.Get(bucketIDs, key)
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
func (rp *reporter) sendCheck(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(rp.journal, bucketChecks, it.Version, &cs); err != nil || !ok {
		return nil, err
	}
	_, v, ok := rp.findVersion(ctx, cs.Service, it.Version)
	if !ok {
		return nil, nil
	}
	title, summary, text := render.CheckOutput(v, steps(v, cs.Built))
	secrets := rp.secretsFor(v)
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
	id, err := rp.knownID(key)
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
		completedAt, concl = &github.Timestamp{Time: rp.now()}, &conclusion
	}
	if id == 0 {
		r, _, err := gh.Checks.CreateCheckRun(ctx, owner, name, github.CreateCheckRunOptions{
			Name: check, HeadSHA: cs.SHA, DetailsURL: rp.detailsURL(cs.Service, it.Version), ExternalID: github.String(it.Version),
			Status: &status, Conclusion: concl, CompletedAt: completedAt, Output: out, Actions: actions})
		if err != nil {
			return nil, err
		}
		return []rollout.Op{idOp(key, r.GetID())}, nil
	}
	_, _, err = gh.Checks.UpdateCheckRun(ctx, owner, name, id, github.UpdateCheckRunOptions{
		Name: check, DetailsURL: rp.detailsURL(cs.Service, it.Version), ExternalID: github.String(it.Version),
		Status: &status, Conclusion: concl, CompletedAt: completedAt, Output: out, Actions: actions})
	return []rollout.Op{idOp(key, id)}, err
}

// sendStatic creates (once) a finished check run with fixed output.
func (rp *reporter) sendStatic(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	s := it.Static
	key := "check:" + s.ExternalID
	if id, err := rp.knownID(key); err != nil || id != 0 {
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
		Conclusion: &conclusion, CompletedAt: &github.Timestamp{Time: rp.now()},
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
func (rp *reporter) sendDeployment(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	var cs checkState
	if ok, err := getJSON(rp.journal, bucketChecks, it.Version, &cs); err != nil || !ok {
		return nil, err
	}
	st, v, ok := rp.findVersion(ctx, cs.Service, it.Version)
	if !ok {
		return nil, nil
	}
	env := environment(cs.PR)
	key := "deployment:" + it.Version
	id, err := rp.knownID(key)
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
	if last, err := rp.journal.Get(bucketIDs, sentKey); err == nil && string(last) == state {
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
		State: &state, EnvironmentURL: &url, Description: &desc, Environment: &env, LogURL: rp.detailsURL(cs.Service, it.Version)})
	if err != nil {
		return ops, err
	}
	return append(ops, rollout.Put(bucketIDs, sentKey, []byte(state))), nil
}

// clip cuts s to at most n characters, ending with "…" when cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
