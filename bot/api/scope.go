package api

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
)

// principalKey is the echo context key holding the caller's auth.Principal.
const principalKey = "sluice.principal"

// WithAuthenticator authenticates every /api/v1 call with a: the admin
// token, sluice tokens and (when a has OIDC on) GitHub Actions OIDC tokens.
// Scoped callers then act only on their repository's services. It also
// serves /api/v1/tokens to the admin. WithToken, when also given, is a
// second admin token.
func WithAuthenticator(a *auth.Authenticator) Option { return func(s *server) { s.authn = a } }

// principal returns who the request acts as. Without a token or an
// authenticator the API is open (loopback dev mode) and every caller is
// the admin.
func principal(c echo.Context) auth.Principal {
	if p, ok := c.Get(principalKey).(auth.Principal); ok {
		return p
	}
	return auth.Principal{Admin: true}
}

// authRefusals maps why auth refused a credential to the API's answer.
var authRefusals = []struct {
	err    error
	status int
	code   string
}{
	{auth.ErrNoToken, http.StatusUnauthorized, "unauthorized"},
	{auth.ErrUnknownToken, http.StatusUnauthorized, "unknown_token"},
	{auth.ErrTokenRevoked, http.StatusUnauthorized, "token_revoked"},
	{auth.ErrTokenExpired, http.StatusUnauthorized, "token_expired"},
	{auth.ErrOIDCDisabled, http.StatusUnauthorized, "oidc_disabled"},
	{auth.ErrOIDCMalformed, http.StatusUnauthorized, "oidc_malformed"},
	{auth.ErrOIDCIssuer, http.StatusUnauthorized, "oidc_wrong_issuer"},
	{auth.ErrOIDCSignature, http.StatusUnauthorized, "oidc_bad_signature"},
	{auth.ErrOIDCAudience, http.StatusUnauthorized, "oidc_wrong_audience"},
	{auth.ErrOIDCExpired, http.StatusUnauthorized, "oidc_expired"},
	{auth.ErrOIDCNotYetValid, http.StatusUnauthorized, "oidc_not_yet_valid"},
	{auth.ErrOIDCClaims, http.StatusUnauthorized, "oidc_missing_claim"},
	{auth.ErrOIDCNotAllowed, http.StatusUnauthorized, "oidc_not_allowed"},
	{auth.ErrOIDCLifetime, http.StatusUnauthorized, "oidc_lifetime"},
	{auth.ErrOIDCUnavailable, http.StatusServiceUnavailable, "oidc_unavailable"},
}

// authenticate says who the request's bearer token is. Only called when
// the API is not open.
func (s *server) authenticate(c echo.Context) (auth.Principal, error) {
	bearer, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
	if !ok {
		return auth.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "%v", auth.ErrNoToken)
	}
	if s.token != "" && subtle.ConstantTimeCompare([]byte(bearer), []byte(s.token)) == 1 {
		return auth.Principal{Admin: true, Via: auth.ViaAdmin, Subject: "admin"}, nil
	}
	if s.authn == nil {
		return auth.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "missing or wrong API token (Authorization: Bearer ...)")
	}
	p, err := s.authn.Authenticate(c.Request().Context(), bearer)
	if err == nil {
		return p, nil
	}
	for _, r := range authRefusals {
		if errors.Is(err, r.err) {
			s.log.Warn("api call refused", "reason", r.code, "method", c.Request().Method, "path", c.Path(), "remote", c.RealIP())
			return auth.Principal{}, fail(r.status, r.code, "%v", err)
		}
	}
	return auth.Principal{}, fmt.Errorf("authenticate: %w", err)
}

