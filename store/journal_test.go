package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/rollout"
)

func TestJournal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get("inbox", "x"); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("get from a missing bucket: %v", err)
	}
	if recs, err := db.List("inbox", 0); err != nil || len(recs) != 0 {
		t.Fatalf("list a missing bucket: %v %v", recs, err)
	}
	// A delivery is accepted once, and with it its queue entry.
	for i, want := range []bool{true, false} {
		added, err := db.PutIfAbsent("seen", "d1", []byte("1"), rollout.Append("inbox", []byte("payload")))
		if err != nil || added != want {
			t.Fatalf("attempt %d: added=%v err=%v", i, added, err)
		}
	}
	if err := db.Apply(rollout.Append("inbox", []byte("second")), rollout.Put("cursor", "events", []byte("7"))); err != nil {
		t.Fatal(err)
	}
	recs, _ := db.List("inbox", 0)
	if len(recs) != 2 || string(recs[0].Value) != "payload" || string(recs[1].Value) != "second" || recs[0].Key >= recs[1].Key {
		t.Fatalf("inbox: %+v", recs)
	}
	// A failing op rolls the whole transaction back.
	err = db.Apply(rollout.Delete("inbox", recs[0].Key), rollout.Op{Bucket: "cursor"})
	if err == nil {
		t.Fatal("op without a key accepted")
	}
	if recs2, _ := db.List("inbox", 0); len(recs2) != 2 {
		t.Fatalf("partial apply: %+v", recs2)
	}
	if err := db.Apply(rollout.Delete("inbox", recs[0].Key)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, _ = db.List("inbox", 1)
	v, err := db.Get("cursor", "events")
	if len(recs) != 1 || string(recs[0].Value) != "second" || string(v) != "7" || err != nil {
		t.Fatalf("after reopen: %+v %q %v", recs, v, err)
	}
}
