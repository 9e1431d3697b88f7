package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/source"
)

// commentEvent is the part of an issue_comment payload the bot reads.
type commentEvent struct {
	Action string `json:"action"`
	Issue  struct {
		Number      int             `json:"number"`
		PullRequest json.RawMessage `json:"pull_request"`
	} `json:"issue"`
	Comment struct {
		ID        int64     `json:"id"`
		Body      string    `json:"body"`
		HTMLURL   string    `json:"html_url"`
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
		User      struct {
			Login string `json:"login"`
			Type  string `json:"type"`
		} `json:"user"`
	} `json:"comment"`
	Repository struct {
		FullName      string `json:"full_name"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

// prCmd is the context commands of one comment run in.
type prCmd struct {
	repo, owner, name string
	inst              int64
	pr                int
	commentID         int64
	actor, url        string
	gh                *github.Client
	head              string // PR head SHA, fetched when first needed
	archive           []byte // the head's tarball, fetched when first needed
	// fork names the head repository when it is not the base repository
	// ("a deleted fork" when GitHub no longer has it); set with head.
	fork string
	// baseBranch is the base repository's default branch; set with head.
	baseBranch string
	// written is when the comment was last written (created or edited).
	written time.Time
}

func (p *prCmd) origin() rollout.Origin {
	return rollout.Origin{Via: rollout.ViaComment, Actor: p.actor, URL: p.url, Ref: p.head, PR: p.pr, Repo: p.repo, Installation: p.inst,
		Principal: rollout.ServicePrincipal(p.repo)}
}

// outcome is what one command produced: an entry for the sticky comment,
// whether it succeeded, and whether its result is still to come (a deploy
// that is building; a follow-up reports it).
type outcome struct {
	entry   render.Entry
	ok      bool
	pending bool
	ops     []rollout.Op
}

type runner func(ctx context.Context, p *prCmd, c command.Command) (outcome, error)

// runners maps a command to its runner (register, don't switch).
func (cm *commands) runners() map[command.Name]runner {
	return map[command.Name]runner{
		command.NameDeploy:   cm.runDeploy,
		command.NameCanary:   cm.runCanary,
		command.NameRoute:    cm.runRoute,
		command.NameUnroute:  cm.runUnroute,
		command.NamePromote:  cm.runPromote,
		command.NameRollback: cm.runRollback,
		command.NameAbort:    cm.runAbort,
		command.NameRedeploy: cm.runRedeploy,
		command.NameStatus:   cm.runStatus,
		command.NamePredict:  cm.runPredict,
		command.NameHelp:     cm.runHelp,
	}
}

var writePermissions = map[string]bool{"admin": true, "maintain": true, "write": true}

func (cm *commands) onIssueComment(ctx context.Context, d delivery) ([]rollout.Op, error) {
	var ev commentEvent
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		return nil, permanent(fmt.Errorf("decode issue_comment: %w", err))
	}
	// Only new comments on pull requests, by people.
	if ev.Action != "created" || len(ev.Issue.PullRequest) == 0 || string(ev.Issue.PullRequest) == "null" ||
		ev.Comment.User.Type == "Bot" || strings.HasSuffix(ev.Comment.User.Login, "[bot]") {
		return nil, nil
	}
	results := command.Parse(ev.Comment.Body)
	if len(results) == 0 {
		return nil, nil
	}
	owner, name := splitRepo(ev.Repository.FullName)
	p := &prCmd{repo: ev.Repository.FullName, owner: owner, name: name, inst: ev.Installation.ID, pr: ev.Issue.Number,
		commentID: ev.Comment.ID, actor: ev.Comment.User.Login, url: ev.Comment.HTMLURL, gh: cm.gh.Installation(ev.Installation.ID),
		written: latest(ev.Comment.CreatedAt, ev.Comment.UpdatedAt)}
	log := cm.log.With("delivery", d.ID, "repo", p.repo, "pr", p.pr)

	// 👀 at once, before anything slow, and once: a retried delivery
	// does not react again.
	if _, err := cm.journal.PutIfAbsent(bucketReacted, reactedKey(p.repo, p.commentID),
		[]byte(cm.now().UTC().Format(time.RFC3339)), reaction(p, "eyes")); err != nil {
		return nil, err
	}
	cm.poke()

	perm, _, err := p.gh.Repositories.GetPermissionLevel(ctx, owner, name, p.actor)
	if err != nil {
		return nil, fmt.Errorf("read permission of %s: %w", p.actor, err)
	}
	// GitHub reports maintain as "write" in this field.
	if level := perm.GetPermission(); !writePermissions[level] {
		log.Info("command refused", "actor", p.actor, "permission", level)
		entry := render.Entry{Time: cm.now(), Title: "Refused", Body: render.Refusal(p.actor, level)}
		ops, err := cm.rep.addEntries(ctx, p, entry)
		return append(ops, reaction(p, "confused")), err
	}
	return cm.runCommands(ctx, log, p, results)
}

// runCommands runs a comment's commands in order and queues their
// entries on the sticky comment and the reaction that sums them up: 😕
// when one failed, 🚀 when all are done (none left for a follow-up).
func (cm *commands) runCommands(ctx context.Context, log *slog.Logger, p *prCmd, results []command.Result) ([]rollout.Op, error) {
	var (
		entries []render.Entry
		ops     []rollout.Op
		allOK   = true
		pending bool
	)
	run := cm.runners()
	for _, r := range results {
		if r.Reply != nil {
			entries = append(entries, render.Entry{Time: cm.now(), Title: "`" + r.Raw + "`", Body: render.Problem(r)})
			allOK = false
			continue
		}
		out, err := run[r.Command.Name](ctx, p, *r.Command)
		if err != nil {
			return nil, err // GitHub failed: retry the delivery later
		}
		if out.entry.Title == "" {
			out.entry.Title = "`" + r.Raw + "`"
		}
		out.entry.Time, out.entry.OK = cm.now(), out.ok
		entries = append(entries, out.entry)
		ops = append(ops, out.ops...)
		allOK = allOK && out.ok
		pending = pending || out.pending
		log.Info("command ran", "command", string(r.Command.Name), "ok", out.ok)
	}
	more, err := cm.rep.addEntries(ctx, p, entries...)
	if err != nil {
		return nil, err
	}
	ops = append(ops, more...)
	switch {
	case !allOK:
		ops = append(ops, reaction(p, "confused"))
	case !pending:
		ops = append(ops, reaction(p, "rocket"))
	}
	return ops, nil
}

// headSHA returns the PR's head commit, as it is now.
func (cm *commands) headSHA(ctx context.Context, p *prCmd) (string, error) {
	if p.head != "" {
		return p.head, nil
	}
	pr, _, err := p.gh.PullRequests.Get(ctx, p.owner, p.name, p.pr)
	if err != nil {
		return "", fmt.Errorf("read pull request %d: %w", p.pr, err)
	}
	p.head = pr.GetHead().GetSHA()
	p.baseBranch = pr.GetBase().GetRepo().GetDefaultBranch()
	switch head := pr.GetHead().GetRepo(); {
	case head == nil:
		p.fork = "a deleted fork"
	case head.GetFullName() != pr.GetBase().GetRepo().GetFullName():
		p.fork = head.GetFullName()
	}
	return p.head, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// headArchive returns the tarball of the PR head.
func (cm *commands) headArchive(ctx context.Context, p *prCmd) ([]byte, error) {
	if p.archive != nil {
		return p.archive, nil
	}
	sha, err := cm.headSHA(ctx, p)
	if err != nil {
		return nil, err
	}
	a, err := fetchTarball(ctx, p.gh, p.owner, p.name, sha)
	if err != nil {
		return nil, err
	}
	p.archive = a
	return a, nil
}

// fetchTarball downloads a commit's source archive, following GitHub's
// redirect.
func fetchTarball(ctx context.Context, gh *github.Client, owner, name, ref string) ([]byte, error) {
	u, _, err := gh.Repositories.GetArchiveLink(ctx, owner, name, github.Tarball, &github.RepositoryContentGetOptions{Ref: ref}, 1)
	if err != nil {
		return nil, fmt.Errorf("find tarball of %s: %w", ref, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("download tarball: %w", err)
	}
	resp, err := gh.Client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("download tarball of %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// As a *github.ErrorResponse, so a 404 (a deleted repository or
		// commit) is final and a 502 is retried, like any GitHub answer.
		if err := github.CheckResponse(resp); err != nil {
			return nil, fmt.Errorf("download tarball of %s: %w", ref, err)
		}
		return nil, fmt.Errorf("download tarball of %s: %s", ref, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTarball+1))
	if err != nil {
		return nil, fmt.Errorf("download tarball of %s: %w", ref, err)
	}
	if len(data) > maxTarball {
		return nil, permanent(fmt.Errorf("tarball of %s is larger than %d bytes", ref, maxTarball))
	}
	return data, nil
}

// manifestServices lists the services an archive's sluice.yaml declares,
// or returns the engine error that explains why it cannot be read.
func manifestServices(archive []byte) ([]string, *rollout.Error) {
	info, err := source.Inspect(archive, source.DefaultLimits)
	if err != nil {
		return nil, &rollout.Error{Kind: rollout.KindInvalid, Code: rollout.ErrCodeInvalidSource, Message: err.Error()}
	}
	m, err := manifest.Parse(manifest.FileName, info.Manifest)
	if err != nil {
		e := &rollout.Error{Kind: rollout.KindInvalid, Code: rollout.ErrCodeManifest, Message: err.Error()}
		var me *manifest.Error
		if errors.As(err, &me) {
			for _, pr := range me.Problems {
				e.Problems = append(e.Problems, rollout.Problem{File: pr.File, Line: pr.Line, Column: pr.Column, Field: pr.Field, Message: pr.Message})
			}
		}
		return nil, e
	}
	var names []string
	for _, s := range m.Services {
		names = append(names, s.Name)
	}
	return names, nil
}

// chooseService picks the service a command means: the one it names, or
// the only candidate.
func chooseService(named string, candidates []string, what string) (string, string) {
	if named != "" {
		return named, ""
	}
	switch len(candidates) {
	case 0:
		return "", "No service of this repository is " + what + " yet."
	case 1:
		return candidates[0], ""
	}
	sort.Strings(candidates)
	return "", fmt.Sprintf("This repository has several services (%s); name one, e.g. `%s`.", strings.Join(candidates, ", "), candidates[0])
}

// repoServices lists the engine's services that belong to repo.
func (cm *commands) repoServices(ctx context.Context, repo string) ([]string, error) {
	names, err := cm.eng.Services(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		st, err := cm.eng.Status(ctx, n)
		if err == nil && st.Repo == repo {
			out = append(out, n)
		}
	}
	return out, nil
}

// serviceFor resolves the service of a command that acts on what is
// deployed (not on the PR's source).
func (cm *commands) serviceFor(ctx context.Context, p *prCmd, c command.Command) (rollout.ServiceStatus, string, error) {
	names, err := cm.repoServices(ctx, p.repo)
	if err != nil {
		return rollout.ServiceStatus{}, "", err
	}
	svc, problem := chooseService(c.Service, names, "deployed")
	if problem != "" {
		return rollout.ServiceStatus{}, problem, nil
	}
	st, err := cm.eng.Status(ctx, svc)
	if err != nil {
		if re, ok := rollout.AsError(err); ok {
			return rollout.ServiceStatus{}, re.Message, nil
		}
		return rollout.ServiceStatus{}, "", err
	}
	if st.Repo != "" && st.Repo != p.repo {
		return rollout.ServiceStatus{}, fmt.Sprintf("Service %s belongs to %s, not to this repository.", svc, st.Repo), nil
	}
	return st, "", nil
}

// prVersion is the newest version of st created from this PR (at sha,
// when sha is not "").
func prVersion(st rollout.ServiceStatus, p *prCmd, sha string) (rollout.VersionStatus, bool) {
	for i := len(st.Versions) - 1; i >= 0; i-- {
		v := st.Versions[i]
		if v.CreatedBy.Repo == p.repo && v.CreatedBy.PR == p.pr && (sha == "" || v.CreatedBy.Ref == sha) {
			return v, true
		}
	}
	return rollout.VersionStatus{}, false
}

func failed(msg string) outcome {
	return outcome{entry: render.Entry{Body: msg}}
}

// engineFailure turns an engine refusal into a reply; other errors pass.
func engineFailure(err error, usage string) (outcome, error) {
	if re, ok := rollout.AsError(err); ok {
		msg := re.Message
		if usage != "" {
			msg += "\n\nUsage: `" + usage + "`"
		}
		return failed(msg), nil
	}
	return outcome{}, err
}
