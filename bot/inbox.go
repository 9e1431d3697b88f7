package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
)

// maxWorkers bounds the deliveries handled at once (each in its own lane).
const maxWorkers = 4

// inboxScan bounds the inbox entries one dispatch round looks at.
const inboxScan = 1000

// lanes tracks the lanes whose delivery is being handled. A lane is the
// unit of order: deliveries of one pull request (or one ref) are handled
// one at a time, in the order they arrived; deliveries of different lanes
// never wait for each other, so a delivery that keeps failing, or a slow
// one, holds up only its own pull request or branch.
type lanes struct {
	mu   sync.Mutex
	idle *sync.Cond
	busy map[string]bool
	max  int
}

func (l *lanes) init(max int) {
	l.busy = make(map[string]bool)
	l.idle = sync.NewCond(&l.mu)
	l.max = max
}

// claim marks lane busy; false when it already is or every worker is taken.
func (l *lanes) claim(lane string) (ok, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.busy) >= l.max {
		return false, true
	}
	if l.busy[lane] {
		return false, false
	}
	l.busy[lane] = true
	return true, false
}

func (l *lanes) release(lane string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.busy, lane)
	if len(l.busy) == 0 {
		l.idle.Broadcast()
	}
}

// wait returns once no delivery is being handled.
func (l *lanes) wait() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.busy) > 0 {
		l.idle.Wait()
	}
}

