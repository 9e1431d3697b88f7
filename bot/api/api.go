package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// Engine is what the API needs of the domain.
type Engine interface {
	Services(ctx context.Context) ([]string, error)
	Status(ctx context.Context, service string) (rollout.ServiceStatus, error)
	Deploy(ctx context.Context, req rollout.DeployRequest) (rollout.Version, error)
	Redeploy(ctx context.Context, service, version string, req rollout.RedeployRequest) (rollout.Version, error)
	Traffic(ctx context.Context, service string, req rollout.TrafficRequest, origin rollout.Origin) (rollout.ServiceStatus, error)
	Route(ctx context.Context, service string, rule policy.Rule, origin rollout.Origin) (rollout.ServiceStatus, error)
	ClearRoutes(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Predict(ctx context.Context, service, query string) (rollout.Prediction, error)
	Promote(ctx context.Context, service, version string, keepRules bool, origin rollout.Origin) (rollout.ServiceStatus, error)
	Rollback(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Abort(ctx context.Context, service, version string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Retire(ctx context.Context, service string, olderThan time.Duration, origin rollout.Origin) ([]string, error)
	StopVersion(ctx context.Context, service, version string, origin rollout.Origin) error
	DeleteVersion(ctx context.Context, service, version string, origin rollout.Origin) error
	Events(ctx context.Context, service string, after uint64, limit int) ([]rollout.Event, error)
	LatestEvents(ctx context.Context, service string, before uint64, limit int) ([]rollout.Event, error)
	SetRepo(ctx context.Context, service, repo string, origin rollout.Origin) (rollout.ServiceStatus, error)
	Logs(ctx context.Context, service, version string, max int) (string, error)
	VersionURL(service, version string) string
}

// DefaultMaxUpload bounds an uploaded source archive.
const DefaultMaxUpload = 256 << 20

type server struct {
	eng       Engine
	token     string
	authn     *auth.Authenticator
	maxUpload int64
	log       *slog.Logger
	secrets   []string
	trusted   []netip.Prefix
}

// Option configures the API.
type Option func(*server)

// WithToken sets the admin token: every /api/v1 call then needs
// `Authorization: Bearer <token>`, or a credential WithAuthenticator accepts.
func WithToken(t string) Option { return func(s *server) { s.token = t } }

// WithMaxUpload bounds uploaded archives, in bytes (default DefaultMaxUpload).
func WithMaxUpload(n int64) Option { return func(s *server) { s.maxUpload = n } }

// WithSecrets adds secrets (the admin token, the App key, the webhook
// secret) that a scoped caller never reads: not in logs, statuses or events.
func WithSecrets(secrets ...string) Option {
	return func(s *server) { s.secrets = append(s.secrets, secrets...) }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *server) { s.log = l } }

// Register mounts /healthz and /api/v1 on e, and sets e.IPExtractor so
// that c.RealIP() of every route on e is ClientIP.
func Register(e *echo.Echo, eng Engine, opts ...Option) {
	s := &server{eng: eng, maxUpload: DefaultMaxUpload, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = ipExtractor(s.trusted) // for everything e serves: c.RealIP()
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	g := e.Group(wire.Prefix, s.auth)
	for _, r := range []struct {
		route   wire.Route
		handler echo.HandlerFunc
	}{
		{wire.ListServices, s.services},
		{wire.GetService, s.status},
		{wire.Deploy, s.deploy},
		{wire.GetVersion, s.version},
		{wire.Logs, s.logs},
		{wire.Redeploy, s.redeploy},
		{wire.StopVersion, s.stop},
		{wire.DeleteVersion, s.deleteVersion},
		{wire.SetPolicy, s.traffic},
		{wire.AddRule, s.route},
		{wire.ClearRules, s.unroute},
		{wire.Predict, s.predict},
		{wire.Promote, s.promote},
		{wire.Rollback, s.rollback},
		{wire.Abort, s.abort},
		{wire.Retire, s.retire},
		{wire.ServiceEvents, s.events},
		{wire.SetRepo, s.setRepo},
		{wire.AllEvents, s.events},
	} {
		g.Add(r.route.Method, r.route.Pattern, r.handler)
	}
	s.registerTokens(g)
}

func fail(status int, code, format string, args ...any) error {
	return &httpError{status: status, body: wire.ErrorBody{Code: code, Message: fmt.Sprintf(format, args...)}}
}

type httpError struct {
	status int
	body   wire.ErrorBody
}

func (e *httpError) Error() string { return e.body.Message }

func (s *server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, body := http.StatusInternalServerError, wire.ErrorBody{Code: "internal", Message: "internal error; see the server log"}
	var he *httpError
	var ee *echo.HTTPError
	if re, ok := rollout.AsError(err); ok {
		body = wire.ErrorBody{Code: re.Code, Message: re.Message, Problems: re.Problems}
		switch re.Kind {
		case rollout.KindNotFound:
			status = http.StatusNotFound
		case rollout.KindConflict:
			status = http.StatusConflict
		case rollout.KindForbidden:
			status = http.StatusForbidden
		default:
			status = http.StatusBadRequest
		}
	} else if errors.As(err, &he) {
		status, body = he.status, he.body
	} else if errors.As(err, &ee) {
		status = ee.Code
		body = wire.ErrorBody{Code: strings.ReplaceAll(strings.ToLower(http.StatusText(ee.Code)), " ", "_"), Message: fmt.Sprint(ee.Message)}
	} else {
		s.log.Error("api request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
	}
	_ = c.JSON(status, wire.Error{Error: body})
}

// auth authenticates the caller, records it for the handlers (see
// principal) and applies its scope. With neither a token nor an
// authenticator the API is open: loopback dev mode.
func (s *server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.token == "" && s.authn == nil {
			return next(c)
		}
		p, err := s.authenticate(c)
		if err != nil {
			return err
		}
		c.Set(principalKey, p)
		if err := s.authorize(c, p); err != nil {
			return err
		}
		return next(c)
	}
}

// origin is who asks and from where, as the engine records it, with the
// caller's verified principal for the engine's ownership checks. The
// X-Sluice-Via/Actor/Url headers (who asked) are honoured only from the
// admin (the CLI, the Action's event mode with the admin token) and from
// an OIDC token (the Action's event mode proves it runs in a workflow of
// its repository with a token GitHub signed; the actor is then the
// token's own actor claim). A repository token is a bearer secret that
// could be anywhere, so its calls are recorded as "api" by "token <id>",
// whatever the headers say. X-Sluice-Ref and X-Sluice-Pr say which commit
// and pull request of the caller's own repository a change is for (the
// bot finds a PR's version by them); X-Sluice-Repo is the admin's only.
func origin(c echo.Context) rollout.Origin {
	h := c.Request().Header
	p := principal(c)
	o := rollout.Origin{Ref: h.Get(wire.HeaderRef)}
	if pr, err := strconv.Atoi(h.Get(wire.HeaderPR)); err == nil && pr > 0 {
		o.PR = pr
	}
	switch {
	case p.Admin:
		o.Via, o.Actor, o.URL, o.Repo = rollout.Via(h.Get(wire.HeaderVia)), h.Get(wire.HeaderActor), h.Get(wire.HeaderURL), h.Get(wire.HeaderRepo)
		o.Principal = rollout.AdminPrincipal
	case p.Via == auth.ViaOIDC:
		o.Via, o.Actor, o.URL, o.Repo = rollout.Via(h.Get(wire.HeaderVia)), p.Actor, h.Get(wire.HeaderURL), p.Repo
		o.Principal = rollout.Principal{Repo: p.Repo, Service: p.Service}
	default:
		o.Via, o.Actor, o.Repo = rollout.ViaAPI, p.Via+" "+p.Subject, p.Repo
		o.Principal = rollout.Principal{Repo: p.Repo, Service: p.Service}
	}
	if o.Via == "" {
		o.Via = rollout.ViaAPI
	}
	if o.Actor == "" && !p.Admin {
		o.Actor = p.Via + " " + p.Subject
	}
	return o
}

// decode reads a JSON body strictly: unknown fields are errors.
func decode(c echo.Context, v any) error {
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "invalid_json", "invalid JSON body: %v", err)
	}
	return nil
}

// readArchive reads an uploaded tar.gz, refusing more than maxUpload bytes.
func (s *server) readArchive(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, s.maxUpload+1))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "invalid_source", "read upload: %v", err)
	}
	if int64(len(b)) > s.maxUpload {
		return nil, fail(http.StatusRequestEntityTooLarge, "source_too_large", "the uploaded source is larger than the limit of %d bytes", s.maxUpload)
	}
	if len(b) == 0 {
		return nil, fail(http.StatusBadRequest, "invalid_source", "empty upload: send the source as a tar.gz body")
	}
	return b, nil
}

