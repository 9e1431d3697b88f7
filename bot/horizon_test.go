package bot_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/githubtest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
)

// The replay horizon as README documents it: events older than 84 hours
// are ignored on arrival; the inbox's records are pruned after 96.
const (
	eventHorizon = 84 * time.Hour
	pruneAfter   = 96 * time.Hour
)

// commentAt is the command comment fixture written (created and last
// edited) at at.
func commentAt(t *testing.T, body string, id int64, at time.Time) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(comment(t, body, id, "Codertocat"), &m); err != nil {
		t.Fatal(err)
	}
	c := m["comment"].(map[string]any)
	c["created_at"], c["updated_at"] = at.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339)
	out, _ := json.Marshal(m)
	return out
}

// records are the keys of a journal bucket that contain part.
func records(t *testing.T, w *world, bucket, part string) []string {
	t.Helper()
	recs, err := w.db.List(bucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range recs {
		if strings.Contains(r.Key, part) {
			keys = append(keys, r.Key)
		}
	}
	return keys
}

// inboxRecords counts what the inbox remembers of a comment's delivery:
// its id, what it asked for and its 👀.
func inboxRecords(t *testing.T, w *world, delivery string, commentID int64) int {
	t.Helper()
	id := jsonInt(commentID)
	return len(records(t, w, "gh-deliveries", delivery)) + len(records(t, w, "gh-done", ":"+id+"@")) +
		len(records(t, w, "gh-reacted", ":"+id+":"))
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Pruning forgets deliveries past the horizon and keeps recent ones; a
// signed delivery replayed after its records were pruned, under its own
// id or a new one, is ignored and changes nothing.
func TestPruneForgetsOldDeliveriesWithoutReopeningReplays(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 9001, User: "Codertocat", Body: "/help"})
	old := commentAt(t, "/help", 9001, w.clock.now())
	if code := w.deliver("issue_comment", old, githubtest.WithDeliveryID("old-delivery")); code != http.StatusAccepted {
		t.Fatalf("old delivery answered %d", code)
	}
	w.sync()
	w.clock.add(pruneAfter + time.Minute)
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 9002, User: "Codertocat", Body: "/help"})
	if code := w.deliver("issue_comment", commentAt(t, "/help", 9002, w.clock.now()), githubtest.WithDeliveryID("new-delivery")); code != http.StatusAccepted {
		t.Fatalf("new delivery answered %d", code)
	}
	w.sync()
	if got := inboxRecords(t, w, "old-delivery", 9001); got != 3 {
		t.Fatalf("before pruning: %d records of the old delivery, want 3", got)
	}

	n, err := w.bot.Prune(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want the old delivery's 3 records", n, err)
	}
	if got := inboxRecords(t, w, "old-delivery", 9001); got != 0 {
		t.Fatalf("after pruning: %d records of the old delivery are left", got)
	}
	if got := inboxRecords(t, w, "new-delivery", 9002); got != 3 {
		t.Fatalf("after pruning: %d records of the new delivery, want 3", got)
	}

	// An attacker who kept the old signed body sends it again.
	sticky, events := w.sticky().Body, len(w.eventsOf(t))
	for _, id := range []string{"old-delivery", "fresh-id"} {
		if code := w.deliver("issue_comment", old, githubtest.WithDeliveryID(id)); code != http.StatusOK {
			t.Fatalf("replay under %s answered %d, want 200 (ignored)", id, code)
		}
	}
	w.sync()
	if got := w.gh.Reactions(9001); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("the replayed comment was handled again: reactions %v", got)
	}
	if w.sticky().Body != sticky || len(w.eventsOf(t)) != events {
		t.Fatal("the replayed comment changed the sticky comment or the engine's history")
	}
	if got := inboxRecords(t, w, "old-delivery", 9001) + len(records(t, w, "gh-deliveries", "fresh-id")); got != 0 {
		t.Fatalf("the ignored replay left %d records", got)
	}
}

// eventsOf is the engine's whole history.
func (w *world) eventsOf(t *testing.T) []rollout.Event {
	t.Helper()
	evs, err := w.eng.Events(context.Background(), "", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A delivery accepted but not yet handled keeps its records whatever
// their age, and is handled afterwards: nothing accepted is lost.
func TestPruneKeepsDeliveriesNotYetHandled(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 9003, User: "Codertocat", Body: "/help"})
	if code := w.deliver("issue_comment", commentAt(t, "/help", 9003, w.clock.now()), githubtest.WithDeliveryID("waiting")); code != http.StatusAccepted {
		t.Fatalf("delivery answered %d", code)
	}
	w.clock.add(pruneAfter + time.Hour)
	if n, err := w.bot.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want nothing pruned", n, err)
	}
	if got := records(t, w, "gh-deliveries", "waiting"); len(got) != 1 {
		t.Fatal("the accepted delivery's id was pruned")
	}
	w.sync()
	if got := w.gh.Reactions(9003); strings.Join(got, ",") != "eyes,rocket" {
		t.Fatalf("the accepted delivery was not handled: reactions %v", got)
	}
	if code := w.deliver("issue_comment", commentAt(t, "/help", 9003, w.clock.now().Add(-pruneAfter-time.Hour)), githubtest.WithDeliveryID("waiting")); code != http.StatusOK {
		t.Fatalf("its redelivery answered %d", code)
	}
}

