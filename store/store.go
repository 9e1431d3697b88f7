package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sluicehq/sluice/rollout"
)

// DefaultLockTimeout is how long Open waits for the file lock held by
// another process before giving up.
const DefaultLockTimeout = 2 * time.Second

// DefaultEventsLimit is the page size Events uses when asked for limit <= 0.
const DefaultEventsLimit = 1000

var (
	// ErrLocked is returned (wrapped) by Open when another process holds the
	// file, typically a second sluice on the same data directory.
	ErrLocked = errors.New("file is locked by another process (is another sluice using this data directory?)")
	// ErrSchemaTooNew is returned (wrapped) by Open when the file was written
	// by a newer sluice than this one.
	ErrSchemaTooNew = errors.New("schema is newer than this sluice supports; upgrade sluice")
)

var (
	bucketMeta            = []byte("meta")
	bucketServices        = []byte("services")
	bucketEvents          = []byte("events")
	bucketEventsByService = []byte("events_by_service")
	bucketVersions        = []byte("versions")
	bucketNames           = []byte("names")
	keySchema             = []byte("schema")
	keyID                 = []byte("id")
	keyRecord             = []byte("record")
)

// DB is a rollout.Store kept in one bbolt file. It is safe for concurrent
// use; every method is one bbolt transaction, durable when it returns.
type DB struct {
	bolt *bbolt.DB
	path string
	id   string // meta/id
	from int    // schema version the file had when opened
}

var _ rollout.Store = (*DB)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	logger      *slog.Logger
	evidence    string // WithExpectData
	backup      bool   // WithBackup
}

// WithLockTimeout sets how long Open waits for another process to release
// the file before failing with ErrLocked. d <= 0 keeps DefaultLockTimeout:
// Open never waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// WithLogger sets the logger Open reports applied migrations to; the
// default is slog.Default(). A nil logger keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Open opens the bbolt file at path, creating it if needed, takes its
// exclusive lock (waiting at most the lock timeout, then failing with
// ErrLocked) and applies pending migrations. A file whose schema is newer
// than this code fails with ErrSchemaTooNew.
//
// Before trusting the file Open restricts it to its owner (0600, with a
// warning when it was looser), refuses one that cannot be read
// (ErrUnreadable) or, under WithExpectData, is empty (ErrEmpty), and reads
// every bucket, key and value: a damaged file fails with ErrCorrupt, as one
// line that names `bbolt check` and the backup, never as a panic. Errors
// name the file. The caller must Close the DB to release the lock.
func Open(path string, opts ...Option) (*DB, error) {
	o := options{lockTimeout: DefaultLockTimeout, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := preflight(path, o); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	b, err := openBolt(path, &bbolt.Options{Timeout: o.lockTimeout})
	var pe errPanic
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: gave up after %s: %w", path, o.lockTimeout, ErrLocked)
	case errors.As(err, &pe) || (err != nil && isCorruption(err)):
		return nil, fmt.Errorf("open store %s: %w", path, corrupt(path, err))
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := walk(b); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open store %s: %w", path, corrupt(path, err))
	}
	if o.backup {
		if err := backup(b, path, o.logger); err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}
	from, to, err := migrate(b, migrations)
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if from != to {
		o.logger.Info("store schema migrated", "path", path, "from", from, "to", to)
	}
	db := &DB{bolt: b, path: path, from: from}
	if db.id, err = readID(b); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// Close releases the file and its lock. Using the DB afterwards fails.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", db.path, err)
	}
	return nil
}

// ID returns the identity of this store file: drawn at random when the
// file is created (or first opened by a sluice that knows ids) and never
// changed. A runtime keys what it keeps on disk by it, so a store started
// afresh never meets a build of a previous store's version of the same
// name.
func (db *DB) ID() string { return db.id }

// PredatesID reports whether the file held data before it was given its
// ID in this Open: what a runtime kept for it until now is keyed by
// version name alone, and belongs to it.
func (db *DB) PredatesID() bool { return db.from > 0 && db.from < idSchema }

