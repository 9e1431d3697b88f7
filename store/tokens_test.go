package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/rollout"
)

func tokenRecord(id, secret string) TokenRecord {
	return TokenRecord{ID: id, Hash: sha256.Sum256([]byte(secret)), Repo: "acme/web",
		Created: t0, Expires: t0.Add(720 * time.Hour)}
}

func TestMigration3CreatesTokenBuckets(t *testing.T) {
	t.Parallel()
	// A schema-2 file with a service in it, as sluice left it before tokens.
	path := rawFile(t, func(tx *bbolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		if err := indexEventsByService(tx); err != nil {
			return err
		}
		if err := putService(tx.Bucket(bucketServices), &rollout.Service{Name: "web", NextSeq: 1}); err != nil {
			return err
		}
		return writeSchema(tx, 2)
	})
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.SchemaVersion(); err != nil || v != latestSchema() {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, latestSchema())
	}
	if toks, err := db.Tokens(); err != nil || len(toks) != 0 {
		t.Errorf("Tokens on a migrated file = %v, %v; want none", toks, err)
	}
	if err := db.CreateToken(tokenRecord("a", "sluice_a")); err != nil {
		t.Errorf("CreateToken on a migrated file: %v", err)
	}
	if _, err := db.Service("web"); err != nil {
		t.Errorf("service lost by the migration: %v", err)
	}
	db.Close()
	rawView(t, path, func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketTokens, bucketTokensByHash} {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %s missing", name)
			}
		}
		return nil
	})
}

func TestCreateTokenStoresOnlyTheHash(t *testing.T) {
	t.Parallel()
	db, path := openTemp(t)
	const secret = "sluice_c2VjcmV0LXRleHQtdGhhdC1tdXN0LW5vdC1sZWFr"
	rec := tokenRecord("k1", secret)
	rec.Service = "web"
	if err := db.CreateToken(rec); err != nil {
		t.Fatal(err)
	}
	got, err := db.TokenByHash(sha256.Sum256([]byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("TokenByHash = %+v, want %+v", got, rec)
	}
	db.Close()
	rawView(t, path, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketTokens).Get([]byte("k1"))
		if bytes.Contains(v, []byte(secret)) || bytes.Contains(v, []byte(strings.TrimPrefix(secret, "sluice_"))) {
			t.Errorf("tokens/k1 holds the token text: %s", v)
		}
		if !bytes.Contains(v, []byte(hex.EncodeToString(rec.Hash[:]))) {
			t.Errorf("tokens/k1 = %s, want the hash as hex", v)
		}
		if id := tx.Bucket(bucketTokensByHash).Get(rec.Hash[:]); string(id) != "k1" {
			t.Errorf("tokens_by_hash = %q, want k1", id)
		}
		return nil
	})
}

func TestTokenRecordJSONHasNoHash(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(tokenRecord("k1", "sluice_x"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hash") || strings.Contains(string(b), "sha256") || strings.Contains(string(b), "revoked") {
		t.Errorf("TokenRecord JSON = %s, want no hash and no zero revoked", b)
	}
}

func TestCreateTokenRefuses(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	if err := db.CreateToken(tokenRecord("k1", "sluice_one")); err != nil {
		t.Fatal(err)
	}
	noHash := tokenRecord("k3", "x")
	noHash.Hash = [32]byte{}
	noRepo := tokenRecord("k4", "sluice_four")
	noRepo.Repo = ""
	for _, tc := range []struct {
		name     string
		rec      TokenRecord
		sentinel error
		inErr    string
	}{
		{"same id", tokenRecord("k1", "sluice_two"), ErrTokenExists, "k1"},
		{"same hash", tokenRecord("k2", "sluice_one"), ErrTokenExists, "k2"},
		{"no id", tokenRecord("", "sluice_five"), nil, "empty id"},
		{"no hash", noHash, nil, "empty hash"},
		{"no repo", noRepo, nil, "empty repo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.CreateToken(tc.rec)
			if err == nil || (tc.sentinel != nil && !errors.Is(err, tc.sentinel)) || !strings.Contains(err.Error(), tc.inErr) {
				t.Errorf("CreateToken = %v, want an error with %q", err, tc.inErr)
			}
		})
	}
	toks, err := db.Tokens()
	if err != nil || len(toks) != 1 || toks[0].ID != "k1" {
		t.Errorf("Tokens after refusals = %+v, %v; want k1 only", toks, err)
	}
}

func TestTokensListedOldestFirst(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	for i, id := range []string{"zz", "aa", "mm"} {
		rec := tokenRecord(id, "sluice_"+id)
		rec.Created = t0.Add(time.Duration(i) * time.Minute)
		if err := db.CreateToken(rec); err != nil {
			t.Fatal(err)
		}
	}
	toks, err := db.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range toks {
		ids = append(ids, tk.ID)
		if tk.Hash != sha256.Sum256([]byte("sluice_"+tk.ID)) {
			t.Errorf("token %s: hash not read back", tk.ID)
		}
	}
	if want := []string{"zz", "aa", "mm"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Tokens = %v, want %v", ids, want)
	}
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	rec := tokenRecord("k1", "sluice_one")
	if err := db.CreateToken(rec); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := db.RevokeToken("k1"); err != nil {
		t.Fatal(err)
	}
	got, err := db.TokenByHash(rec.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revoked.Before(before.Add(-time.Second)) || got.Revoked.After(time.Now()) {
		t.Errorf("Revoked = %v, want about now", got.Revoked)
	}
	// Revoking again succeeds and keeps the first time.
	if err := db.RevokeToken("k1"); err != nil {
		t.Errorf("second RevokeToken = %v, want nil", err)
	}
	if again, _ := db.TokenByHash(rec.Hash); !again.Revoked.Equal(got.Revoked) {
		t.Errorf("second revoke moved the time: %v → %v", got.Revoked, again.Revoked)
	}
	if err := db.RevokeToken("nope"); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := db.TokenByHash(sha256.Sum256([]byte("sluice_other"))); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) = %v, want ErrNotFound", err)
	}
}
