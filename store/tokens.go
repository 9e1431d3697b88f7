package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout"
)

// Token buckets (schema 3):
//
//	tokens/
//	    <id>                        → JSON TokenRecord, with its hash as hex under "sha256"
//	tokens_by_hash/
//	    <SHA-256, 32 bytes>         → <id>
//
// The token text itself is never stored; a presented token is hashed and
// looked up in tokens_by_hash.
var (
	bucketTokens       = []byte("tokens")
	bucketTokensByHash = []byte("tokens_by_hash")
)

// ErrTokenExists is returned (wrapped) by CreateToken when a token with the
// same id or the same hash is already stored.
var ErrTokenExists = errors.New("token already exists")

// TokenRecord is rollout.Token, kept under the name this file grew with.
type TokenRecord = rollout.Token

// storedToken is the JSON value of tokens/<id>.
type storedToken struct {
	TokenRecord
	SHA256 string `json:"sha256"`
}

// createTokenBuckets creates the token buckets of schema 3.
func createTokenBuckets(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketTokens, bucketTokensByHash} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// CreateToken stores t. Its ID, Repo and Hash must be set; a token whose
// ID or Hash is already stored is refused with ErrTokenExists, so creating
// is not idempotent. Safe for concurrent use.
func (db *DB) CreateToken(t TokenRecord) error {
	switch {
	case t.ID == "":
		return errors.New("create token: empty id")
	case t.Repo == "":
		return fmt.Errorf("create token %s: empty repo", t.ID)
	case t.Hash == [32]byte{}:
		return fmt.Errorf("create token %s: empty hash", t.ID)
	}
	v, err := json.Marshal(storedToken{TokenRecord: t, SHA256: hex.EncodeToString(t.Hash[:])})
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	err = db.bolt.Update(func(tx *bbolt.Tx) error {
		tokens, err := topBucket(tx, bucketTokens)
		if err != nil {
			return err
		}
		byHash, err := topBucket(tx, bucketTokensByHash)
		if err != nil {
			return err
		}
		if tokens.Get([]byte(t.ID)) != nil || byHash.Get(t.Hash[:]) != nil {
			return ErrTokenExists
		}
		if err := tokens.Put([]byte(t.ID), v); err != nil {
			return err
		}
		return byHash.Put(t.Hash[:], []byte(t.ID))
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// TokenByHash returns the token whose text hashes to hash, revoked or
// expired ones included (the caller decides what they mean), or an error
// wrapping rollout.ErrNotFound.
func (db *DB) TokenByHash(hash [32]byte) (TokenRecord, error) {
	var t TokenRecord
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		byHash, err := topBucket(tx, bucketTokensByHash)
		if err != nil {
			return err
		}
		id := byHash.Get(hash[:])
		if id == nil {
			return rollout.ErrNotFound
		}
		t, err = getToken(tx, id)
		return err
	})
	if err != nil {
		return TokenRecord{}, fmt.Errorf("find token by hash: %w", err)
	}
	return t, nil
}

// Tokens returns every stored token, revoked and expired ones included,
// oldest first.
func (db *DB) Tokens() ([]TokenRecord, error) {
	out := []TokenRecord{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		tokens, err := topBucket(tx, bucketTokens)
		if err != nil {
			return err
		}
		return tokens.ForEach(func(k, _ []byte) error {
			t, err := getToken(tx, k)
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RevokeToken marks the token revoked now. Revoking a revoked token keeps
// its first revocation time and succeeds (idempotent); an unknown id fails
// with an error wrapping rollout.ErrNotFound. The record is kept, so
// listings still show it.
func (db *DB) RevokeToken(id string) error {
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		t, err := getToken(tx, []byte(id))
		if err != nil {
			return err
		}
		if !t.Revoked.IsZero() {
			return nil
		}
		t.Revoked = time.Now().UTC()
		v, err := json.Marshal(storedToken{TokenRecord: t, SHA256: hex.EncodeToString(t.Hash[:])})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketTokens).Put([]byte(id), v)
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// getToken decodes tokens/<id>, or returns rollout.ErrNotFound.
func getToken(tx *bbolt.Tx, id []byte) (TokenRecord, error) {
	tokens, err := topBucket(tx, bucketTokens)
	if err != nil {
		return TokenRecord{}, err
	}
	v := tokens.Get(id)
	if v == nil {
		return TokenRecord{}, rollout.ErrNotFound
	}
	var st storedToken
	if err := json.Unmarshal(v, &st); err != nil {
		return TokenRecord{}, fmt.Errorf("decode token %s: %w", id, err)
	}
	h, err := hex.DecodeString(st.SHA256)
	if err != nil || len(h) != len(st.Hash) {
		return TokenRecord{}, fmt.Errorf("decode token %s: bad hash: %w", id, errCorrupt)
	}
	copy(st.Hash[:], h)
	return st.TokenRecord, nil
}
