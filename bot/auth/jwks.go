package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWKSRefetchInterval is the least time between two fetches of the
// issuer's signing keys. A token signed with a key id the cached set lacks
// triggers a fetch only when the last one is older than this, so a flood
// of forged tokens (random key ids, wrong signatures) costs the issuer at
// most one request per interval, while a real key rotation is picked up
// within it.
const JWKSRefetchInterval = time.Minute

// maxJWKSBytes caps the issuer's key set document.
const maxJWKSBytes = 1 << 20

// signingAlgs are the algorithms a key set may verify; the verifier
// narrows them further to what the issuer announces.
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// keySet is the issuer's signing keys, fetched from its jwks_uri and
// refetched at most once per JWKSRefetchInterval. It implements
// oidc.KeySet. Safe for concurrent use.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // zero until the first fetch succeeded or failed
}

// VerifySignature verifies a compact JWS with the cached keys, fetching
// them first when the token names a key id the cache lacks and the last
// fetch is old enough.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.keysFor(ctx, kid)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, nil
			}
		}
	}
	if kid != "" && !hasKey(keys, kid) {
		return nil, fmt.Errorf("the issuer has no signing key %q", kid)
	}
	return nil, errors.New("signature does not verify with the issuer's keys")
}

// keysFor returns the keys to try for kid, refreshing the cache when kid
// is unknown and the rate limit allows. The lock is held over the fetch:
// concurrent tokens wait for one fetch instead of starting their own.
func (k *keySet) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	known := kid != "" && hasKey(k.keys, kid)
	if known || (!k.fetched.IsZero() && k.now().Sub(k.fetched) < JWKSRefetchInterval) {
		return k.keys, nil
	}
	k.fetched = k.now()
	keys, err := k.fetch(ctx)
	if err != nil {
		if len(k.keys) > 0 {
			return k.keys, nil // keep verifying with what we have
		}
		return nil, err
	}
	k.keys = keys
	return keys, nil
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	for _, key := range keys {
		if key.KeyID == kid {
			return true
		}
	}
	return false
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch signing keys: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch signing keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch signing keys from %s: %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode signing keys from %s: %w", k.url, err)
	}
	return set.Keys, nil
}