// SchemaVersion returns the schema version recorded in the file.
func (db *DB) SchemaVersion() (int, error) {
	var v int
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = readSchema(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Services returns every service record, sorted by name. Services that
// have versions but no record yet are left out.
func (db *DB) Services() ([]rollout.Service, error) {
	out := []rollout.Service{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		services, err := topBucket(tx, bucketServices)
		if err != nil {
			return err
		}
		c := services.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil { // not a bucket
				continue
			}
			rec := services.Bucket(k).Get(keyRecord)
			if rec == nil {
				continue
			}
			var s rollout.Service
			if err := json.Unmarshal(rec, &s); err != nil {
				return fmt.Errorf("decode service %s: %w", k, err)
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return out, nil
}

// Service returns the record of the named service, or an error wrapping
// rollout.ErrNotFound.
func (db *DB) Service(name string) (rollout.Service, error) {
	var s rollout.Service
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b, err := serviceBucket(tx, name)
		if err != nil {
			return err
		}
		var rec []byte
		if b != nil {
			rec = b.Get(keyRecord)
		}
		if rec == nil {
			return rollout.ErrNotFound
		}
		return json.Unmarshal(rec, &s)
	})
	if err != nil {
		return rollout.Service{}, fmt.Errorf("get service %s: %w", name, err)
	}
	return s, nil
}

// Versions returns the service's versions in creation (Seq) order; empty,
// not an error, for an unknown service.
func (db *DB) Versions(service string) ([]rollout.Version, error) {
	out := []rollout.Version{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b, err := serviceBucket(tx, service)
		if err != nil || b == nil {
			return err
		}
		vb := b.Bucket(bucketVersions)
		if vb == nil {
			return nil
		}
		return vb.ForEach(func(k, v []byte) error {
			var ver rollout.Version
			if err := json.Unmarshal(v, &ver); err != nil {
				return fmt.Errorf("decode version %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, ver)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", service, err)
	}
	return out, nil
}

// Version returns the named version of service, or an error wrapping
// rollout.ErrNotFound.
func (db *DB) Version(service, name string) (rollout.Version, error) {
	var ver rollout.Version
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b, err := serviceBucket(tx, service)
		if err != nil {
			return err
		}
		if b == nil {
			return rollout.ErrNotFound
		}
		names, vb := b.Bucket(bucketNames), b.Bucket(bucketVersions)
		if names == nil || vb == nil {
			return rollout.ErrNotFound
		}
		seq := names.Get([]byte(name))
		if seq == nil {
			return rollout.ErrNotFound
		}
		v := vb.Get(seq)
		if v == nil {
			return fmt.Errorf("version indexed but missing: %w", errCorrupt)
		}
		return json.Unmarshal(v, &ver)
	})
	if err != nil {
		return rollout.Version{}, fmt.Errorf("get version %s/%s: %w", service, name, err)
	}
	return ver, nil
}

// Commit writes svc (when not nil), every version, and appends events, in
// one transaction: all of it is durable when Commit returns nil, none of it
// is written when it returns an error. Each event gets the next global
// sequence number, stored in its JSON and, once committed, written back to
// events[i].Seq. A version may be committed before its service has a
// record. A version's Seq is its identity: re-committing a name with
// another Seq, or a Seq under another name, is refused.
func (db *DB) Commit(svc *rollout.Service, versions []rollout.Version, events []rollout.Event) error {
	if svc == nil && len(versions) == 0 && len(events) == 0 {
		return nil
	}
	var seqs []uint64
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		var err error
		seqs, err = commit(tx, svc, versions, events)
		return err
	})
	if err != nil {
		return fmt.Errorf("commit changes: %w", err)
	}
	for i := range events {
		events[i].Seq = seqs[i]
	}
	return nil
}

// commit is the body of Commit's transaction; it returns the sequence
// numbers given to events, in order.
func commit(tx *bbolt.Tx, svc *rollout.Service, versions []rollout.Version, events []rollout.Event) ([]uint64, error) {
	services, err := topBucket(tx, bucketServices)
	if err != nil {
		return nil, err
	}
	if svc != nil {
		if err := putService(services, svc); err != nil {
			return nil, fmt.Errorf("put service %s: %w", svc.Name, err)
		}
	}
	for i := range versions {
		if err := putVersion(services, &versions[i]); err != nil {
			return nil, fmt.Errorf("put version %s: %w", versions[i].Name, err)
		}
	}
	log, err := topBucket(tx, bucketEvents)
	if err != nil {
		return nil, err
	}
	idx, err := topBucket(tx, bucketEventsByService)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, len(events))
	for i := range events {
		seq, err := appendEvent(log, idx, events[i])
		if err != nil {
			return nil, fmt.Errorf("append event %s: %w", events[i].Kind, err)
		}
		seqs[i] = seq
	}
	return seqs, nil
}

func putService(services *bbolt.Bucket, svc *rollout.Service) error {
	if svc.Name == "" {
		return errors.New("empty service name")
	}
	v, err := json.Marshal(svc)
	if err != nil {
		return err
	}
	b, err := services.CreateBucketIfNotExists([]byte(svc.Name))
	if err != nil {
		return err
	}
	return b.Put(keyRecord, v)
}

func putVersion(services *bbolt.Bucket, ver *rollout.Version) error {
	switch {
	case ver.Service == "":
		return errors.New("empty service name")
	case ver.Name == "":
		return errors.New("empty version name")
	case ver.Seq < 0:
		return fmt.Errorf("negative seq %d", ver.Seq)
	}
	v, err := json.Marshal(ver)
	if err != nil {
		return err
	}
	b, err := services.CreateBucketIfNotExists([]byte(ver.Service))
	if err != nil {
		return err
	}
	vb, err := b.CreateBucketIfNotExists(bucketVersions)
	if err != nil {
		return err
	}
	names, err := b.CreateBucketIfNotExists(bucketNames)
	if err != nil {
		return err
	}
	key := u64Key(uint64(ver.Seq))
	switch have := names.Get([]byte(ver.Name)); {
	case have != nil && !bytes.Equal(have, key):
		return fmt.Errorf("already stored with seq %d, not %d", binary.BigEndian.Uint64(have), ver.Seq)
	case have == nil && vb.Get(key) != nil:
		return fmt.Errorf("seq %d already belongs to another version", ver.Seq)
	}
	if err := vb.Put(key, v); err != nil {
		return err
	}
	return names.Put([]byte(ver.Name), key)
}