func (s *server) services(c echo.Context) error {
	names, err := s.eng.Services(c.Request().Context())
	if err != nil {
		return err
	}
	out := []rollout.ServiceStatus{}
	for _, n := range names {
		st, err := s.eng.Status(c.Request().Context(), n)
		if err != nil {
			return err
		}
		if !visible(c, st) {
			continue
		}
		out = append(out, st)
	}
	r := s.statusRedactor(c, out...)
	for i := range out {
		out[i] = r.status(out[i])
	}
	return c.JSON(http.StatusOK, wire.ServiceList{Services: out})
}

func (s *server) status(c echo.Context) error {
	st, err := s.eng.Status(c.Request().Context(), c.Param("service"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.statusRedactor(c, st).status(st))
}

func (s *server) deploy(c echo.Context) error {
	archive, err := s.readArchive(c)
	if err != nil {
		return err
	}
	v, err := s.eng.Deploy(c.Request().Context(), rollout.DeployRequest{
		Service: c.Param("service"), Archive: archive,
		Strategy: rollout.Strategy(c.QueryParam(wire.QueryStrategy)), AutoCanary: c.QueryParam(wire.QueryAutoCanary) == "true", Origin: origin(c)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, wire.VersionView{Version: s.redactorFor(c, v).version(v), URL: s.eng.VersionURL(v.Service, v.Name)})
}

func (s *server) stop(c echo.Context) error {
	if err := s.eng.StopVersion(c.Request().Context(), c.Param("service"), c.Param("version"), origin(c)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.Stopped{Stopped: c.Param("version")})
}

// deleteVersion deletes a failed version's record; its history stays.
func (s *server) deleteVersion(c echo.Context) error {
	if err := s.eng.DeleteVersion(c.Request().Context(), c.Param("service"), c.Param("version"), origin(c)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.Deleted{Deleted: c.Param("version")})
}

func (s *server) version(c echo.Context) error {
	st, err := s.eng.Status(c.Request().Context(), c.Param("service"))
	if err != nil {
		return err
	}
	st = s.statusRedactor(c, st).status(st)
	for _, v := range st.Versions {
		if v.Name == c.Param("version") {
			return c.JSON(http.StatusOK, v)
		}
	}
	return &rollout.Error{Kind: rollout.KindNotFound, Code: rollout.ErrCodeUnknownVersion,
		Message: fmt.Sprintf("service %s has no version %q", c.Param("service"), c.Param("version"))}
}

func (s *server) logs(c echo.Context) error {
	n := 64 << 10
	if q := c.QueryParam(wire.QueryBytes); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v <= 0 {
			return fail(http.StatusBadRequest, "invalid_parameter", "bytes must be a positive integer")
		}
		n = v
	}
	out, err := s.eng.Logs(c.Request().Context(), c.Param("service"), c.Param("version"), n)
	if err != nil {
		return err
	}
	if !principal(c).Admin {
		out, err = s.redactLogs(c, out)
		if err != nil {
			return err
		}
	}
	return c.String(http.StatusOK, out)
}

// redactLogs hides from a scoped caller what the admin alone may read in a
// version's logs: the configured secrets, the service's env values that
// redact.Env hides, and credentials inside URLs.
func (s *server) redactLogs(c echo.Context, logs string) (string, error) {
	st, err := s.eng.Status(c.Request().Context(), c.Param("service"))
	if err != nil {
		return "", err
	}
	return s.statusRedactor(c, st).text(logs), nil
}

// redeploy takes either a JSON RedeployBody, or a tar.gz body (new source)
// with the same overrides as query parameters: env=K=V (repeatable),
// unset_env=K, instances=N, run=CMD.
func (s *server) redeploy(c echo.Context) error {
	req := rollout.RedeployRequest{Origin: origin(c)}
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		var b wire.RedeployBody
		if err := decode(c, &b); err != nil {
			return err
		}
		req.Env, req.UnsetEnv, req.Instances, req.Run = b.Env, b.UnsetEnv, b.Instances, b.Run
	} else {
		archive, err := s.readArchive(c)
		if err != nil {
			return err
		}
		req.Archive = archive
		b, err := wire.ParseRedeployQuery(c.QueryParams())
		if err != nil {
			return fail(http.StatusBadRequest, "invalid_parameter", "%v", err)
		}
		req.Env, req.UnsetEnv, req.Instances, req.Run = b.Env, b.UnsetEnv, b.Instances, b.Run
	}
	v, err := s.eng.Redeploy(c.Request().Context(), c.Param("service"), c.Param("version"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, wire.VersionView{Version: s.redactorFor(c, v).version(v), URL: s.eng.VersionURL(v.Service, v.Name)})
}

func (s *server) traffic(c echo.Context) error {
	var b wire.PolicyBody
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Split == nil && b.Rules == nil {
		return fail(http.StatusBadRequest, "invalid_policy", "give a split, rules, or both")
	}
	st, err := s.eng.Traffic(c.Request().Context(), c.Param("service"), rollout.TrafficRequest{Split: b.Split, Rules: b.Rules}, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) route(c echo.Context) error {
	var b wire.RuleBody
	if err := decode(c, &b); err != nil {
		return err
	}
	m := b.Match
	if b.Query != "" {
		if m != nil {
			return fail(http.StatusBadRequest, "invalid_rule", "give match or query, not both")
		}
		var err error
		if m, err = policy.ParseMatch(b.Query); err != nil {
			return fail(http.StatusBadRequest, "invalid_rule", "%v", err)
		}
	}
	if b.Version == "" {
		return fail(http.StatusBadRequest, "invalid_rule", "a rule needs a version")
	}
	st, err := s.eng.Route(c.Request().Context(), c.Param("service"), policy.Rule{Version: b.Version, Match: m}, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) unroute(c echo.Context) error {
	st, err := s.eng.ClearRoutes(c.Request().Context(), c.Param("service"), c.QueryParam(wire.QueryVersion), origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) predict(c echo.Context) error {
	p, err := s.eng.Predict(c.Request().Context(), c.Param("service"), c.QueryParam(wire.QueryQuery))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *server) versionBody(c echo.Context, required bool) (wire.VersionBody, error) {
	var b wire.VersionBody
	if c.Request().ContentLength != 0 {
		if err := decode(c, &b); err != nil {
			return b, err
		}
	}
	if required && b.Version == "" {
		return b, fail(http.StatusBadRequest, "invalid_parameter", "name the version: {\"version\": \"<service>-NNN\"}")
	}
	return b, nil
}

func (s *server) promote(c echo.Context) error {
	b, err := s.versionBody(c, true)
	if err != nil {
		return err
	}
	st, err := s.eng.Promote(c.Request().Context(), c.Param("service"), b.Version, b.KeepRules, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) rollback(c echo.Context) error {
	b, err := s.versionBody(c, false)
	if err != nil {
		return err
	}
	st, err := s.eng.Rollback(c.Request().Context(), c.Param("service"), b.Version, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) abort(c echo.Context) error {
	b, err := s.versionBody(c, true)
	if err != nil {
		return err
	}
	st, err := s.eng.Abort(c.Request().Context(), c.Param("service"), b.Version, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *server) retire(c echo.Context) error {
	var b wire.RetireBody
	if c.Request().ContentLength != 0 {
		if err := decode(c, &b); err != nil {
			return err
		}
	}
	stopped, err := s.eng.Retire(c.Request().Context(), c.Param("service"), time.Duration(b.OlderThan), origin(c))
	if err != nil {
		return err
	}
	if stopped == nil {
		stopped = []string{}
	}
	return c.JSON(http.StatusOK, wire.Retired{Stopped: stopped})
}

// events answers a page of the history log, oldest first within the
// page. With ?after=SEQ it pages forward from there (what a follower of the
// log wants); otherwise it is the newest events, or the newest with Seq
// below ?before=SEQ (what a person reading the history wants first).
func (s *server) events(c echo.Context) error {
	seq := func(name string) (uint64, error) {
		q := c.QueryParam(name)
		if q == "" {
			return 0, nil
		}
		v, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			return 0, fail(http.StatusBadRequest, "invalid_parameter", "%s must be an event sequence number", name)
		}
		return v, nil
	}
	after, err := seq(wire.QueryAfter)
	if err != nil {
		return err
	}
	before, err := seq(wire.QueryBefore)
	if err != nil {
		return err
	}
	_, forward := c.QueryParams()[wire.QueryAfter]
	if forward && before != 0 {
		return fail(http.StatusBadRequest, "invalid_parameter", "give after or before, not both")
	}
	limit := 100
	if q := c.QueryParam(wire.QueryLimit); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v <= 0 || v > 1000 {
			return fail(http.StatusBadRequest, "invalid_parameter", "limit must be between 1 and 1000")
		}
		limit = v
	}
	svc := c.Param("service")
	var r redactor // the admin's: /events is theirs alone
	if svc != "" {
		st, err := s.eng.Status(c.Request().Context(), svc)
		if err != nil {
			return err
		}
		r = s.statusRedactor(c, st)
	}
	var evs []rollout.Event
	if forward {
		evs, err = s.eng.Events(c.Request().Context(), svc, after, limit)
	} else {
		evs, err = s.eng.LatestEvents(c.Request().Context(), svc, before, limit)
	}
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []rollout.Event{}
	}
	return c.JSON(http.StatusOK, wire.EventList{Events: r.events(evs)})
}

// setRepo is the admin's: the engine refuses anyone else.
func (s *server) setRepo(c echo.Context) error {
	var b wire.RepoBody
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Repo == nil {
		return fail(http.StatusBadRequest, "invalid_parameter", `name the repository: {"repo": "OWNER/NAME"} (or "" for none)`)
	}
	st, err := s.eng.SetRepo(c.Request().Context(), c.Param("service"), *b.Repo, origin(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}
