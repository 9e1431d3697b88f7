package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout"
)

// rawFile creates a bbolt file shaped by build, as an older sluice would
// have left it, and returns its path.
func rawFile(t *testing.T, build func(tx *bbolt.Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.db")
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if build != nil {
		if err := b.Update(build); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawView runs fn on the file at path, outside the store.
func rawView(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.View(fn); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationListOrdered(t *testing.T) {
	t.Parallel()
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d].version = %d, want %d", i, m.version, i+1)
		}
		if m.name == "" || m.apply == nil {
			t.Errorf("migration %d has no name or apply", m.version)
		}
	}
	if latestSchema() != len(migrations) {
		t.Errorf("latestSchema = %d, want %d", latestSchema(), len(migrations))
	}
}

func TestMigration1CreatesBuckets(t *testing.T) {
	t.Parallel()
	path := rawFile(t, nil) // an empty bbolt file: schema 0
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	from, to, err := migrate(b, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	if from != 0 || to != 1 {
		t.Errorf("migrate = %d→%d, want 0→1", from, to)
	}
	err = b.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketServices, bucketEvents} {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %s missing", name)
			}
		}
		if tx.Bucket(bucketEventsByService) != nil {
			t.Errorf("schema 1 has %s, which belongs to schema 2", bucketEventsByService)
		}
		v, err := readSchema(tx)
		if v != 1 {
			t.Errorf("schema = %d, %v; want 1", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

func TestMigration2IndexesEventsByService(t *testing.T) {
	t.Parallel()
	// A schema-1 file with history: events of a, b and one of no service.
	logged := []rollout.Event{
		{Seq: 1, Service: "a", Kind: rollout.EventVersionCreated, Time: t0},
		{Seq: 2, Service: "b", Kind: rollout.EventVersionCreated, Time: t0},
		{Seq: 3, Service: "", Kind: rollout.EventPolicy, Time: t0},
		{Seq: 4, Service: "a", Kind: rollout.EventPolicy, Time: t0},
	}
	path := rawFile(t, func(tx *bbolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		if err := writeSchema(tx, 1); err != nil {
			return err
		}
		events := tx.Bucket(bucketEvents)
		for _, e := range logged {
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := events.Put(u64Key(e.Seq), v); err != nil {
				return err
			}
		}
		return events.SetSequence(uint64(len(logged)))
	})

	var logs bytes.Buffer
	db, err := Open(path, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("from=1 to=%d", latestSchema()); !strings.Contains(logs.String(), want) {
		t.Errorf("migration log = %q, want %s", logs.String(), want)
	}
	if v, err := db.SchemaVersion(); err != nil || v != latestSchema() {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, latestSchema())
	}
	for _, tc := range []struct {
		service string
		want    []uint64
	}{
		{"a", []uint64{1, 4}},
		{"b", []uint64{2}},
		{"", []uint64{1, 2, 3, 4}},
	} {
		evs, err := db.Events(tc.service, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := []uint64{}
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Events(%q) = %v, want %v", tc.service, got, tc.want)
		}
	}
	// New events keep the old sequence and land in the index too.
	evs := []rollout.Event{{Service: "b", Kind: rollout.EventPolicy, Time: t0}}
	if err := db.Commit(nil, nil, evs); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Events("b", 0, 0); len(got) != 2 || got[1].Seq != 5 {
		t.Errorf("Events(b) after commit = %+v, want seqs 2, 5", got)
	}
	db.Close()

	rawView(t, path, func(tx *bbolt.Tx) error {
		idx := tx.Bucket(bucketEventsByService)
		if idx == nil {
			t.Fatal("no events_by_service bucket")
		}
		var names []string
		_ = idx.ForEach(func(k, _ []byte) error { names = append(names, string(k)); return nil })
		if want := []string{"a", "b"}; !reflect.DeepEqual(names, want) {
			t.Errorf("indexed services = %v, want %v", names, want)
		}
		return nil
	})
}

func TestMigrationStepFailureKeepsEarlierSteps(t *testing.T) {
	t.Parallel()
	path := rawFile(t, nil)
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	boom := errors.New("boom")
	ms := append(append([]migration(nil), migrations...), migration{
		version: latestSchema() + 1,
		name:    "half done",
		apply: func(tx *bbolt.Tx) error {
			if _, err := tx.CreateBucket([]byte("half")); err != nil {
				return err
			}
			return boom
		},
	})
	_, to, err := migrate(b, ms)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "half done") {
		t.Errorf("err = %v, want boom naming the step", err)
	}
	if to != latestSchema() {
		t.Errorf("to = %d, want %d", to, latestSchema())
	}
	_ = b.View(func(tx *bbolt.Tx) error {
		if v, _ := readSchema(tx); v != latestSchema() {
			t.Errorf("schema = %d, want %d", v, latestSchema())
		}
		if tx.Bucket([]byte("half")) != nil {
			t.Error("failed step left its bucket behind")
		}
		return nil
	})
}

func TestOpenMigratesOnce(t *testing.T) {
	t.Parallel()
	db, path := openTemp(t)
	if v, err := db.SchemaVersion(); err != nil || v != latestSchema() {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, latestSchema())
	}
	db.Close()
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	from, to, err := migrate(b, migrations)
	if err != nil || from != latestSchema() || to != from {
		t.Errorf("migrate on a current file = %d→%d, %v; want no step", from, to, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	newer := latestSchema() + 1
	path := rawFile(t, func(tx *bbolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return writeSchema(tx, newer)
	})
	db, err := Open(path, quiet)
	if err == nil {
		db.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want ErrSchemaTooNew naming the file", err)
	}
	// The refused file is untouched and unlocked.
	rawView(t, path, func(tx *bbolt.Tx) error {
		if v, _ := readSchema(tx); v != newer {
			t.Errorf("schema = %d, want %d", v, newer)
		}
		return nil
	})
}

func TestMigration4AssignsTheStoreID(t *testing.T) {
	t.Parallel()
	path := rawFile(t, func(tx *bbolt.Tx) error { // a schema 3 file, as sluice left it before ids
		for _, m := range migrations[:3] {
			if err := m.apply(tx); err != nil {
				return err
			}
		}
		return writeSchema(tx, 3)
	})
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	id := db.ID()
	if len(id) != 16 || !db.PredatesID() {
		t.Errorf("after migration 4: ID %q, PredatesID %v; want 16 hex digits, true", id, db.PredatesID())
	}
	db.Close()
	db, err = Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.ID() != id || db.PredatesID() {
		t.Errorf("reopened: ID %q, PredatesID %v; want %q, false", db.ID(), db.PredatesID(), id)
	}
}