func appendEvent(log, idx *bbolt.Bucket, e rollout.Event) (uint64, error) {
	seq, err := log.NextSequence()
	if err != nil {
		return 0, err
	}
	e.Seq = seq
	v, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	key := u64Key(seq)
	if err := log.Put(key, v); err != nil {
		return 0, err
	}
	if e.Service == "" {
		return seq, nil
	}
	b, err := idx.CreateBucketIfNotExists([]byte(e.Service))
	if err != nil {
		return 0, err
	}
	return seq, b.Put(key, []byte{})
}

// Events returns, oldest first, up to limit events with Seq greater than
// after: every service's when service is "", else only that service's.
// limit <= 0 means DefaultEventsLimit. To page, pass the last Seq seen as
// after.
func (db *DB) Events(service string, after uint64, limit int) ([]rollout.Event, error) {
	if after == math.MaxUint64 {
		return []rollout.Event{}, nil
	}
	return db.events(service, limit, func(c *bbolt.Cursor) ([]byte, func() ([]byte, []byte)) {
		k, _ := c.Seek(u64Key(after + 1))
		return k, c.Next
	})
}

// LatestEvents returns the newest limit events with Seq less than before
// (any Seq when before is 0), of every service when service is "", else
// only that service's; the page is oldest first, like Events. limit <= 0
// means DefaultEventsLimit. To page back, pass the first Seq seen as
// before.
func (db *DB) LatestEvents(service string, before uint64, limit int) ([]rollout.Event, error) {
	if before == 1 {
		return []rollout.Event{}, nil
	}
	evs, err := db.events(service, limit, func(c *bbolt.Cursor) ([]byte, func() ([]byte, []byte)) {
		if before == 0 {
			k, _ := c.Last()
			return k, c.Prev
		}
		// Seek lands on the first key >= before, or past the end.
		if k, _ := c.Seek(u64Key(before)); k == nil {
			k, _ = c.Last()
			return k, c.Prev
		}
		k, _ := c.Prev()
		return k, c.Prev
	})
	slices.Reverse(evs)
	return evs, err
}

// events walks the log (or service's index of it) from the key first
// returns, with the step it returns, collecting up to limit events.
func (db *DB) events(service string, limit int, walk func(*bbolt.Cursor) (first []byte, step func() ([]byte, []byte))) ([]rollout.Event, error) {
	if limit <= 0 {
		limit = DefaultEventsLimit
	}
	out := []rollout.Event{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		log, err := topBucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		b := log
		if service != "" {
			idx, err := topBucket(tx, bucketEventsByService)
			if err != nil {
				return err
			}
			if b = idx.Bucket([]byte(service)); b == nil {
				return nil
			}
		}
		k, step := walk(b.Cursor())
		for ; k != nil && len(out) < limit; k, _ = step() {
			v := log.Get(k)
			if v == nil {
				return fmt.Errorf("event %d indexed but missing: %w", binary.BigEndian.Uint64(k), errCorrupt)
			}
			var e rollout.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// DeleteVersion removes version name of service (its record and its name
// index entry) and appends events, in one transaction. rollout.ErrNotFound
// when there is no such version.
func (db *DB) DeleteVersion(service, name string, events []rollout.Event) error {
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		services, err := topBucket(tx, bucketServices)
		if err != nil {
			return err
		}
		b := services.Bucket([]byte(service))
		if b == nil {
			return rollout.ErrNotFound
		}
		names, vb := b.Bucket(bucketNames), b.Bucket(bucketVersions)
		if names == nil || vb == nil {
			return rollout.ErrNotFound
		}
		key := names.Get([]byte(name))
		if key == nil {
			return rollout.ErrNotFound
		}
		if err := vb.Delete(key); err != nil {
			return err
		}
		if err := names.Delete([]byte(name)); err != nil {
			return err
		}
		log, err := topBucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		idx, err := topBucket(tx, bucketEventsByService)
		if err != nil {
			return err
		}
		for _, e := range events {
			if _, err := appendEvent(log, idx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete version %s/%s: %w", service, name, err)
	}
	return nil
}

// topBucket returns a top-level bucket, which migrations guarantee.
func topBucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("find bucket %s: %w", name, errMissingBucket)
	}
	return b, nil
}

// serviceBucket returns services/<name>, or nil when the service has
// nothing stored.
func serviceBucket(tx *bbolt.Tx, name string) (*bbolt.Bucket, error) {
	services, err := topBucket(tx, bucketServices)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, nil
	}
	return services.Bucket([]byte(name)), nil
}

func u64Key(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}
