package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/sluicehq/sluice/rollout"
)

// DefaultIssuer is the issuer of GitHub Actions OIDC ID tokens.
const DefaultIssuer = "https://token.actions.githubusercontent.com"

// DefaultHTTPTimeout bounds each request to the OIDC issuer (discovery and
// signing keys) when no client is given.
const DefaultHTTPTimeout = 10 * time.Second

// How a Principal proved who it is. Shown in logs and recorded nowhere else.
const (
	// ViaAdmin: the server's admin token; acts on everything.
	ViaAdmin = "admin"
	// ViaToken: a sluice token issued by Issue, scoped to a repository.
	ViaToken = "token"
	// ViaOIDC: a GitHub Actions OIDC ID token, scoped to its repository claim.
	ViaOIDC = "oidc"
)

// Principal is who an API call acts as.
type Principal struct {
	// Admin is true for the admin token: no scope applies.
	Admin bool
	// Repo is the GitHub repository ("owner/name") a scoped principal may
	// act on; "" for the admin.
	Repo string
	// Service, when set, narrows a scoped principal to that one service.
	Service string
	// Via is ViaAdmin, ViaToken or ViaOIDC.
	Via string
	// Subject names the credential: the token id, or the OIDC "sub" claim
	// (e.g. "repo:acme/web:ref:refs/heads/main").
	Subject string
	// Actor is the GitHub login that triggered the workflow, from an OIDC
	// token's "actor" claim; "" for other credentials.
	Actor string
}

// Why Authenticate refuses a credential. Each is wrapped with the details
// (which token, which issuer or audience), so the message is one line that
// says what to fix.
var (
	// ErrNoToken: the request carried no bearer token.
	ErrNoToken = errors.New("missing API token (Authorization: Bearer ...)")
	// ErrUnknownToken: neither the admin token nor a token this server issued.
	ErrUnknownToken = errors.New("unknown token")
	// ErrTokenRevoked: a sluice token that was revoked.
	ErrTokenRevoked = errors.New("token revoked")
	// ErrTokenExpired: a sluice token past its expiry.
	ErrTokenExpired = errors.New("token expired")
	// ErrOIDCDisabled: an OIDC token sent to a server that names no
	// repository allowed to use OIDC (--oidc-allow), or has no public URL.
	ErrOIDCDisabled = errors.New("OIDC tokens are not accepted by this server")
	// ErrOIDCMalformed: looks like a JWT but does not parse as a signed one.
	ErrOIDCMalformed = errors.New("malformed OIDC token")
	// ErrOIDCIssuer: an OIDC token from another issuer than the trusted one.
	ErrOIDCIssuer = errors.New("OIDC token from an untrusted issuer")
	// ErrOIDCSignature: the signature does not verify with the issuer's keys.
	ErrOIDCSignature = errors.New("OIDC token signature does not verify")
	// ErrOIDCAudience: the token was minted for another audience than this
	// server's public URL.
	ErrOIDCAudience = errors.New("OIDC token has the wrong audience")
	// ErrOIDCExpired: an OIDC token past its expiry.
	ErrOIDCExpired = errors.New("OIDC token expired")
	// ErrOIDCNotYetValid: an OIDC token whose "nbf" is still ahead (beyond
	// NotBeforeLeeway): the clocks disagree.
	ErrOIDCNotYetValid = errors.New("OIDC token not valid yet")
	// ErrOIDCClaims: the token lacks a claim sluice needs (repository,
	// exp, iat), or has it blank or malformed.
	ErrOIDCClaims = errors.New("OIDC token lacks a required claim")
	// ErrOIDCNotAllowed: the token's repository (or owner, or a pinned id)
	// matches no entry of the server's --oidc-allow list.
	ErrOIDCNotAllowed = errors.New("OIDC token's repository is not allowed on this server")
	// ErrOIDCLifetime: the token's exp is further from its iat than the
	// server accepts (see DefaultMaxTokenLifetime).
	ErrOIDCLifetime = errors.New("OIDC token lives too long")
	// ErrOIDCUnavailable: the issuer's discovery document could not be read;
	// the token may be fine, the server cannot tell yet.
	ErrOIDCUnavailable = errors.New("OIDC issuer unavailable")
)

// Store is what an Authenticator needs of the token store; *store.DB
// satisfies it. TokenByHash returns an error wrapping rollout.ErrNotFound
// for an unknown hash, and RevokeToken for an unknown id.
type Store interface {
	CreateToken(t rollout.Token) error
	TokenByHash(hash [32]byte) (rollout.Token, error)
	Tokens() ([]rollout.Token, error)
	RevokeToken(id string) error
}

