package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/source"
)

func formatMatch(m map[string]string) string { return policy.FormatMatch(m) }

// outboxKind says what report an outbox item is; persisted in the journal.
type outboxKind string

// Outbox item kinds.
const (
	kindReaction   outboxKind = "reaction"   // a reaction on a comment
	kindSticky     outboxKind = "sticky"     // create or edit the PR's sticky comment from its stored entries
	kindCheck      outboxKind = "check"      // create or update a version's check run from its current state
	kindStatic     outboxKind = "check-done" // a finished check run with fixed output (a manifest error)
	kindDeployment outboxKind = "deployment" // create a deployment and set its status from the version's state
)

// outboxItem is one report waiting to be sent to GitHub.
type outboxItem struct {
	Kind      outboxKind `json:"kind"`
	Repo      string     `json:"repo"`
	Inst      int64      `json:"installation"`
	CommentID int64      `json:"comment_id,omitempty"`
	Content   string     `json:"content,omitempty"` // reaction
	PR        int        `json:"pr,omitempty"`
	Version   string     `json:"version,omitempty"`
	Service   string     `json:"service,omitempty"`
	SHA       string     `json:"sha,omitempty"`
	Static    *static    `json:"static,omitempty"`
	Attempts  int        `json:"attempts,omitempty"`
	NotBefore time.Time  `json:"not_before,omitzero"`
}

// static is the fixed output of a finished check run.
type static struct {
	Name, ExternalID, Title, Summary string
	// Conclusion is "failure" when empty.
	Conclusion  string
	Annotations []rollout.Problem
}

func reaction(p *prCmd, content string) rollout.Op {
	return rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindReaction, Repo: p.repo, Inst: p.inst, CommentID: p.commentID, Content: content}))
}

// prState is what sluice keeps about one pull request.
type prState struct {
	CommentID int64          `json:"comment_id,omitempty"`
	Entries   []render.Entry `json:"entries"`
}

func prKey(repo string, pr int) string { return fmt.Sprintf("%s#%d", repo, pr) }

// addEntries records entries for a PR's sticky comment (newest first) and
// queues the comment's update. The returned ops must be applied; callers
// hold no lock, the read-modify-write is serialized here.
func (rp *reporter) addEntries(ctx context.Context, p *prCmd, entries ...render.Entry) ([]rollout.Op, error) {
	return rp.addPREntries(ctx, p.repo, p.inst, p.pr, entries...)
}

func (rp *reporter) addPREntries(ctx context.Context, repo string, inst int64, pr int, entries ...render.Entry) ([]rollout.Op, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	secrets := rp.allSecrets(ctx)
	rp.stateMu.Lock()
	defer rp.stateMu.Unlock()
	key := prKey(repo, pr)
	var st prState
	if _, err := getJSON(rp.journal, bucketPRs, key, &st); err != nil {
		return nil, err
	}
	for _, e := range entries {
		e.Body = redact.String(e.Body, secrets)
		e.Title = redact.String(e.Title, secrets)
		st.Entries = append([]render.Entry{e}, st.Entries...)
	}
	if len(st.Entries) > 50 {
		st.Entries = st.Entries[:50]
	}
	// Written now (not with the caller's ops) so that entries of two
	// handlers never overwrite each other; the comment is sent later.
	if err := rp.journal.Apply(rollout.Put(bucketPRs, key, mustJSON(st))); err != nil {
		return nil, err
	}
	return []rollout.Op{rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindSticky, Repo: repo, Inst: inst, PR: pr}))}, nil
}

// maxReportedProblems caps the manifest problems a check run lists and
// annotates (annotations go 50 per request).
const maxReportedProblems = 200

