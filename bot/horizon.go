package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
)

// The inbox's replay horizon. A delivery is processed once: its id
// (gh-deliveries) and what it asks for (gh-done, gh-reacted) are recorded
// when it arrives or is settled. Those records cannot be kept forever, so
// they are pruned once older than pruneAge, and an event older than
// maxEventAge by its own time is ignored on arrival. A record is pruned
// only after every delivery it protects against has become too old to be
// accepted again, so pruning never reopens a replay:
//
//	record pruned  ⇒ accepted before now−pruneAge
//	               ⇒ the event happened before now−pruneAge+clockSkew = now−maxEventAge
//	               ⇒ a replay of it is refused on arrival.
const (
	// maxEventAge bounds the age of an event sluice acts on: GitHub
	// redelivers deliveries of the last 72 hours (recoverWindow), and a
	// redelivered body keeps its original times.
	maxEventAge = recoverWindow + clockSkew
	// clockSkew is how far GitHub's clock (which dates the events) may
	// run ahead of sluice's (which dates the records).
	clockSkew = 12 * time.Hour
	// pruneAge is the age past which the inbox's records are pruned.
	pruneAge = maxEventAge + clockSkew
	// pruneBatch bounds the records removed in one transaction, so a
	// pruning round never holds the store's write lock for long.
	pruneBatch = 1000
)

// eventTimes names, per event sluice acts on, the payload fields that date
// it (dotted paths); the newest one present is the event's own time. Every
// time in a payload was written before GitHub sent it, so it is a lower
// bound of when the event happened: a replay is judged by the time of the
// original event, never by when it is sent. A check run's button or
// "Re-run" carries no time of its own: the run's completion (or start)
// dates it, so a check run finished before the horizon can no longer be
// re-run from GitHub (a comment can). Events missing here change nothing
// (ping, installation) and have no horizon.
var eventTimes = map[string][]string{
	"issue_comment": {"comment.created_at", "comment.updated_at"},
	"push":          {"repository.pushed_at"},
	"pull_request":  {"pull_request.updated_at", "pull_request.closed_at"},
	"check_run":     {"check_run.completed_at", "check_run.started_at", "check_run.check_suite.updated_at"},
}

// staleReason says why an event of this kind with this body is too old to
// act on, or "" when it is not.
func staleReason(event string, body []byte, now time.Time) string {
	paths, dated := eventTimes[event]
	if !dated {
		return ""
	}
	at := eventTime(body, paths)
	switch {
	case at.IsZero():
		return "the event carries no time (" + strings.Join(paths, ", ") + ")"
	case now.Sub(at) > maxEventAge:
		return fmt.Sprintf("the event happened at %s, more than %s ago", at.UTC().Format(time.RFC3339), maxEventAge)
	}
	return ""
}

// eventTime is the newest of the times at paths in body (RFC 3339 strings
// or Unix seconds, as a push's repository.pushed_at); zero if none.
func eventTime(body []byte, paths []string) time.Time {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return time.Time{}
	}
	var newest time.Time
	for _, p := range paths {
		var v any = doc
		for _, k := range strings.Split(p, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		var at time.Time
		switch x := v.(type) {
		case string:
			at, _ = time.Parse(time.RFC3339, x)
		case json.Number:
			if secs, err := strconv.ParseInt(string(x), 10, 64); err == nil && secs > 0 {
				at = time.Unix(secs, 0)
			}
		}
		if at.After(newest) {
			newest = at
		}
	}
	return newest
}

// doneRecord is a gh-done value: the delivery that handled a replay key,
// and when it was settled. Records written before the time was kept hold
// the bare delivery id.
type doneRecord struct {
	Delivery string    `json:"delivery"`
	At       time.Time `json:"at"`
}

func readDone(value []byte) doneRecord {
	var r doneRecord
	if json.Unmarshal(value, &r) != nil || r.Delivery == "" {
		return doneRecord{Delivery: string(value)}
	}
	return r
}

