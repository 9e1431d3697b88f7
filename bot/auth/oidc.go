package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// NotBeforeLeeway is the clock skew allowed on an OIDC token's "nbf".
const NotBeforeLeeway = time.Minute

// githubClaims are the claims of a GitHub Actions ID token that sluice reads.
type githubClaims struct {
	Repository string `json:"repository"`
	NotBefore  *int64 `json:"nbf"`
}

// oidcToken verifies raw as an ID token of the configured issuer for this
// server's audience. The checks run so that each refusal names its cause:
// issuer first (from the unverified payload: a token of another issuer
// cannot verify with this issuer's keys, and "wrong issuer" is the useful
// answer), then the signature, then audience, expiry and claims of the
// verified token.
func (a *Authenticator) oidcToken(ctx context.Context, raw string) (Principal, error) {
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrOIDCMalformed, err)
	}
	if iss != a.issuer {
		return Principal{}, fmt.Errorf("%w: issued by %q, this server trusts %q", ErrOIDCIssuer, iss, a.issuer)
	}
	v, err := a.oidcVerifier(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		// go-oidc prefixes its reason with what this sentinel already says.
		return Principal{}, fmt.Errorf("%w: %s", ErrOIDCSignature, strings.TrimPrefix(err.Error(), "failed to verify signature: "))
	}
	want := strings.TrimRight(a.audience, "/")
	if !slices.ContainsFunc(tok.Audience, func(aud string) bool { return strings.TrimRight(aud, "/") == want }) {
		return Principal{}, fmt.Errorf("%w: %q, want %q (this server's public URL)", ErrOIDCAudience, tok.Audience, a.audience)
	}
	now := time.Now()
	if !now.Before(tok.Expiry) {
		return Principal{}, fmt.Errorf("%w at %s", ErrOIDCExpired, tok.Expiry.UTC().Format(time.RFC3339))
	}
	var c githubClaims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrOIDCClaims, err)
	}
	if c.NotBefore != nil {
		if nbf := time.Unix(*c.NotBefore, 0); now.Add(NotBeforeLeeway).Before(nbf) {
			return Principal{}, fmt.Errorf("%w: not before %s", ErrOIDCNotYetValid, nbf.UTC().Format(time.RFC3339))
		}
	}
	if c.Repository == "" {
		return Principal{}, ErrOIDCClaims
	}
	return Principal{Repo: c.Repository, Via: ViaOIDC, Subject: tok.Subject}, nil
}

// oidcVerifier discovers the issuer on first use and keeps the verifier,
// whose key set refreshes itself when the issuer rotates keys. A failed
// discovery is retried by the next token.
func (a *Authenticator) oidcVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verifier != nil {
		return a.verifier, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.client), a.issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discover %s: %v", ErrOIDCUnavailable, a.issuer, err)
	}
	// Audience and expiry are checked by oidcToken, to say which failed;
	// the key set fetches with a context of its own, not this request's.
	a.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), a.client),
		&oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true})
	return a.verifier, nil
}

// unverifiedIssuer reads the "iss" claim of a compact JWS without checking
// anything else.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("want 3 dot-separated parts, got %d", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("decode payload: %v", err)
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("decode claims: %v", err)
	}
	if c.Issuer == "" {
		return "", fmt.Errorf("no iss claim")
	}
	return c.Issuer, nil
}