// manifestCheck queues a finished, failed check run for a manifest error
// on each of services (see brokenServices), with an annotation on each
// offending line of sluice.yaml.
func (rp *reporter) manifestCheck(repo string, inst int64, sha string, services []string, e *rollout.Error) []rollout.Op {
	problems := e.Problems
	var lines []string
	for i, p := range problems {
		if i == maxReportedProblems {
			lines = append(lines, fmt.Sprintf("… %d more problems", len(problems)-i))
			problems = problems[:i]
			break
		}
		lines = append(lines, problemLine(p))
	}
	list := strings.Join(lines, "\n")
	if len(lines) == 0 {
		list = e.Message
	}
	summary := render.Fit("**InvalidManifest**: sluice.yaml at "+shortSHA(sha)+" cannot be used.\n\n```\n"+redact.String(list, rp.cfg.Secrets)+
		"\n```\n\nFix the lines annotated below and push again.", render.MaxCheckText)
	if len(services) == 0 {
		services = []string{""}
	}
	var ops []rollout.Op
	for _, svc := range services {
		name, external := "sluice", "manifest:"+sha
		if svc != "" {
			name, external = checkName(svc), "manifest:"+sha+":"+svc
		}
		ops = append(ops, staticCheck(repo, inst, sha, static{Name: name, ExternalID: external,
			Title: "InvalidManifest: sluice.yaml has errors", Summary: summary, Annotations: problems}))
	}
	return ops
}

// problemLine renders a problem as "file:line:col: field: message".
func problemLine(p rollout.Problem) string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
		if p.Column > 0 {
			s += fmt.Sprintf(":%d", p.Column)
		}
	}
	if s != "" {
		s += ": "
	}
	if p.Field != "" {
		s += p.Field + ": "
	}
	return s + p.Message
}

// brokenServices names the check runs a broken sluice.yaml fails: the
// service a command named, or else the services the file means (recovered
// best effort from its `services:` keys), or none (one run named
// "sluice") when no name can be recovered.
func brokenServices(named string, archive []byte) []string {
	if named != "" {
		return []string{named}
	}
	info, err := source.Inspect(archive, source.DefaultLimits)
	if err != nil {
		return nil
	}
	return manifest.ServiceNames(info.Manifest)
}

// staticCheck queues a finished check run with fixed output.
func staticCheck(repo string, inst int64, sha string, s static) rollout.Op {
	return rollout.Append(bucketOutbox, mustJSON(outboxItem{Kind: kindStatic, Repo: repo, Inst: inst, SHA: sha, Static: &s}))
}

