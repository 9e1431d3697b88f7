package store

import (
	"bytes"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout"
)

var bucketJournal = []byte("journal")

var _ rollout.Journal = (*DB)(nil)

// journalBucket returns journal/<name>, creating it when create is set; nil
// when it does not exist and create is not set.
func journalBucket(tx *bbolt.Tx, name string, create bool) (*bbolt.Bucket, error) {
	if name == "" {
		return nil, errors.New("journal bucket name is empty")
	}
	if !create {
		j := tx.Bucket(bucketJournal)
		if j == nil {
			return nil, nil
		}
		return j.Bucket([]byte(name)), nil
	}
	j, err := tx.CreateBucketIfNotExists(bucketJournal)
	if err != nil {
		return nil, fmt.Errorf("create journal bucket: %w", err)
	}
	b, err := j.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("create journal bucket %s: %w", name, err)
	}
	return b, nil
}

// Get returns a journal value, or rollout.ErrNotFound.
func (db *DB) Get(bucket, key string) ([]byte, error) {
	var out []byte
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b, err := journalBucket(tx, bucket, false)
		if err != nil {
			return err
		}
		var v []byte
		if b != nil {
			v = b.Get([]byte(key))
		}
		if v == nil {
			return fmt.Errorf("journal %s/%s: %w", bucket, key, rollout.ErrNotFound)
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// List returns up to limit records of a journal bucket in key order.
func (db *DB) List(bucket string, limit int) ([]rollout.Record, error) {
	out := []rollout.Record{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b, err := journalBucket(tx, bucket, false)
		if err != nil || b == nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			out = append(out, rollout.Record{Key: string(k), Value: bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list journal %s: %w", bucket, err)
	}
	return out, nil
}

// Apply performs ops in one transaction.
func (db *DB) Apply(ops ...rollout.Op) error {
	if err := db.bolt.Update(func(tx *bbolt.Tx) error { return applyOps(tx, ops) }); err != nil {
		return fmt.Errorf("apply journal ops: %w", err)
	}
	return nil
}

// PutIfAbsent stores value under key unless it exists, applying ops with it.
func (db *DB) PutIfAbsent(bucket, key string, value []byte, ops ...rollout.Op) (bool, error) {
	added := false
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		b, err := journalBucket(tx, bucket, true)
		if err != nil {
			return err
		}
		if b.Get([]byte(key)) != nil {
			return nil
		}
		if err := b.Put([]byte(key), value); err != nil {
			return err
		}
		added = true
		return applyOps(tx, ops)
	})
	if err != nil {
		return false, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return added, nil
}

func applyOps(tx *bbolt.Tx, ops []rollout.Op) error {
	for _, op := range ops {
		b, err := journalBucket(tx, op.Bucket, true)
		if err != nil {
			return err
		}
		switch {
		case op.Delete:
			err = b.Delete([]byte(op.Key))
		case op.Append:
			seq, serr := b.NextSequence()
			if serr != nil {
				return serr
			}
			err = b.Put([]byte(fmt.Sprintf("%016x", seq)), op.Value)
		default:
			if op.Key == "" {
				return fmt.Errorf("journal op on %s without a key", op.Bucket)
			}
			err = b.Put([]byte(op.Key), op.Value)
		}
		if err != nil {
			return fmt.Errorf("journal %s: %w", op.Bucket, err)
		}
	}
	return nil
}
