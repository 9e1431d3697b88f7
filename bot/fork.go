package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/manifest"
)

// Pull requests from forks.
//
// A fork's head is code written by someone who may have no right to run
// anything where sluice runs. A command that builds a pull request's head
// (/deploy, /canary, /redeploy) on a pull request whose head repository is
// not the base repository is refused unless both hold:
//
//  1. sluice.yaml on the base repository's default branch says
//     `forks: allow`. The fork's own sluice.yaml is never asked: it is the
//     fork author's to write.
//  2. The head is the commit the commenter saw. GitHub tells sluice when a
//     fork's head arrives (pull_request opened, reopened, synchronize; the
//     payload's updated_at is GitHub's time of the push). sluice builds the
//     current head only if it is the head it last saw arrive and it arrived
//     strictly before the comment was last written (created_at, or
//     updated_at once edited). A head sluice has not seen arrive, or one
//     pushed after the comment, is refused. Commit dates are not used: the
//     fork's author writes them.
//
// The build then uses exactly that commit. The reply and a neutral check
// run "sluice" on the head say why a fork was refused.

// bucketForkHeads: "owner/repo#N" → forkHead, for open pull requests from forks.
const bucketForkHeads = "gh-fork-heads"

// forkHead is the head of a fork's pull request as GitHub last announced it.
type forkHead struct {
	SHA string    `json:"sha"`
	At  time.Time `json:"at"`
}

// pullRequestHead is the part of a pull_request payload that says where
// its head is.
type pullRequestHead struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		UpdatedAt time.Time `json:"updated_at"`
		Head      struct {
			SHA  string `json:"sha"`
			Repo *struct {
				FullName string `json:"full_name"`
			} `json:"repo"`
		} `json:"head"`
	} `json:"pull_request"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// forkHeadOps records the head of a fork's pull request when GitHub says it
// arrived, and forgets it when the pull request closes.
func forkHeadOps(d delivery) []rollout.Op {
	var p pullRequestHead
	if json.Unmarshal(d.Body, &p) != nil || p.Repository.FullName == "" {
		return nil
	}
	key := prKey(p.Repository.FullName, p.Number)
	switch p.Action {
	case "opened", "reopened", "synchronize":
	case "closed":
		return []rollout.Op{rollout.Delete(bucketForkHeads, key)}
	default:
		return nil
	}
	head := p.PullRequest.Head
	if head.Repo != nil && head.Repo.FullName == p.Repository.FullName {
		return nil // not a fork
	}
	at := p.PullRequest.UpdatedAt
	if at.IsZero() {
		at = d.Received
	}
	return []rollout.Op{rollout.Put(bucketForkHeads, key, mustJSON(forkHead{SHA: head.SHA, At: at.UTC()}))}
}

// forkRefusal says why the PR head must not be built for this command, or
// "" when it may (not a fork, or a fork that passes both rules above). An
// error means GitHub could not be asked; the delivery is retried.
func (cm *commands) forkRefusal(ctx context.Context, p *prCmd) (string, error) {
	sha, err := cm.headSHA(ctx, p)
	if err != nil || p.fork == "" {
		return "", err
	}
	opted, err := cm.forksAllowed(ctx, p)
	if err != nil || opted != "" {
		return opted, err
	}
	var seen forkHead
	ok, err := getJSON(cm.journal, bucketForkHeads, prKey(p.repo, p.pr), &seen)
	switch {
	case err != nil:
		return "", err
	case !ok || seen.SHA != sha:
		return fmt.Sprintf("This pull request comes from the fork %s and its head is now %s, which sluice has not seen "+
			"arrive before this comment: it may have moved since the comment was written. sluice builds a fork only at "+
			"the commit the commenter saw. Review %s and comment again.", p.fork, shortSHA(sha), shortSHA(sha)), nil
	case p.written.IsZero() || !seen.At.Before(p.written):
		return fmt.Sprintf("This pull request comes from the fork %s and its head %s was pushed at %s, after this comment "+
			"was written (%s). sluice builds a fork only at the commit the commenter saw. Review %s and comment again.",
			p.fork, shortSHA(sha), seen.At.Format(time.RFC3339), p.written.Format(time.RFC3339), shortSHA(sha)), nil
	}
	return "", nil
}

// forksAllowed reads sluice.yaml of the base repository's default branch
// and returns "" when it says `forks: allow`, or the refusal.
func (cm *commands) forksAllowed(ctx context.Context, p *prCmd) (string, error) {
	refuse := func(why string) string {
		return fmt.Sprintf("This pull request comes from the fork %s. sluice builds pull requests from forks only when "+
			"sluice.yaml on %s, the default branch of %s, says `forks: allow`%s; the fork's own sluice.yaml does not count.",
			p.fork, p.baseBranch, p.repo, why)
	}
	fc, _, _, err := p.gh.Repositories.GetContents(ctx, p.owner, p.name, manifest.FileName, &github.RepositoryContentGetOptions{Ref: p.baseBranch})
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
		return refuse(" (it has no sluice.yaml)"), nil
	}
	if err != nil {
		return "", fmt.Errorf("read sluice.yaml of %s: %w", p.baseBranch, err)
	}
	text, err := fc.GetContent()
	if err != nil {
		return "", fmt.Errorf("decode sluice.yaml of %s: %w", p.baseBranch, err)
	}
	m, err := manifest.Parse(manifest.FileName, []byte(text))
	switch {
	case err != nil:
		return refuse(" (its sluice.yaml has errors)"), nil
	case m.Forks != manifest.ForksAllow:
		return refuse(""), nil
	}
	return "", nil
}

// refuseFork is the outcome of a command refused because the PR comes
// from a fork: the reply, and a neutral check run on the head saying why.
func (cm *commands) refuseFork(p *prCmd, why string) outcome {
	cm.log.Info("fork pull request not built", "repo", p.repo, "pr", p.pr, "fork", p.fork, "sha", p.head)
	out := failed("🚫 " + why)
	out.ops = append(out.ops, staticCheck(p.repo, p.inst, p.head, static{Name: "sluice", ExternalID: "fork:" + p.head,
		Conclusion: "neutral", Title: "Not built: pull request from a fork", Summary: why}))
	return out
}

// rerunForkRefusal applies rule 1 to "Re-run" on the check run of a pull
// request's version (check_run.rerequested): when the pull request comes
// from a fork, the base repository's default branch must still say
// `forks: allow`, since the opt-in may have been withdrawn after the
// version was built. Rule 2 holds already: a re-run builds the version's
// own commit, which a maintainer's comment let through. It returns "" when
// the re-run may build, or why not and the ops that report it (a neutral
// check run "sluice" on that commit). An error means GitHub could not be
// asked; the delivery is retried.
func (cm *commands) rerunForkRefusal(ctx context.Context, gh *github.Client, inst int64, cs checkState) (string, []rollout.Op, error) {
	if cs.PR == 0 {
		return "", nil, nil // a merge's version: the default branch is no fork
	}
	owner, name := splitRepo(cs.Repo)
	p := &prCmd{repo: cs.Repo, owner: owner, name: name, inst: inst, pr: cs.PR, gh: gh}
	if _, err := cm.headSHA(ctx, p); err != nil || p.fork == "" {
		return "", nil, err
	}
	why, err := cm.forksAllowed(ctx, p)
	if err != nil || why == "" {
		return "", nil, err
	}
	p.head = cs.SHA // the re-run is of this commit, wherever the head is now
	return why, cm.refuseFork(p, why).ops, nil
}
