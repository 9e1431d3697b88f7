// Package remote is the engine as seen through a sluice server's HTTP API:
// it implements the bot's Engine over /api/v1, so the GitHub Action's
// event mode runs the very same command and merge handling as the App,
// with the engine on the server. It must not import the store, the
// runtimes or the router's data path.
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// Engine calls a sluice server. Safe for concurrent use.
type Engine struct {
	server string
	token  string
	hc     *http.Client
	// WaitTimeout bounds Wait (default 15 minutes).
	WaitTimeout time.Duration
	// Repo, when set, limits Wait to that repository's services.
	Repo string
}

// New returns an engine client for server (e.g. "https://sluice.example.com")
// authenticating with token (a sluice token or an OIDC ID token).
func New(server, token string) *Engine {
	return &Engine{server: strings.TrimRight(server, "/"), token: token, hc: &http.Client{Timeout: 10 * time.Minute}, WaitTimeout: 15 * time.Minute}
}

// Call sends one request for route r, its path filled with params (see
// wire.Route.Path): body is nil, []byte or an io.Reader (sent as ctype),
// or any other value sent as JSON; origin, when not nil, is sent as the
// X-Sluice-* headers. out receives the answer: a *[]byte gets the raw
// body, anything else the decoded JSON. An error answer comes back as
// *rollout.Error (4xx), a credential refusal or a plain error naming the
// server's message. It is the one HTTP client of the API: the CLI and the
// Action's event mode both go through it.
func (e *Engine) Call(ctx context.Context, r wire.Route, params []string, q url.Values, body any, ctype string, origin *rollout.Origin, out any) error {
	return e.do(ctx, r.Method, r.Path(params...), q, body, ctype, origin, out)
}

func (e *Engine) do(ctx context.Context, method, path string, q url.Values, body any, ctype string, o *rollout.Origin, out any) error {
	u := e.server + wire.Prefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r, ctype = bytes.NewReader(data), wire.ContentJSON
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	if o != nil {
		for k, v := range map[string]string{wire.HeaderVia: string(o.Via), wire.HeaderActor: o.Actor, wire.HeaderURL: o.URL, wire.HeaderRef: o.Ref, wire.HeaderRepo: o.Repo} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if o.PR != 0 {
			req.Header.Set(wire.HeaderPR, strconv.Itoa(o.PR))
		}
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said below, once
		}
		return fmt.Errorf("cannot reach the sluice server at %s: %w", e.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		return apiError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// apiError turns an API refusal back into the engine's *rollout.Error, so
// callers handle a remote refusal exactly like a local one.
func apiError(status int, data []byte) error {
	var body wire.Error
	if json.Unmarshal(data, &body) != nil || body.Error.Message == "" {
		text := strings.TrimSpace(string(data))
		if status == http.StatusNotFound && strings.HasPrefix(text, "sluice: unknown ") {
			// The router's own refusal of a host it does not serve.
			return fmt.Errorf("sluice server answered %d %q: %w", status, text, ErrRouter)
		}
		return fmt.Errorf("sluice server answered %d: %s", status, text)
	}
	kind := rollout.KindInvalid
	switch status {
	case http.StatusNotFound:
		kind = rollout.KindNotFound
	case http.StatusConflict:
		kind = rollout.KindConflict
	case http.StatusForbidden:
		// The credential is fine; this service is not its to change. The
		// bot answers that politely, like a local refusal.
		kind = rollout.KindForbidden
	case http.StatusUnauthorized:
		return &refused{msg: fmt.Sprintf("sluice server refused the credential (%d): %s", status, body.Error.Message), code: body.Error.Code}
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable:
		return fmt.Errorf("sluice server answered %d: %s", status, body.Error.Message)
	}
	return &rollout.Error{Kind: kind, Code: body.Error.Code, Message: body.Error.Message, Problems: body.Error.Problems}
}

// ErrRouter is what an answer from sluice's router, rather than its API,
// wraps: the server address names the router's port.
var ErrRouter = errors.New("this address is sluice's router (the services' traffic), not its API")

// ErrRefused is what a refused credential (401) wraps.
var ErrRefused = errors.New("credential refused")

// refused is a credential the server will not take: retrying with it is
// useless, which Permanent tells the bot.
type refused struct{ msg, code string }

func (e *refused) Error() string { return e.msg }

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *refused) Unwrap() error { return ErrRefused }

// Code is the API's code for the refusal ("unauthorized" when no
// credential was sent).
func (e *refused) Code() string { return e.code }

// Permanent reports true.
func (e *refused) Permanent() bool { return true }

// get sends a read of route r: no body, no origin.
func (e *Engine) get(ctx context.Context, r wire.Route, q url.Values, out any, params ...string) error {
	return e.do(ctx, r.Method, r.Path(params...), q, nil, "", nil, out)
}

// Services lists the services the token may see.
func (e *Engine) Services(ctx context.Context) ([]string, error) {
	var out wire.ServiceList
	if err := e.get(ctx, wire.ListServices, nil, &out); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(out.Services))
	for _, s := range out.Services {
		names = append(names, s.Name)
	}
	return names, nil
}