// dated is how one pruned bucket's records say when they were written.
type dated struct {
	bucket string
	// at reads a record's time; false when it has none.
	at func(value []byte) (time.Time, bool)
	// restamp rewrites a record that has no time as written at now, so
	// that it is pruned a full pruneAge later instead of kept forever.
	restamp func(value []byte, now time.Time) []byte
}

// pruned are the buckets Prune keeps within the horizon.
var pruned = []dated{
	{bucket: bucketSeen, at: readStamp, restamp: stamp},
	{bucket: bucketReacted, at: readStamp, restamp: stamp},
	{bucket: bucketDone,
		at: func(v []byte) (time.Time, bool) { r := readDone(v); return r.At, !r.At.IsZero() },
		restamp: func(v []byte, now time.Time) []byte {
			r := readDone(v)
			r.At = now.UTC()
			return mustJSON(r)
		}},
}

func stamp(_ []byte, now time.Time) []byte { return []byte(now.UTC().Format(time.RFC3339)) }

func readStamp(v []byte) (time.Time, bool) {
	at, err := time.Parse(time.RFC3339, string(v))
	return at, err == nil
}

// Prune removes the inbox's records (gh-deliveries, gh-done, gh-reacted)
// written more than pruneAge ago (96 hours), and returns how many it
// removed. Records of a delivery still in the inbox (accepted, not yet
// settled) are kept whatever their age. A replay of a pruned delivery is
// still refused: its event is past the horizon (see maxEventAge). A round
// is one unit of work: a panic comes back as an error (a
// *contain.PanicError) and changes nothing else. Safe for concurrent use
// with everything but itself; a server calls it every hour or so.
func (b *Bot) Prune(ctx context.Context) (int, error) {
	var n int
	err := contain.Do(b.log, "inbox pruning", func() (err error) {
		n, err = b.in.prune(ctx)
		return err
	})
	return n, err
}

func (in *inbox) prune(ctx context.Context) (int, error) {
	now := in.now()
	keep, err := in.unsettled()
	if err != nil {
		return 0, err
	}
	var ops []rollout.Op
	for _, d := range pruned {
		recs, err := in.journal.List(d.bucket, 0)
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", d.bucket, err)
		}
		for _, rec := range recs {
			at, ok := d.at(rec.Value)
			switch {
			case keep[d.bucket+"/"+rec.Key]:
			case !ok:
				ops = append(ops, rollout.Put(d.bucket, rec.Key, d.restamp(rec.Value, now)))
			case now.Sub(at) > pruneAge:
				ops = append(ops, rollout.Delete(d.bucket, rec.Key))
			}
		}
	}
	n := 0
	for len(ops) > 0 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		batch := ops[:min(len(ops), pruneBatch)]
		if err := in.journal.Apply(batch...); err != nil {
			return n, fmt.Errorf("prune the inbox's records: %w", err)
		}
		for _, op := range batch {
			if op.Delete {
				n++
			}
		}
		ops = ops[len(batch):]
	}
	if n > 0 {
		in.log.Info("inbox records pruned", "count", n, "older_than", pruneAge.String())
	}
	return n, nil
}

// unsettled names ("bucket/key") the records that deliveries still in the
// inbox rely on: their ids, and the 👀 of their comment.
func (in *inbox) unsettled() (map[string]bool, error) {
	recs, err := in.journal.List(bucketInbox, 0)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", err)
	}
	keep := make(map[string]bool, 2*len(recs))
	for _, rec := range recs {
		var d delivery
		if json.Unmarshal(rec.Value, &d) != nil {
			continue
		}
		keep[bucketSeen+"/"+d.ID] = true
		if r := readRoute(d); d.Event == "issue_comment" && r.Comment.ID != 0 {
			keep[bucketReacted+"/"+reactedKey(r.Repository.FullName, r.Comment.ID)] = true
		}
	}
	return keep, nil
}

// reactedKey is the gh-reacted key of a comment's 👀.
func reactedKey(repo string, commentID int64) string {
	return fmt.Sprintf("%s:%d:eyes", repo, commentID)
}
