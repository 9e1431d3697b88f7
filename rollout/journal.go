package rollout

// Journal is durable storage for the front doors' own work: accepted
// webhook deliveries, the outbox of calls to GitHub, cursors, and small
// records such as a pull request's sticky comment. Values are opaque bytes
// owned by the caller; buckets are created on first write. The store
// implements it beside Store so that a front door's bookkeeping lives in
// the same file, with the same durability, as the state it reports on.
// Implementations are safe for concurrent use; Apply is atomic.
type Journal interface {
	// Get returns a value, or ErrNotFound.
	Get(bucket, key string) ([]byte, error)
	// List returns up to limit records of bucket in key order (limit <= 0:
	// all). Sequence keys given by Append sort in append order.
	List(bucket string, limit int) ([]Record, error)
	// Apply performs every op in one transaction, in order.
	Apply(ops ...Op) error
	// PutIfAbsent stores value under key unless the key exists, and in the
	// same transaction applies ops; it reports whether it stored anything
	// (false: nothing was changed).
	PutIfAbsent(bucket, key string, value []byte, ops ...Op) (bool, error)
}

// Record is one key and value of a Journal bucket.
type Record struct {
	Key   string
	Value []byte
}

// Op is one change in a Journal transaction.
type Op struct {
	Bucket string
	// Key names the record. With Append it is ignored: the journal assigns
	// the next sequence key (16 hex digits, so keys sort in append order).
	Key   string
	Value []byte
	// Delete removes Key (Value is ignored).
	Delete bool
	Append bool
}

// Put returns an op storing value under key.
func Put(bucket, key string, value []byte) Op { return Op{Bucket: bucket, Key: key, Value: value} }

// Delete returns an op removing key.
func Delete(bucket, key string) Op { return Op{Bucket: bucket, Key: key, Delete: true} }

// Append returns an op adding value under the next sequence key.
func Append(bucket string, value []byte) Op { return Op{Bucket: bucket, Value: value, Append: true} }