// Status returns one service.
func (e *Engine) Status(ctx context.Context, service string) (rollout.ServiceStatus, error) {
	var st rollout.ServiceStatus
	err := e.get(ctx, wire.GetService, nil, &st, service)
	return st, err
}

// Deploy uploads a source archive as a new version.
func (e *Engine) Deploy(ctx context.Context, req rollout.DeployRequest) (rollout.Version, error) {
	var v rollout.Version
	q := url.Values{}
	if req.Strategy != "" {
		q.Set(wire.QueryStrategy, string(req.Strategy))
	}
	if req.AutoCanary {
		q.Set(wire.QueryAutoCanary, "true")
	}
	err := e.Call(ctx, wire.Deploy, []string{req.Service}, q, req.Archive, wire.ContentArchive, &req.Origin, &v)
	return v, err
}

// Redeploy changes a version in place.
func (e *Engine) Redeploy(ctx context.Context, service, version string, req rollout.RedeployRequest) (rollout.Version, error) {
	var v rollout.Version
	params := []string{service, version}
	body := wire.RedeployBody{Env: req.Env, UnsetEnv: req.UnsetEnv, Instances: req.Instances, Run: req.Run}
	if req.Archive != nil {
		err := e.Call(ctx, wire.Redeploy, params, body.Query(), req.Archive, wire.ContentArchive, &req.Origin, &v)
		return v, err
	}
	err := e.Call(ctx, wire.Redeploy, params, nil, body, "", &req.Origin, &v)
	return v, err
}

// change sends a change of the policy for service and returns the
// service's status after it.
func (e *Engine) change(ctx context.Context, r wire.Route, service string, q url.Values, body any, o rollout.Origin) (rollout.ServiceStatus, error) {
	var st rollout.ServiceStatus
	err := e.Call(ctx, r, []string{service}, q, body, "", &o, &st)
	return st, err
}

// Traffic replaces the split and/or rules.
func (e *Engine) Traffic(ctx context.Context, service string, req rollout.TrafficRequest, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.change(ctx, wire.SetPolicy, service, nil, wire.PolicyBody{Split: req.Split, Rules: req.Rules}, o)
}

// Route appends a rule.
func (e *Engine) Route(ctx context.Context, service string, r policy.Rule, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.change(ctx, wire.AddRule, service, nil, wire.RuleBody{Version: r.Version, Match: r.Match}, o)
}

// ClearRoutes removes the rules of version (all when "").
func (e *Engine) ClearRoutes(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	q := url.Values{}
	if version != "" {
		q.Set(wire.QueryVersion, version)
	}
	return e.change(ctx, wire.ClearRules, service, q, nil, o)
}

// Predict says which version a query reaches.
func (e *Engine) Predict(ctx context.Context, service, query string) (rollout.Prediction, error) {
	var pr rollout.Prediction
	err := e.get(ctx, wire.Predict, url.Values{wire.QueryQuery: {query}}, &pr, service)
	return pr, err
}

// Promote gives version 100%.
func (e *Engine) Promote(ctx context.Context, service, version string, keepRules bool, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.change(ctx, wire.Promote, service, nil, wire.VersionBody{Version: version, KeepRules: keepRules}, o)
}

// Rollback goes back to the previous stable (or version).
func (e *Engine) Rollback(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.change(ctx, wire.Rollback, service, nil, wire.VersionBody{Version: version}, o)
}

// Abort removes a canary.
func (e *Engine) Abort(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.change(ctx, wire.Abort, service, nil, wire.VersionBody{Version: version}, o)
}

// StopVersion stops a version without traffic.
func (e *Engine) StopVersion(ctx context.Context, service, version string, o rollout.Origin) error {
	return e.Call(ctx, wire.StopVersion, []string{service, version}, nil, nil, "", &o, nil)
}

// Events pages through the history log.
func (e *Engine) Events(ctx context.Context, service string, after uint64, limit int) ([]rollout.Event, error) {
	r, params := wire.AllEvents, []string{}
	if service != "" {
		r, params = wire.ServiceEvents, []string{service}
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var out wire.EventList
	q := url.Values{wire.QueryAfter: {strconv.FormatUint(after, 10)}, wire.QueryLimit: {strconv.Itoa(limit)}}
	err := e.get(ctx, r, q, &out, params...)
	return out.Events, err
}

// LastEvent returns the sequence number of the newest event the token may
// see, so a fresh client reports only what happens from now on.
func (e *Engine) LastEvent(ctx context.Context) (uint64, error) {
	var last uint64
	for {
		evs, err := e.Events(ctx, "", last, 1000)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			return last, nil
		}
		last = evs[len(evs)-1].Seq
	}
}

// Wait blocks until no version of the visible (or Repo's) services is
// being created or updated, or WaitTimeout passes (which also bounds each
// request it makes).
func (e *Engine) Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), e.WaitTimeout)
	defer cancel()
	for ctx.Err() == nil {
		busy := false
		names, err := e.Services(ctx)
		if err != nil {
			return
		}
		for _, n := range names {
			st, err := e.Status(ctx, n)
			if err != nil || (e.Repo != "" && st.Repo != e.Repo) {
				continue
			}
			for _, v := range st.Versions {
				if v.Status == rollout.StatusCreating || v.Status == rollout.StatusUpdating {
					busy = true
				}
			}
		}
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}
