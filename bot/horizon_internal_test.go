package bot

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
)

// A gh-done record written before records were dated still names its
// delivery, and is dated by the first pruning round instead of being kept
// forever or dropped before its time.
func TestPruneDatesUndatedRecords(t *testing.T) {
	t.Parallel()
	w := enginetest.New(t, t.TempDir())
	now := time.Now()
	b := New(w.Engine, w.DB, nil, Config{}, WithClock(func() time.Time { return now }))
	const key = "comment:o/r:1@2026-01-01T00:00:00Z"
	if err := w.DB.Apply(rollout.Put(bucketDone, key, []byte("legacy-delivery"))); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("first round: %d, %v", n, err)
	}
	data, err := w.DB.Get(bucketDone, key)
	if err != nil {
		t.Fatal(err)
	}
	if r := readDone(data); r.Delivery != "legacy-delivery" || !r.At.Equal(now.UTC().Truncate(0)) {
		t.Fatalf("after the first round: %+v", r)
	}
	now = now.Add(pruneAge + time.Minute)
	if n, err := b.Prune(context.Background()); err != nil || n != 1 {
		t.Fatalf("a horizon later: %d, %v", n, err)
	}
}