// breakingJournal is the real journal whose pruning reads panic (listing a
// whole gh-reacted bucket is something only pruning does) or whose deletes
// of delivery records fail.
type breakingJournal struct {
	rollout.Journal
	panics, fails bool
}

func (j *breakingJournal) List(bucket string, limit int) ([]rollout.Record, error) {
	if j.panics && bucket == "gh-reacted" && limit == 0 {
		panic("list exploded")
	}
	return j.Journal.List(bucket, limit)
}

func (j *breakingJournal) Apply(ops ...rollout.Op) error {
	for _, op := range ops {
		if j.fails && op.Delete && op.Bucket == "gh-deliveries" {
			return errors.New("disk full")
		}
	}
	return j.Journal.Apply(ops...)
}

// A pruning round that panics or fails returns an error, removes nothing,
// and the bot goes on handling deliveries.
func TestABrokenPruningRoundChangesNothingElse(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.gh.AddComment(repo, 1, githubtest.Comment{ID: 9004, User: "Codertocat", Body: "/help"})
	w.deliver("issue_comment", commentAt(t, "/help", 9004, w.clock.now()), githubtest.WithDeliveryID("old-delivery"))
	w.sync()
	w.clock.add(pruneAfter + time.Hour)
	for i, j := range []*breakingJournal{{Journal: w.db, panics: true}, {Journal: w.db, fails: true}} {
		b := bot.New(w.eng, j, w.f, bot.Config{WebhookSecret: secret}, bot.WithClock(w.clock.now))
		_, err := b.Prune(context.Background())
		var panicked *contain.PanicError
		if err == nil || (j.panics && !errors.As(err, &panicked)) {
			t.Fatalf("round %d: Prune = %v", i, err)
		}
		if got := inboxRecords(t, w, "old-delivery", 9004); got != 3 {
			t.Fatalf("round %d: a broken round left %d of 3 records", i, got)
		}
		id := int64(9100 + i)
		w.gh.AddComment(repo, 1, githubtest.Comment{ID: id, User: "Codertocat", Body: "/help"})
		if code, _, err := b.Accept("issue_comment", "after-"+jsonInt(id), commentAt(t, "/help", id, w.clock.now())); err != nil || code != http.StatusAccepted {
			t.Fatalf("round %d: accept after the broken round: %d %v", i, code, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = b.Sync(ctx)
		cancel()
		if got := w.gh.Reactions(id); err != nil || strings.Join(got, ",") != "eyes,rocket" {
			t.Fatalf("round %d: the next delivery after a broken round: %v, reactions %v", i, err, got)
		}
	}
	if n, err := w.bot.Prune(context.Background()); err != nil || n != 3 {
		t.Fatalf("a healthy round after broken ones: %d, %v", n, err)
	}
}

// Every event sluice acts on is dated by its own payload: within the
// horizon it is accepted, past it (or with no time at all) it is ignored
// and nothing is recorded. Events that change nothing have no horizon.
func TestEventsPastTheHorizonAreIgnoredOnArrival(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	undated := func(t *testing.T) []byte {
		var m map[string]any
		json.Unmarshal(pushOf(t, mainSHA), &m)
		delete(m["repository"].(map[string]any), "pushed_at")
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		event, fixture string
		body           []byte
		dated          bool
	}{
		{event: "issue_comment", fixture: "issue_comment.created.pull_request.json", dated: true},
		{event: "push", fixture: "push.json", dated: true},
		{event: "pull_request", fixture: "pull_request.closed.merged.json", dated: true},
		{event: "check_run", fixture: "check_run.rerequested.json", dated: true},
		{event: "installation", fixture: "installation.created.json"},
		{event: "ping", body: []byte(`{"zen":"Keep it logically awesome."}`)},
	}
	body := func(t *testing.T, fixture string, b []byte) []byte {
		if b != nil {
			return b
		}
		return githubtest.Fixture(t, fixture)
	}
	w.clock.add(eventHorizon - time.Hour)
	for _, tc := range cases {
		if code := w.deliver(tc.event, body(t, tc.fixture, tc.body)); code != http.StatusAccepted {
			t.Errorf("%s %s within the horizon answered %d", tc.event, tc.fixture, code)
		}
	}
	if code := w.deliver("push", undated(t), githubtest.WithDeliveryID("undated")); code != http.StatusOK {
		t.Errorf("a push without a time answered %d", code)
	}
	w.clock.add(2 * time.Hour)
	for _, tc := range cases {
		want := http.StatusAccepted
		if tc.dated {
			want = http.StatusOK
		}
		if code := w.deliver(tc.event, body(t, tc.fixture, tc.body), githubtest.WithDeliveryID("late-"+tc.event)); code != want {
			t.Errorf("%s %s past the horizon answered %d, want %d", tc.event, tc.fixture, code, want)
		}
		if got := len(records(t, w, "gh-deliveries", "late-"+tc.event)) == 1; got != !tc.dated {
			t.Errorf("%s past the horizon: recorded %v", tc.event, got)
		}
	}
	if got := records(t, w, "gh-deliveries", "undated"); len(got) != 0 {
		t.Error("the push without a time was recorded")
	}
}