// route is what the inbox reads of any delivery to order and dedupe it.
type route struct {
	Action string `json:"action"`
	Ref    string `json:"ref"`
	Before string `json:"before"`
	After  string `json:"after"`
	Number int    `json:"number"`
	Issue  struct {
		Number int `json:"number"`
	} `json:"issue"`
	Comment struct {
		ID        int64  `json:"id"`
		UpdatedAt string `json:"updated_at"`
	} `json:"comment"`
	CheckRun struct {
		HeadSHA      string `json:"head_sha"`
		PullRequests []struct {
			Number int `json:"number"`
		} `json:"pull_requests"`
	} `json:"check_run"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

func readRoute(d delivery) route {
	var r route
	_ = json.Unmarshal(d.Body, &r) // a body the handler cannot read gets its own lane
	return r
}

// pr is the pull request a delivery is about, or 0.
func (r route) pr(event string) int {
	switch event {
	case "issue_comment":
		return r.Issue.Number
	case "pull_request":
		return r.Number
	case "check_run":
		if len(r.CheckRun.PullRequests) > 0 {
			return r.CheckRun.PullRequests[0].Number
		}
	}
	return 0
}

// lane names the order a delivery keeps: its pull request, its ref, or
// (for events that change nothing in order) itself.
func (r route) lane(d delivery) string {
	repo := r.Repository.FullName
	switch {
	case repo == "":
	case r.pr(d.Event) != 0:
		return fmt.Sprintf("%s#%d", repo, r.pr(d.Event))
	case d.Event == "push":
		return repo + "@" + r.Ref
	case d.Event == "check_run" && r.CheckRun.HeadSHA != "":
		return repo + "@" + r.CheckRun.HeadSHA
	}
	return "delivery:" + d.ID
}

// replayKey names what a delivery asks for, so that the same signed body
// re-sent under a new delivery id does not run twice: a comment by its id
// and edit time, a push by repository, ref and the move it records
// (before..after — a branch moved back to an earlier commit later is a
// new push, not a replay). "" for events that are safe to handle again.
func (r route) replayKey(event string) string {
	repo := r.Repository.FullName
	switch {
	case repo == "":
	case event == "issue_comment" && r.Comment.ID != 0:
		return fmt.Sprintf("comment:%s:%d@%s", repo, r.Comment.ID, r.Comment.UpdatedAt)
	case event == "push" && r.After != "":
		return fmt.Sprintf("push:%s@%s:%s..%s", repo, r.Ref, r.Before, r.After)
	}
	return ""
}

// failedDelivery records a delivery that ended without success.
type failedDelivery struct {
	Event  string    `json:"event"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// inboxEntry is one readable inbox record.
type inboxEntry struct {
	key string
	d   delivery
	r   route
}

// processInbox starts a worker for the oldest due delivery of every lane
// that has no delivery being handled, up to maxWorkers at once. A delivery
// waiting for a retry holds its lane only.
func (in *inbox) processInbox(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	recs, err := in.journal.List(bucketInbox, inboxScan)
	if err != nil {
		return fmt.Errorf("list inbox: %w", err)
	}
	entries := make([]inboxEntry, 0, len(recs))
	for _, rec := range recs {
		var d delivery
		if err := json.Unmarshal(rec.Value, &d); err != nil {
			in.log.Error("drop unreadable inbox entry", "key", rec.Key, "err", err)
			if err := in.journal.Apply(rollout.Delete(bucketInbox, rec.Key)); err != nil {
				return fmt.Errorf("drop inbox entry: %w", err)
			}
			continue
		}
		entries = append(entries, inboxEntry{key: rec.Key, d: d, r: readRoute(d)})
	}
	held := map[string]bool{}
	for i, e := range entries {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lane := e.r.lane(e.d)
		if held[lane] {
			continue
		}
		held[lane] = true
		if e.d.NotBefore.After(in.now()) {
			continue
		}
		if e.d.Event == "push" && in.superseded(e, entries[i+1:]) {
			in.log.Info("push superseded by a newer one", "delivery", e.d.ID, "repo", e.r.Repository.FullName, "sha", e.r.After)
			if err := in.settle(e, nil); err != nil {
				return err
			}
			continue
		}
		ok, full := in.lanes.claim(lane)
		if full {
			return nil
		}
		if !ok {
			continue
		}
		go func() {
			defer in.poke()
			defer in.lanes.release(lane)
			if err := in.handleContained(ctx, e); err != nil && ctx.Err() == nil {
				in.log.Error("handle delivery", "delivery", e.d.ID, "err", err)
			}
		}()
	}
	return nil
}

// superseded reports whether a later push to the same ref, not itself a
// replay of one already handled, waits in the inbox: only the newest
// head of a branch is deployed.
func (in *inbox) superseded(e inboxEntry, later []inboxEntry) bool {
	mine := e.r.replayKey("push")
	for _, l := range later {
		if l.d.Event != "push" || l.r.lane(l.d) != e.r.lane(e.d) || l.r.After == e.r.After {
			continue
		}
		if in.replayed(l) {
			continue
		}
		if l.r.replayKey("push") != mine {
			return true
		}
	}
	return false
}

// replayed reports whether what e asks for was already handled under
// another delivery id.
func (in *inbox) replayed(e inboxEntry) bool {
	key := e.r.replayKey(e.d.Event)
	if key == "" {
		return false
	}
	data, err := in.journal.Get(bucketDone, key)
	return err == nil && readDone(data).Delivery != e.d.ID
}

// settle removes a delivery from the inbox together with ops, recording
// what it asked for as done.
func (in *inbox) settle(e inboxEntry, ops []rollout.Op) error {
	if key := e.r.replayKey(e.d.Event); key != "" {
		ops = append(ops, rollout.Put(bucketDone, key, mustJSON(doneRecord{Delivery: e.d.ID, At: in.now().UTC()})))
	}
	ops = append(ops, rollout.Delete(bucketInbox, e.key))
	if err := in.journal.Apply(ops...); err != nil {
		return fmt.Errorf("settle delivery %s: %w", e.d.ID, err)
	}
	return nil
}

// runHandler runs the delivery's handler as a contained unit: a panic
// comes back as a *contain.PanicError, so one bad delivery never takes
// the server down.
func (in *inbox) runHandler(ctx context.Context, d delivery) (ops []rollout.Op, err error) {
	err = contain.Do(in.log.With("delivery", d.ID, "event", d.Event), "delivery handler", func() error {
		ops, err = in.handlers()[d.Event](ctx, d)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ops, nil
}

// handleContained is handle as a unit of work: a panic outside the
// handler (settling, replying) ends the delivery as failed, so its lane
// goes on with the next one.
func (in *inbox) handleContained(ctx context.Context, e inboxEntry) error {
	err := contain.Do(in.log.With("delivery", e.d.ID, "event", e.d.Event), "delivery", func() error { return in.handle(ctx, e) })
	var panicked *contain.PanicError
	if !errors.As(err, &panicked) {
		return err
	}
	return in.settle(e, []rollout.Op{rollout.Put(bucketFailed, e.d.ID,
		mustJSON(failedDelivery{Event: e.d.Event, Reason: err.Error(), At: in.now().UTC()}))})
}

// handle runs one delivery and settles it: done, failed for good (with a
// reply saying why on its pull request), or put back for a retry.
func (in *inbox) handle(ctx context.Context, e inboxEntry) error {
	d := e.d
	log := in.log.With("delivery", d.ID, "event", d.Event)
	if in.replayed(e) {
		log.Warn("delivery replays one already handled; skipped", "replay_of", e.r.replayKey(d.Event))
		return in.settle(e, nil)
	}
	ops, err := in.runHandler(ctx, d)
	if err == nil {
		return in.settle(e, ops)
	}
	if ctx.Err() != nil {
		return nil // shutting down: handled again after the restart
	}
	var why string
	var panicked *contain.PanicError
	switch {
	case errors.As(err, &panicked):
		why = fmt.Sprintf("sluice failed internally while handling it (delivery %s); the server's log has the details. It will not be tried again.", d.ID)
	case isPermanent(err) || ghapp.Permanent(err):
		log.Warn("delivery failed for good", "err", err)
		why = permanentWhy(err)
	case d.Attempts+1 >= maxDeliveryAttempts:
		log.Error("delivery failed after repeated attempts", "attempts", d.Attempts+1, "err", err)
		why = fmt.Sprintf("it failed %d times; the last failure was: %s.", d.Attempts+1, orDescribe(err, "an error inside sluice"))
	default:
		d.Attempts++
		wait := in.retryWait(d.Attempts, err)
		d.NotBefore = in.now().Add(wait)
		log.Warn("delivery will be retried", "attempt", d.Attempts, "retry_in", wait.String(), "err", err)
		return in.journal.Apply(rollout.Put(bucketInbox, e.key, mustJSON(d)))
	}
	fail := []rollout.Op{rollout.Put(bucketFailed, d.ID, mustJSON(failedDelivery{Event: d.Event, Reason: err.Error(), At: in.now().UTC()}))}
	reply, rerr := in.failureReply(ctx, e, why)
	if rerr != nil {
		log.Error("reply on the failed delivery's pull request", "err", rerr)
	}
	return in.settle(e, append(fail, reply...))
}

// permanentWhy explains an error that retrying will not fix.
func permanentWhy(err error) string {
	if s := ghapp.Describe(err); s != "" {
		return s + ", which will not change by asking again. Check that the App is still installed on this repository with the permissions it needs, and that what the event names still exists."
	}
	return "sluice cannot use this event: " + err.Error() + "."
}

func orDescribe(err error, otherwise string) string {
	if s := ghapp.Describe(err); s != "" {
		return s
	}
	return otherwise
}

// failureReply queues, on the pull request a failed delivery is about (a
// commented PR, a closed PR, a check run's PR, a merged PR's push), an
// entry saying it failed and why, and 😕 on a command comment.
func (in *inbox) failureReply(ctx context.Context, e inboxEntry, why string) ([]rollout.Op, error) {
	repo, inst := e.r.Repository.FullName, e.r.Installation.ID
	pr := e.r.pr(e.d.Event)
	what := map[string]string{"issue_comment": "comment", "pull_request": "pull request event", "check_run": "check run request", "push": "merge"}[e.d.Event]
	if e.d.Event == "push" && repo != "" {
		if n, err := mergedPR(in.journal, repo, e.r.After); err == nil && n != 0 {
			pr = n
		}
	}
	if repo == "" || pr == 0 || what == "" {
		return nil, nil
	}
	ops, err := in.rep.addPREntries(ctx, repo, inst, pr, render.Entry{Time: in.now(), Title: "sluice could not handle this " + what, Body: "⚠️ This " + what + " was not handled: " + why})
	if err != nil {
		return nil, err
	}
	if e.d.Event == "issue_comment" && e.r.Comment.ID != 0 {
		ops = append(ops, reaction(&prCmd{repo: repo, inst: inst, commentID: e.r.Comment.ID}, "confused"))
	}
	return ops, nil
}