// sendOutbox sends due reports in order. A failure that may pass stops
// the round (later reports keep their order) and is retried after a
// backoff that honours GitHub's Retry-After and rate-limit reset. Each
// report is a unit of work (package contain): one whose sending panics is
// dropped like one GitHub refused, and the next is sent.
func (rp *reporter) sendOutbox(ctx context.Context) error {
	rp.outMu.Lock()
	defer rp.outMu.Unlock()
	for ctx.Err() == nil {
		recs, err := rp.journal.List(bucketOutbox, 1)
		if err != nil || len(recs) == 0 {
			return err
		}
		rec := recs[0]
		var it outboxItem
		if err := json.Unmarshal(rec.Value, &it); err != nil {
			rp.log.Error("drop unreadable outbox entry", "err", err)
			if err := rp.journal.Apply(rollout.Delete(bucketOutbox, rec.Key)); err != nil {
				return err
			}
			continue
		}
		if it.NotBefore.After(rp.now()) {
			return nil
		}
		log := rp.log.With("repo", it.Repo, "kind", it.Kind)
		var ops []rollout.Op
		err = contain.Do(log, "report", func() (err error) {
			ops, err = rp.send(ctx, it)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // shutting down: sent after the restart
			}
			var panicked *contain.PanicError
			if errors.As(err, &panicked) || isPermanent(err) || ghapp.Permanent(err) || it.Attempts+1 >= maxDeliveryAttempts {
				log.Error("report dropped: GitHub refused it", "attempts", it.Attempts+1, "err", err)
				if err := rp.journal.Apply(rollout.Delete(bucketOutbox, rec.Key)); err != nil {
					return err
				}
				continue
			}
			it.Attempts++
			wait := rp.retryWait(it.Attempts, err)
			it.NotBefore = rp.now().Add(wait)
			log.Warn("report delayed: GitHub unavailable", "attempt", it.Attempts, "retry_in", wait.String(), "err", err)
			return rp.journal.Apply(rollout.Put(bucketOutbox, rec.Key, mustJSON(it)))
		}
		ops = append(ops, rollout.Delete(bucketOutbox, rec.Key))
		if err := rp.journal.Apply(ops...); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// send delivers one report and returns journal ops recording what GitHub
// created (ids), to apply with its removal from the outbox.
func (rp *reporter) send(ctx context.Context, it outboxItem) ([]rollout.Op, error) {
	gh := rp.gh.Installation(it.Inst)
	owner, name := splitRepo(it.Repo)
	switch it.Kind {
	case kindReaction:
		_, _, err := gh.Reactions.CreateIssueCommentReaction(ctx, owner, name, it.CommentID, it.Content)
		return nil, err
	case kindSticky:
		return rp.sendSticky(ctx, gh, owner, name, it)
	case kindCheck:
		return rp.sendCheck(ctx, gh, owner, name, it)
	case kindStatic:
		return rp.sendStatic(ctx, gh, owner, name, it)
	case kindDeployment:
		return rp.sendDeployment(ctx, gh, owner, name, it)
	}
	rp.log.Error("unknown outbox kind", "kind", it.Kind)
	return nil, nil
}

func (rp *reporter) sendSticky(ctx context.Context, gh *github.Client, owner, name string, it outboxItem) ([]rollout.Op, error) {
	key := prKey(it.Repo, it.PR)
	var st prState
	if _, err := getJSON(rp.journal, bucketPRs, key, &st); err != nil {
		return nil, err
	}
	body := render.Sticky(st.Entries, stickyEntries)
	if st.CommentID == 0 {
		// Find it again before creating it: a crash after the create but
		// before recording its id must not make a second one.
		id, err := findSticky(ctx, gh, owner, name, it.PR, rp.selfLogin())
		if err != nil {
			return nil, err
		}
		st.CommentID = id
	}
	if st.CommentID != 0 {
		_, _, err := gh.Issues.EditComment(ctx, owner, name, st.CommentID, &github.IssueComment{Body: &body})
		var er *github.ErrorResponse
		if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
			st.CommentID = 0 // deleted by someone: make a new one
		} else {
			return rp.recordSticky(key, st.CommentID), err
		}
	}
	c, _, err := gh.Issues.CreateComment(ctx, owner, name, it.PR, &github.IssueComment{Body: &body})
	if err != nil {
		return nil, err
	}
	ops := rp.recordSticky(key, c.GetID())
	if login := c.GetUser().GetLogin(); login != "" && login != rp.selfLogin() {
		ops = append(ops, rollout.Put(bucketIDs, selfLoginKey, []byte(login)))
	}
	return ops, nil
}

// selfLoginKey (in bucketIDs) holds the login sluice writes on GitHub as
// ("<app>[bot]", or the workflow token's bot), learnt from the first
// sticky comment it created.
const selfLoginKey = "self-login"

func (rp *reporter) selfLogin() string {
	data, err := rp.journal.Get(bucketIDs, selfLoginKey)
	if err != nil {
		return ""
	}
	return string(data)
}

// recordSticky stores the sticky comment id (under the state lock, since
// entries may have been added meanwhile).
func (rp *reporter) recordSticky(key string, id int64) []rollout.Op {
	rp.stateMu.Lock()
	defer rp.stateMu.Unlock()
	var st prState
	if _, err := getJSON(rp.journal, bucketPRs, key, &st); err != nil {
		return nil
	}
	if st.CommentID == id {
		return nil
	}
	st.CommentID = id
	if err := rp.journal.Apply(rollout.Put(bucketPRs, key, mustJSON(st))); err != nil {
		rp.log.Error("record sticky comment id", "err", err)
	}
	return nil
}

// findSticky finds sluice's sticky comment on a PR: one that starts with
// the marker and that sluice wrote — a bot account's, and self's when
// sluice knows its login — so a person's comment quoting the marker is
// never taken over.
func findSticky(ctx context.Context, gh *github.Client, owner, name string, pr int, self string) (int64, error) {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		cs, resp, err := gh.Issues.ListComments(ctx, owner, name, pr, opts)
		if err != nil {
			return 0, err
		}
		for _, c := range cs {
			u := c.GetUser()
			ours := u.GetType() == "Bot" && strings.HasSuffix(u.GetLogin(), "[bot]") && (self == "" || u.GetLogin() == self)
			if ours && strings.HasPrefix(c.GetBody(), render.Marker) {
				return c.GetID(), nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return 0, nil
		}
		opts.Page = resp.NextPage
	}
}