// authorize lets a scoped principal through only to what its repository
// (and service, when the token names one) owns. Routes with a :service are
// checked against that service's repo; a service that does not exist yet
// passes to the engine, which refuses to let a scoped principal create it.
// The engine checks ownership again for every change: this check also
// keeps other repositories' services out of sight.
// GET /services is filtered by visible instead; /tokens is adminOnly.
func (s *server) authorize(c echo.Context, p auth.Principal) error {
	if p.Admin {
		return nil
	}
	if c.Path() == wire.Prefix+wire.AllEvents.Pattern {
		return fail(http.StatusForbidden, "forbidden",
			"this token is scoped to %s; the history of every service needs the admin token (ask for /api/v1/services/<name>/events)", scope(p))
	}
	svc := c.Param("service")
	if svc == "" {
		return nil
	}
	if p.Service != "" && svc != p.Service {
		return fail(http.StatusForbidden, "forbidden", "this token is scoped to %s; it cannot act on service %s", scope(p), svc)
	}
	st, err := s.eng.Status(c.Request().Context(), svc)
	if re, ok := rollout.AsError(err); ok && re.Kind == rollout.KindNotFound {
		return nil // the engine says who may create it
	}
	if err != nil {
		return err
	}
	if st.Repo != p.Repo {
		owner := st.Repo
		if owner == "" {
			owner = "no repository"
		}
		return fail(http.StatusForbidden, "forbidden", "this token is scoped to %s; service %s belongs to %s", scope(p), svc, owner)
	}
	return nil
}

// scope names what a scoped principal may touch, for messages.
func scope(p auth.Principal) string {
	if p.Service != "" {
		return p.Repo + " (service " + p.Service + ")"
	}
	return p.Repo
}

// visible reports whether the caller may see the service.
func visible(c echo.Context, st rollout.ServiceStatus) bool {
	p := principal(c)
	return p.Admin || (st.Repo == p.Repo && (p.Service == "" || st.Name == p.Service))
}

// registerTokens mounts the admin's token management on g.
func (s *server) registerTokens(g *echo.Group) {
	g.Add(wire.CreateToken.Method, wire.CreateToken.Pattern, s.createToken, s.adminOnly)
	g.Add(wire.ListTokens.Method, wire.ListTokens.Pattern, s.listTokens, s.adminOnly)
	g.Add(wire.RevokeToken.Method, wire.RevokeToken.Pattern, s.revokeToken, s.adminOnly)
}

func (s *server) adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.authn == nil {
			return fail(http.StatusNotFound, "tokens_disabled", "this server keeps no API tokens: it was started without an admin token")
		}
		if p := principal(c); !p.Admin {
			return fail(http.StatusForbidden, "forbidden", "this token is scoped to %s; managing tokens needs the admin token", scope(p))
		}
		return next(c)
	}
}

// tokenView shows a token record; the API imports no store, so it takes
// the fields it shows.
func tokenView(id, repo, service string, created, expires, revoked time.Time) wire.TokenView {
	return wire.TokenView{ID: id, Repo: repo, Service: service, Created: created, Expires: expires, Revoked: revoked}
}

func (s *server) createToken(c echo.Context) error {
	var b wire.TokenBody
	if err := decode(c, &b); err != nil {
		return err
	}
	ttl := auth.DefaultTokenTTL
	if b.Expires != nil {
		ttl = time.Duration(*b.Expires)
	}
	text, rec, err := s.authn.Issue(b.Repo, b.Service, ttl)
	if errors.Is(err, auth.ErrInvalidRequest) {
		return fail(http.StatusBadRequest, "invalid_token_request", "%v", err)
	}
	if err != nil {
		return err
	}
	s.log.Info("api token created", "repo", rec.Repo, "service", rec.Service, "token_id", rec.ID)
	v := tokenView(rec.ID, rec.Repo, rec.Service, rec.Created, rec.Expires, rec.Revoked)
	v.Token = text
	return c.JSON(http.StatusCreated, v)
}

func (s *server) listTokens(c echo.Context) error {
	toks, err := s.authn.Tokens()
	if err != nil {
		return err
	}
	out := make([]wire.TokenView, 0, len(toks))
	for _, t := range toks {
		out = append(out, tokenView(t.ID, t.Repo, t.Service, t.Created, t.Expires, t.Revoked))
	}
	return c.JSON(http.StatusOK, wire.TokenList{Tokens: out})
}

func (s *server) revokeToken(c echo.Context) error {
	rec, err := s.authn.Revoke(c.Param("id"))
	if errors.Is(err, auth.ErrTokenNotFound) {
		return fail(http.StatusNotFound, "unknown_token", "no token with id %q", c.Param("id"))
	}
	if err != nil {
		return err
	}
	s.log.Info("api token revoked", "repo", rec.Repo, "token_id", rec.ID)
	return c.JSON(http.StatusOK, tokenView(rec.ID, rec.Repo, rec.Service, rec.Created, rec.Expires, rec.Revoked))
}