// Authenticator turns a bearer token into a Principal. Build it with New;
// it is safe for concurrent use.
type Authenticator struct {
	tokens    Store
	adminHash [32]byte
	hasAdmin  bool
	issuer    string
	audience  string
	allow     []AllowEntry
	client    *http.Client
	now       func() time.Time

	maxLifetime time.Duration

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// Option configures New.
type Option func(*Authenticator)

// WithAdminToken sets the admin token, which acts on everything. "" (the
// default) means there is none.
func WithAdminToken(t string) Option {
	return func(a *Authenticator) {
		a.hasAdmin = t != ""
		a.adminHash = sha256.Sum256([]byte(t))
	}
}

// WithOIDC accepts OIDC ID tokens from issuer ("" means DefaultIssuer)
// whose audience is publicURL, the URL clients reach this server at, and
// whose repository claims match an entry of allow. OIDC stays off (the
// default) unless both publicURL and allow are given: any workflow in the
// world can mint a token for any audience, so the audience alone proves
// nothing about who is calling. The issuer is contacted lazily, on the
// first OIDC token, so a server starts without it.
func WithOIDC(issuer, publicURL string, allow []AllowEntry) Option {
	return func(a *Authenticator) {
		if issuer == "" {
			issuer = DefaultIssuer
		}
		a.issuer, a.audience, a.allow = issuer, publicURL, slices.Clone(allow)
	}
}

// WithMaxTokenLifetime bounds exp - iat of accepted OIDC tokens (default
// DefaultMaxTokenLifetime).
func WithMaxTokenLifetime(d time.Duration) Option {
	return func(a *Authenticator) {
		if d > 0 {
			a.maxLifetime = d
		}
	}
}

// WithClock sets the time source for token times and the key set's
// refetch limit (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(a *Authenticator) {
		if now != nil {
			a.now = now
		}
	}
}

// WithHTTPClient sets the client used to reach the OIDC issuer; the
// default has a DefaultHTTPTimeout timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(a *Authenticator) {
		if c != nil {
			a.client = c
		}
	}
}

// New returns an Authenticator over tokens. tokens may be nil: sluice
// tokens are then unknown and cannot be issued.
func New(tokens Store, opts ...Option) *Authenticator {
	a := &Authenticator{tokens: tokens, issuer: DefaultIssuer, client: &http.Client{Timeout: DefaultHTTPTimeout},
		now: time.Now, maxLifetime: DefaultMaxTokenLifetime}
	for _, o := range opts {
		o(a)
	}
	return a
}

// OIDC reports whether OIDC tokens are accepted, and for which issuer and
// audience.
func (a *Authenticator) OIDC() (issuer, audience string, ok bool) {
	return a.issuer, a.audience, a.oidcOn()
}

func (a *Authenticator) oidcOn() bool { return a.audience != "" && len(a.allow) > 0 }

// Authenticate says who bearer (the text after "Bearer ") is: the admin
// token (compared in constant time), a sluice token ("sluice_..."), or,
// when OIDC is on, an OIDC ID token. A refusal wraps one of the Err*
// sentinels above; any other error is the server's (the store, say), not
// the caller's.
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	bearer = strings.TrimSpace(bearer)
	if bearer == "" {
		return Principal{}, ErrNoToken
	}
	if a.hasAdmin {
		h := sha256.Sum256([]byte(bearer))
		if subtle.ConstantTimeCompare(h[:], a.adminHash[:]) == 1 {
			return Principal{Admin: true, Via: ViaAdmin, Subject: "admin"}, nil
		}
	}
	if strings.HasPrefix(bearer, TokenPrefix) {
		return a.sluiceToken(bearer)
	}
	if strings.Count(bearer, ".") == 2 {
		if !a.oidcOn() {
			return Principal{}, fmt.Errorf("%w: the operator allowed no repository to use OIDC (--oidc-allow, SLUICE_OIDC_ALLOW, with --public-url)", ErrOIDCDisabled)
		}
		return a.oidcToken(ctx, bearer)
	}
	return Principal{}, ErrUnknownToken
}

func (a *Authenticator) sluiceToken(bearer string) (Principal, error) {
	if a.tokens == nil {
		return Principal{}, ErrUnknownToken
	}
	rec, err := a.tokens.TokenByHash(HashToken(bearer))
	if errors.Is(err, rollout.ErrNotFound) {
		return Principal{}, ErrUnknownToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up token: %w", err)
	}
	if !rec.Revoked.IsZero() {
		return Principal{}, fmt.Errorf("%w (id %s, at %s)", ErrTokenRevoked, rec.ID, rec.Revoked.UTC().Format(time.RFC3339))
	}
	if !rec.Expires.IsZero() && !a.now().Before(rec.Expires) {
		return Principal{}, fmt.Errorf("%w (id %s, at %s)", ErrTokenExpired, rec.ID, rec.Expires.UTC().Format(time.RFC3339))
	}
	return Principal{Repo: rec.Repo, Service: rec.Service, Via: ViaToken, Subject: rec.ID}, nil
}
