package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/names"
	"time"

	"github.com/sluicehq/sluice/rollout"
)

// TokenPrefix starts every sluice token, so a leaked one is recognizable
// (and secret scanners can be taught it).
const TokenPrefix = "sluice_"

// DefaultTokenTTL is how long an issued token lives unless told otherwise.
const DefaultTokenTTL = 720 * time.Hour

// tokenBytes is the entropy of a token: 32 random bytes.
const tokenBytes = 32

var (
	// ErrInvalidRequest is wrapped by Issue when its arguments are wrong.
	ErrInvalidRequest = errors.New("invalid token request")
	// ErrNoTokenStore: the Authenticator was built without a store.
	ErrNoTokenStore = errors.New("this server keeps no tokens")
	// ErrTokenNotFound: Revoke of an id that was never issued.
	ErrTokenNotFound = errors.New("no such token")
)

// HashToken returns the SHA-256 of a token's text: what the store keeps.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// ValidRepo reports whether repo has the GitHub "owner/name" shape.
func ValidRepo(repo string) bool { return rollout.ValidRepo(repo) }

// Issue creates a token for repo (owner/name), narrowed to service when
// that is not "", valid for ttl from now (0: it never expires). It returns
// the token text, which exists nowhere else afterwards (only its hash is
// stored), and the stored record. Not idempotent: every call makes a new
// token.
func (a *Authenticator) Issue(repo, service string, ttl time.Duration) (string, rollout.Token, error) {
	switch {
	case !ValidRepo(repo):
		return "", rollout.Token{}, fmt.Errorf("%w: repo must be OWNER/NAME, got %q", ErrInvalidRequest, repo)
	case service != "" && !names.ValidService(service):
		return "", rollout.Token{}, fmt.Errorf("%w: %q is not a service name", ErrInvalidRequest, service)
	case ttl < 0:
		return "", rollout.Token{}, fmt.Errorf("%w: expiry %s is negative", ErrInvalidRequest, ttl)
	case a.tokens == nil:
		return "", rollout.Token{}, ErrNoTokenStore
	}
	secret := make([]byte, tokenBytes)
	id := make([]byte, 6)
	// crypto/rand.Read never fails (it panics on a broken system source).
	_, _ = rand.Read(secret)
	_, _ = rand.Read(id)
	text := TokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	now := time.Now().UTC()
	rec := rollout.Token{ID: hex.EncodeToString(id), Hash: HashToken(text), Repo: repo, Service: service, Created: now}
	if ttl > 0 {
		rec.Expires = now.Add(ttl)
	}
	if err := a.tokens.CreateToken(rec); err != nil {
		return "", rollout.Token{}, fmt.Errorf("issue token: %w", err)
	}
	return text, rec, nil
}

// Tokens lists every issued token, oldest first, revoked and expired ones
// included. The records hold hashes, never token text.
func (a *Authenticator) Tokens() ([]rollout.Token, error) {
	if a.tokens == nil {
		return nil, ErrNoTokenStore
	}
	return a.tokens.Tokens()
}

// Revoke revokes the token with id, at once and for good, and returns its
// record. Revoking a revoked token succeeds and changes nothing; an unknown
// id wraps ErrTokenNotFound.
func (a *Authenticator) Revoke(id string) (rollout.Token, error) {
	if a.tokens == nil {
		return rollout.Token{}, ErrNoTokenStore
	}
	if err := a.tokens.RevokeToken(id); errors.Is(err, rollout.ErrNotFound) {
		return rollout.Token{}, fmt.Errorf("%w: %q", ErrTokenNotFound, id)
	} else if err != nil {
		return rollout.Token{}, err
	}
	toks, err := a.tokens.Tokens()
	if err != nil {
		return rollout.Token{}, err
	}
	for _, t := range toks {
		if t.ID == id {
			return t, nil
		}
	}
	return rollout.Token{}, fmt.Errorf("%w: %q", ErrTokenNotFound, id)
}
