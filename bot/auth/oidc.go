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
	"github.com/go-jose/go-jose/v4"
)

// ClockLeeway is the clock skew allowed on an OIDC token's times: "nbf"
// and "iat" may be this far ahead of sluice's clock, "exp" this far behind.
const ClockLeeway = time.Minute

// DefaultMaxTokenLifetime bounds exp - iat of an OIDC token. GitHub mints
// Actions ID tokens that live minutes; a token meant to live longer is not
// one of them, and a stolen one must not stay useful for long.
const DefaultMaxTokenLifetime = time.Hour

// githubClaims are the claims of a GitHub Actions ID token that sluice reads.
type githubClaims struct {
	Repository        string     `json:"repository"`
	RepositoryID      flexString `json:"repository_id"`
	RepositoryOwner   string     `json:"repository_owner"`
	RepositoryOwnerID flexString `json:"repository_owner_id"`
	Actor             string     `json:"actor"`
	IssuedAt          *int64     `json:"iat"`
	NotBefore         *int64     `json:"nbf"`
}

// flexString reads a JSON string or number as its text: GitHub sends ids
// as strings, other issuers may send numbers.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %s", b)
	}
	*f = flexString(n.String())
	return nil
}

// oidcToken verifies raw as an ID token of the configured issuer for this
// server's audience, minted by a workflow of a repository the allow list
// names. The checks run so that each refusal names its cause: issuer first
// (from the unverified payload: a token of another issuer cannot verify
// with this issuer's keys, and "wrong issuer" is the useful answer), then
// the signature, then audience, times, the repository claims and the
// allow list.
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
	var c githubClaims
	if err := tok.Claims(&c); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrOIDCClaims, err)
	}
	if err := a.checkTimes(tok.Expiry, c); err != nil {
		return Principal{}, err
	}
	if strings.TrimSpace(c.Repository) == "" {
		return Principal{}, fmt.Errorf("%w: the repository claim is missing or blank", ErrOIDCClaims)
	}
	if !ValidRepo(c.Repository) {
		return Principal{}, fmt.Errorf("%w: the repository claim %q is not OWNER/NAME", ErrOIDCClaims, c.Repository)
	}
	if err := allowed(a.allow, repoClaims{Repository: c.Repository, RepositoryID: string(c.RepositoryID),
		RepositoryOwner: c.RepositoryOwner, RepositoryOwnerID: string(c.RepositoryOwnerID)}); err != nil {
		return Principal{}, err
	}
	return Principal{Repo: c.Repository, Via: ViaOIDC, Subject: tok.Subject, Actor: c.Actor}, nil
}

// checkTimes applies exp, iat and nbf, each with ClockLeeway, and the
// maximum lifetime.
func (a *Authenticator) checkTimes(exp time.Time, c githubClaims) error {
	now := a.now()
	if exp.IsZero() {
		return fmt.Errorf("%w: the token has no exp claim", ErrOIDCClaims)
	}
	if !now.Before(exp.Add(ClockLeeway)) {
		return fmt.Errorf("%w at %s", ErrOIDCExpired, exp.UTC().Format(time.RFC3339))
	}
	if c.IssuedAt == nil {
		return fmt.Errorf("%w: the token has no iat claim", ErrOIDCClaims)
	}
	iat := time.Unix(*c.IssuedAt, 0)
	if now.Add(ClockLeeway).Before(iat) {
		return fmt.Errorf("%w: issued at %s, in the future", ErrOIDCNotYetValid, iat.UTC().Format(time.RFC3339))
	}
	if life := exp.Sub(iat); life > a.maxLifetime {
		return fmt.Errorf("%w: it lives %s (iat to exp), more than the %s this server accepts", ErrOIDCLifetime, life, a.maxLifetime)
	}
	if c.NotBefore != nil {
		if nbf := time.Unix(*c.NotBefore, 0); now.Add(ClockLeeway).Before(nbf) {
			return fmt.Errorf("%w: not before %s", ErrOIDCNotYetValid, nbf.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// oidcVerifier discovers the issuer on first use and keeps the verifier.
// Its key set is this package's keySet, which refetches the issuer's keys
// at most once per JWKSRefetchInterval. A failed discovery is retried by
// the next token.
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
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURL == "" {
		return nil, fmt.Errorf("%w: discover %s: no jwks_uri", ErrOIDCUnavailable, a.issuer)
	}
	var algs []string
	for _, alg := range meta.Algs {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(alg)) {
			algs = append(algs, alg)
		}
	}
	ks := &keySet{url: meta.JWKSURL, client: a.client, now: a.now}
	// Audience and times are checked by oidcToken, to say which failed.
	a.verifier = oidc.NewVerifier(a.issuer, ks, &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SupportedSigningAlgs: algs, Now: a.now})
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
