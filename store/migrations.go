package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
)

// migration is one step of the schema. apply runs inside a write
// transaction that also records version as the new schema version; it must
// leave a file of schema version-1 in the shape drawn in doc.go for version.
type migration struct {
	version int
	name    string
	apply   func(tx *bbolt.Tx) error
}

// migrations is the ordered schema history. Append only: a released step is
// never edited, since files in the field have already run it.
var migrations = []migration{
	{version: 1, name: "create buckets", apply: createBuckets},
	{version: 2, name: "index events by service", apply: indexEventsByService},
	{version: 3, name: "create token buckets", apply: createTokenBuckets},
	{version: 4, name: "assign the store id", apply: assignID},
}

// idSchema is the first schema whose files carry meta/id.
const idSchema = 4

// latestSchema is the schema version this code writes.
func latestSchema() int { return migrations[len(migrations)-1].version }

// createBuckets creates the top-level buckets of schema 1.
func createBuckets(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketServices, bucketEvents} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// indexEventsByService creates events_by_service and fills it from the
// events already in the log.
func indexEventsByService(tx *bbolt.Tx) error {
	idx, err := tx.CreateBucketIfNotExists(bucketEventsByService)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketEventsByService, err)
	}
	events := tx.Bucket(bucketEvents)
	if events == nil {
		return fmt.Errorf("find bucket %s: %w", bucketEvents, errMissingBucket)
	}
	return events.ForEach(func(k, v []byte) error {
		var e struct {
			Service string `json:"service"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if e.Service == "" {
			return nil
		}
		b, err := idx.CreateBucketIfNotExists([]byte(e.Service))
		if err != nil {
			return fmt.Errorf("create index of %s: %w", e.Service, err)
		}
		return b.Put(k, []byte{})
	})
}

// assignID gives the file its identity, meta/id: 16 random hex digits.
func assignID(tx *bbolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
	}
	if meta.Get(keyID) != nil {
		return nil
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("draw store id: %w", err)
	}
	if err := meta.Put(keyID, []byte(hex.EncodeToString(id[:]))); err != nil {
		return fmt.Errorf("write store id: %w", err)
	}
	return nil
}

// readID returns meta/id.
func readID(b *bbolt.DB) (string, error) {
	var id string
	err := b.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(keyID) == nil {
			return fmt.Errorf("read store id: %w", errCorrupt)
		}
		id = string(meta.Get(keyID))
		return nil
	})
	return id, err
}

// migrate brings db to the last version of ms, one transaction per step,
// and returns the schema versions before and after. It refuses a file whose
// schema is newer than the last of ms.
func migrate(db *bbolt.DB, ms []migration) (from, to int, err error) {
	err = db.View(func(tx *bbolt.Tx) error {
		from, err = readSchema(tx)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if from > latest {
		return from, from, fmt.Errorf("schema version %d, this sluice knows up to %d: %w", from, latest, ErrSchemaTooNew)
	}
	to = from
	for _, m := range ms {
		if m.version <= to {
			continue
		}
		err := db.Update(func(tx *bbolt.Tx) error {
			if err := m.apply(tx); err != nil {
				return err
			}
			return writeSchema(tx, m.version)
		})
		if err != nil {
			return from, to, fmt.Errorf("migrate schema to %d (%s): %w", m.version, m.name, err)
		}
		to = m.version
	}
	return from, to, nil
}

// readSchema returns the schema version recorded in tx; 0 for a file that
// has none yet (new, or never migrated).
func readSchema(tx *bbolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("read schema version: %d bytes, want 8: %w", len(v), errCorrupt)
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

func writeSchema(tx *bbolt.Tx, version int) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
	}
	if err := meta.Put(keySchema, u64Key(uint64(version))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

var (
	errMissingBucket = errors.New("bucket missing")
	errCorrupt       = errors.New("store corrupt")
)
