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

// Call sends one request to /api/v1+path: body is nil, []byte or an
// io.Reader (sent as ctype), or any other value sent as JSON; origin, when
// not nil, is sent as the X-Sluice-* headers. out receives the answer: a
// *[]byte gets the raw body, anything else the decoded JSON. An error
// answer comes back as *rollout.Error (4xx), a credential refusal or a
// plain error naming the server's message. It is the one HTTP client of
// the API: the CLI and the Action's event mode both go through it.
func (e *Engine) Call(ctx context.Context, method, path string, q url.Values, body any, ctype string, origin *rollout.Origin, out any) error {
	return e.do(ctx, method, path, q, body, ctype, origin, out)
}

// Headers the API reads an origin from.
const (
	hVia, hActor, hURL, hRef, hRepo, hPR = "X-Sluice-Via", "X-Sluice-Actor", "X-Sluice-Url", "X-Sluice-Ref", "X-Sluice-Repo", "X-Sluice-Pr"
)

func (e *Engine) do(ctx context.Context, method, path string, q url.Values, body any, ctype string, o *rollout.Origin, out any) error {
	u := e.server + "/api/v1" + path
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
		r, ctype = bytes.NewReader(data), "application/json"
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
		for k, v := range map[string]string{hVia: o.Via, hActor: o.Actor, hURL: o.URL, hRef: o.Ref, hRepo: o.Repo} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if o.PR != 0 {
			req.Header.Set(hPR, strconv.Itoa(o.PR))
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
	var body struct {
		Error struct {
			Code     string            `json:"code"`
			Message  string            `json:"message"`
			Problems []rollout.Problem `json:"problems"`
		} `json:"error"`
	}
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

func p(format string, parts ...string) string {
	args := make([]any, len(parts))
	for i, s := range parts {
		args[i] = url.PathEscape(s)
	}
	return fmt.Sprintf(format, args...)
}

// Services lists the services the token may see.
func (e *Engine) Services() ([]string, error) {
	var out struct {
		Services []rollout.ServiceStatus `json:"services"`
	}
	if err := e.do(context.Background(), http.MethodGet, "/services", nil, nil, "", nil, &out); err != nil {
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
	err := e.do(ctx, http.MethodGet, p("/services/%s", service), nil, nil, "", nil, &st)
	return st, err
}

// Deploy uploads a source archive as a new version.
func (e *Engine) Deploy(ctx context.Context, req rollout.DeployRequest) (rollout.Version, error) {
	var v rollout.Version
	q := url.Values{}
	if req.Strategy != "" {
		q.Set("strategy", string(req.Strategy))
	}
	if req.AutoCanary {
		q.Set("auto_canary", "true")
	}
	err := e.do(ctx, http.MethodPost, p("/services/%s/versions", req.Service), q, req.Archive, "application/gzip", &req.Origin, &v)
	return v, err
}

// Redeploy changes a version in place.
func (e *Engine) Redeploy(ctx context.Context, service, version string, req rollout.RedeployRequest) (rollout.Version, error) {
	var v rollout.Version
	path := p("/services/%s/versions/%s/redeploy", service, version)
	if req.Archive != nil {
		q := url.Values{}
		for k, val := range req.Env {
			q.Add("env", k+"="+val)
		}
		for _, k := range req.UnsetEnv {
			q.Add("unset_env", k)
		}
		if req.Instances != nil {
			q.Set("instances", strconv.Itoa(*req.Instances))
		}
		if req.Run != nil {
			q.Set("run", *req.Run)
		}
		err := e.do(ctx, http.MethodPost, path, q, req.Archive, "application/gzip", &req.Origin, &v)
		return v, err
	}
	body := map[string]any{"env": req.Env, "unset_env": req.UnsetEnv, "instances": req.Instances, "run": req.Run}
	err := e.do(ctx, http.MethodPost, path, nil, body, "", &req.Origin, &v)
	return v, err
}

func (e *Engine) statusCall(ctx context.Context, method, path string, q url.Values, body any, o rollout.Origin) (rollout.ServiceStatus, error) {
	var st rollout.ServiceStatus
	err := e.do(ctx, method, path, q, body, "", &o, &st)
	return st, err
}

// Traffic replaces the split and/or rules.
func (e *Engine) Traffic(ctx context.Context, service string, req rollout.TrafficRequest, o rollout.Origin) (rollout.ServiceStatus, error) {
	body := map[string]any{}
	if req.Split != nil {
		body["split"] = req.Split
	}
	if req.Rules != nil {
		body["rules"] = *req.Rules
	}
	return e.statusCall(ctx, http.MethodPut, p("/services/%s/policy", service), nil, body, o)
}

// Route appends a rule.
func (e *Engine) Route(ctx context.Context, service string, r policy.Rule, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.statusCall(ctx, http.MethodPost, p("/services/%s/rules", service), nil, map[string]any{"version": r.Version, "match": r.Match}, o)
}

// ClearRoutes removes the rules of version (all when "").
func (e *Engine) ClearRoutes(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	return e.statusCall(ctx, http.MethodDelete, p("/services/%s/rules", service), q, nil, o)
}

// Predict says which version a query reaches.
func (e *Engine) Predict(ctx context.Context, service, query string) (rollout.Prediction, error) {
	var pr rollout.Prediction
	err := e.do(ctx, http.MethodGet, p("/services/%s/predict", service), url.Values{"query": {query}}, nil, "", nil, &pr)
	return pr, err
}

// Promote gives version 100%.
func (e *Engine) Promote(ctx context.Context, service, version string, keepRules bool, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.statusCall(ctx, http.MethodPost, p("/services/%s/promote", service), nil, map[string]any{"version": version, "keep_rules": keepRules}, o)
}

// Rollback goes back to the previous stable (or version).
func (e *Engine) Rollback(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.statusCall(ctx, http.MethodPost, p("/services/%s/rollback", service), nil, map[string]any{"version": version}, o)
}

// Abort removes a canary.
func (e *Engine) Abort(ctx context.Context, service, version string, o rollout.Origin) (rollout.ServiceStatus, error) {
	return e.statusCall(ctx, http.MethodPost, p("/services/%s/abort", service), nil, map[string]any{"version": version}, o)
}

// StopVersion stops a version without traffic.
func (e *Engine) StopVersion(ctx context.Context, service, version string, o rollout.Origin) error {
	return e.do(ctx, http.MethodPost, p("/services/%s/versions/%s/stop", service, version), nil, nil, "", &o, nil)
}

// Events pages through the history log.
func (e *Engine) Events(service string, after uint64, limit int) ([]rollout.Event, error) {
	path := "/events"
	if service != "" {
		path = p("/services/%s/events", service)
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var out struct {
		Events []rollout.Event `json:"events"`
	}
	q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
	err := e.do(context.Background(), http.MethodGet, path, q, nil, "", nil, &out)
	return out.Events, err
}

// LastEvent returns the sequence number of the newest event the token may
// see, so a fresh client reports only what happens from now on.
func (e *Engine) LastEvent() (uint64, error) {
	var last uint64
	for {
		evs, err := e.Events("", last, 1000)
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
// being created or updated, or WaitTimeout passes.
func (e *Engine) Wait() {
	deadline := time.Now().Add(e.WaitTimeout)
	for time.Now().Before(deadline) {
		busy := false
		names, err := e.Services()
		if err != nil {
			return
		}
		for _, n := range names {
			st, err := e.Status(context.Background(), n)
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
		time.Sleep(300 * time.Millisecond)
	}
}
