package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/auth/authtest"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
)

const (
	adminToken = "admin-s3cret"
	publicURL  = "https://sluice.example.com"
	// failFast declares web, hello and api; their deploys fail at once
	// (the process exits), which is all scope needs: the service exists.
	failFast = "services:\n  web: {run: 'false'}\n  hello: {run: 'false'}\n  api: {run: 'false'}\n"
)

// newScopedAPI serves the API over a real engine and store, with an
// authenticator that knows the admin token and trusts iss for OIDC.
func newScopedAPI(t *testing.T, iss string) (*httptest.Server, *rollout.Engine, *auth.Authenticator) {
	t.Helper()
	w := enginetest.New(t, t.TempDir())
	authn := auth.New(w.DB, auth.WithAdminToken(adminToken), auth.WithOIDC(iss, publicURL, []auth.AllowEntry{{Owner: "acme"}}))
	e := echo.New()
	api.Register(e, w.Engine, api.WithAuthenticator(authn), api.WithLogger(slog.New(slog.DiscardHandler)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, w.Engine, authn
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// deployAs deploys service with failFast as the holder of token.
func deployAs(t *testing.T, srv *httptest.Server, eng *rollout.Engine, token, service string) (int, []byte) {
	t.Helper()
	code, b := call(t, srv, "POST", "/api/v1/services/"+service+"/versions", "application/gzip",
		tgz(t, map[string]string{"sluice.yaml": failFast}), bearer(token)...)
	eng.Wait()
	return code, b
}

// assign has the admin give service to repo (creating it when needed).
func assign(t *testing.T, srv *httptest.Server, service, repo string) {
	t.Helper()
	if code, b := call(t, srv, "PUT", "/api/v1/services/"+service+"/repo", "application/json",
		[]byte(`{"repo":"`+repo+`"}`), bearer(adminToken)...); code != 200 {
		t.Fatalf("assign %s to %s: %d %s", service, repo, code, b)
	}
}

func issue(t *testing.T, a *auth.Authenticator, repo, service string) string {
	t.Helper()
	text, _, err := a.Issue(repo, service, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func TestScopedTokensActOnlyOnTheirRepository(t *testing.T) {
	t.Parallel()
	srv, eng, authn := newScopedAPI(t, "")
	web, apiRepo := issue(t, authn, "acme/web", ""), issue(t, authn, "acme/api", "")
	assign(t, srv, "web", "acme/web")
	assign(t, srv, "hello", "acme/api")
	if code, b := deployAs(t, srv, eng, web, "web"); code != 202 {
		t.Fatalf("acme/web deploys web: %d %s", code, b)
	}
	if code, b := deployAs(t, srv, eng, apiRepo, "hello"); code != 202 {
		t.Fatalf("acme/api deploys hello: %d %s", code, b)
	}
	// The services belong to the repositories the admin assigned.
	for svc, repo := range map[string]string{"web": "acme/web", "hello": "acme/api"} {
		st, err := eng.Status(context.Background(), svc)
		if err != nil || st.Repo != repo || st.Versions[0].CreatedBy.Repo != repo {
			t.Fatalf("%s: %+v, %v; want repo %s", svc, st, err, repo)
		}
	}
	before, _ := eng.Events(context.Background(), "", 0, 1000)

	const denied = "this token is scoped to acme/web; service hello belongs to acme/api"
	for _, tc := range []struct {
		method, path, ctype string
		body                []byte
	}{
		{"GET", "/api/v1/services/hello", "", nil},
		{"POST", "/api/v1/services/hello/versions", "application/gzip", tgz(t, map[string]string{"sluice.yaml": failFast})},
		{"GET", "/api/v1/services/hello/versions/hello-001", "", nil},
		{"GET", "/api/v1/services/hello/versions/hello-001/logs", "", nil},
		{"POST", "/api/v1/services/hello/versions/hello-001/redeploy", "application/json", []byte(`{"instances":2}`)},
		{"POST", "/api/v1/services/hello/versions/hello-001/stop", "", nil},
		{"PUT", "/api/v1/services/hello/policy", "application/json", []byte(`{"split":{"hello-001":100}}`)},
		{"POST", "/api/v1/services/hello/rules", "application/json", []byte(`{"version":"hello-001","query":"env=beta*"}`)},
		{"DELETE", "/api/v1/services/hello/rules", "", nil},
		{"GET", "/api/v1/services/hello/predict?query=env%3Dbeta", "", nil},
		{"POST", "/api/v1/services/hello/promote", "application/json", []byte(`{"version":"hello-001"}`)},
		{"POST", "/api/v1/services/hello/rollback", "", nil},
		{"POST", "/api/v1/services/hello/abort", "application/json", []byte(`{"version":"hello-001"}`)},
		{"POST", "/api/v1/services/hello/retire", "", nil},
		{"GET", "/api/v1/services/hello/events", "", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, b := call(t, srv, tc.method, tc.path, tc.ctype, tc.body, bearer(web)...)
			var eb errBody
			_ = json.Unmarshal(b, &eb)
			if code != 403 || eb.Error.Code != "forbidden" || eb.Error.Message != denied {
				t.Fatalf("got %d %s, want 403 forbidden %q", code, b, denied)
			}
			// The owner passes the scope check (whatever the engine then says).
			if code, b := call(t, srv, tc.method, tc.path, tc.ctype, tc.body, bearer(apiRepo)...); code == 403 || code == 401 {
				t.Fatalf("owner refused: %d %s", code, b)
			}
			eng.Wait()
		})
	}
	// The refused calls changed nothing: every event since is the owner's.
	after, _ := eng.Events(context.Background(), "", before[len(before)-1].Seq, 1000)
	for _, e := range after {
		if e.Origin.Repo != "acme/api" {
			t.Errorf("event by another repo than the owner's after the refusals: %+v", e)
		}
	}
}

func TestScopedListsAndHistory(t *testing.T) {
	t.Parallel()
	srv, eng, authn := newScopedAPI(t, "")
	web, apiRepo := issue(t, authn, "acme/web", ""), issue(t, authn, "acme/api", "")
	assign(t, srv, "web", "acme/web")
	assign(t, srv, "hello", "acme/api")
	deployAs(t, srv, eng, web, "web")
	deployAs(t, srv, eng, apiRepo, "hello")
	deployAs(t, srv, eng, adminToken, "api") // no repository: only the admin sees it

	for _, tc := range []struct {
		name, token string
		want        []string
	}{
		{"acme/web", web, []string{"web"}},
		{"acme/api", apiRepo, []string{"hello"}},
		{"admin", adminToken, []string{"api", "hello", "web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := call(t, srv, "GET", "/api/v1/services", "", nil, bearer(tc.token)...)
			var got struct {
				Services []rollout.ServiceStatus `json:"services"`
			}
			if err := json.Unmarshal(b, &got); code != 200 || err != nil {
				t.Fatalf("%d %s", code, b)
			}
			var names []string
			for _, s := range got.Services {
				names = append(names, s.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.want) {
				t.Errorf("services = %v, want %v", names, tc.want)
			}
		})
	}
	// The history of everything is the admin's; a service's is its owner's.
	if code, b := call(t, srv, "GET", "/api/v1/events", "", nil, bearer(web)...); code != 403 || !strings.Contains(string(b), "admin token") {
		t.Errorf("scoped /events: %d %s, want 403", code, b)
	}
	if code, b := call(t, srv, "GET", "/api/v1/events", "", nil, bearer(adminToken)...); code != 200 {
		t.Errorf("admin /events: %d %s", code, b)
	}
	if code, b := call(t, srv, "GET", "/api/v1/services/web/events", "", nil, bearer(web)...); code != 200 {
		t.Errorf("owner's service events: %d %s", code, b)
	}
	// A service with no repository is not up for grabs.
	code, b := deployAs(t, srv, eng, web, "api")
	if code != 403 || !strings.Contains(string(b), "service api belongs to no repository") {
		t.Errorf("scoped deploy to an unowned service: %d %s, want 403", code, b)
	}
	if st, _ := eng.Status(context.Background(), "api"); st.Repo != "" || len(st.Versions) != 1 {
		t.Errorf("unowned service changed: repo %q, %d versions", st.Repo, len(st.Versions))
	}
}

func TestServiceScopedToken(t *testing.T) {
	t.Parallel()
	srv, eng, authn := newScopedAPI(t, "")
	onlyWeb := issue(t, authn, "acme/web", "web")
	assign(t, srv, "web", "acme/web")
	if code, b := deployAs(t, srv, eng, onlyWeb, "web"); code != 202 {
		t.Fatalf("deploy web: %d %s", code, b)
	}
	code, b := deployAs(t, srv, eng, onlyWeb, "hello")
	if code != 403 || !strings.Contains(string(b), "this token is scoped to acme/web (service web); it cannot act on service hello") {
		t.Errorf("deploy of another service of the same repo: %d %s", code, b)
	}
	if _, err := eng.Status(context.Background(), "hello"); err == nil {
		t.Error("hello was created by a token scoped to web")
	}
}

func TestAuthRefusals(t *testing.T) {
	t.Parallel()
	srv, eng, authn := newScopedAPI(t, "")
	revoked, rec, err := authn.Issue("acme/web", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authn.Revoke(rec.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		code   string
		inMsg  string
	}{
		{"no header", nil, 401, "unauthorized", "missing API token"},
		{"not bearer", []string{"Authorization", adminToken}, 401, "unauthorized", "missing API token"},
		{"unknown", bearer("nope"), 401, "unknown_token", "unknown token"},
		{"unknown sluice token", bearer(auth.TokenPrefix + "nope"), 401, "unknown_token", "unknown token"},
		{"revoked", bearer(revoked), 401, "token_revoked", "token revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := call(t, srv, "POST", "/api/v1/services/web/versions", "application/gzip",
				tgz(t, map[string]string{"sluice.yaml": failFast}), tc.hdr...)
			var eb errBody
			_ = json.Unmarshal(b, &eb)
			if code != tc.status || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.inMsg) {
				t.Fatalf("got %d %s, want %d %s %q", code, b, tc.status, tc.code, tc.inMsg)
			}
		})
	}
	if _, err := eng.Status(context.Background(), "web"); err == nil {
		t.Error("a refused deploy created the service")
	}
}

func TestTokenManagement(t *testing.T) {
	t.Parallel()
	srv, eng, authn := newScopedAPI(t, "")
	scoped := issue(t, authn, "acme/web", "")

	code, b := call(t, srv, "POST", "/api/v1/tokens", "application/json", []byte(`{"repo":"acme/api","expires":"1h"}`), bearer(scoped)...)
	if code != 403 || !strings.Contains(string(b), "managing tokens needs the admin token") {
		t.Fatalf("scoped create: %d %s", code, b)
	}
	for _, tc := range []struct{ name, body, inMsg string }{
		{"bad repo", `{"repo":"acme"}`, "OWNER/NAME"},
		{"bad service", `{"repo":"acme/api","service":"Bad Name"}`, "service name"},
		{"negative", `{"repo":"acme/api","expires":"-1h"}`, "negative"},
		{"unknown field", `{"repo":"acme/api","scope":"all"}`, "scope"},
	} {
		code, b := call(t, srv, "POST", "/api/v1/tokens", "application/json", []byte(tc.body), bearer(adminToken)...)
		if code != 400 || !strings.Contains(string(b), tc.inMsg) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", tc.name, code, b, tc.inMsg)
		}
	}

	code, b = call(t, srv, "POST", "/api/v1/tokens", "application/json", []byte(`{"repo":"acme/api","expires":"1h"}`), bearer(adminToken)...)
	var created wire.TokenView
	if err := json.Unmarshal(b, &created); code != 201 || err != nil || !strings.HasPrefix(created.Token, auth.TokenPrefix) {
		t.Fatalf("admin create: %d %s", code, b)
	}
	if d := created.Expires.Sub(created.Created); d != time.Hour {
		t.Errorf("expires - created = %s, want 1h", d)
	}
	assign(t, srv, "hello", "acme/api")
	if code, b := deployAs(t, srv, eng, created.Token, "hello"); code != 202 {
		t.Fatalf("the new token deploys: %d %s", code, b)
	}

	code, b = call(t, srv, "GET", "/api/v1/tokens", "", nil, bearer(adminToken)...)
	if code != 200 || strings.Contains(string(b), created.Token) || strings.Contains(string(b), "hash") || !strings.Contains(string(b), created.ID) {
		t.Fatalf("list: %d %s; want the ids, no token text, no hash", code, b)
	}
	var list struct{ Tokens []wire.TokenView }
	if err := json.Unmarshal(b, &list); err != nil || len(list.Tokens) != 2 {
		t.Fatalf("list: %s", b)
	}

	if code, b := call(t, srv, "DELETE", "/api/v1/tokens/nope", "", nil, bearer(adminToken)...); code != 404 || !strings.Contains(string(b), "unknown_token") {
		t.Errorf("revoke unknown: %d %s", code, b)
	}
	code, b = call(t, srv, "DELETE", "/api/v1/tokens/"+created.ID, "", nil, bearer(adminToken)...)
	var revoked wire.TokenView
	if err := json.Unmarshal(b, &revoked); code != 200 || err != nil || revoked.Revoked.IsZero() || revoked.Token != "" {
		t.Fatalf("revoke: %d %s", code, b)
	}
	code, b = call(t, srv, "GET", "/api/v1/services/hello", "", nil, bearer(created.Token)...)
	if code != 401 || !strings.Contains(string(b), "token_revoked") {
		t.Errorf("revoked token: %d %s, want 401 token_revoked", code, b)
	}
}

func TestOpenAndAdminOnlyModes(t *testing.T) {
	t.Parallel()
	open, _ := newAPI(t)
	if code, b := call(t, open, "GET", "/api/v1/services", "", nil); code != 200 {
		t.Errorf("open API: %d %s", code, b)
	}
	if code, b := call(t, open, "GET", "/api/v1/tokens", "", nil); code != 404 || !strings.Contains(string(b), "tokens_disabled") {
		t.Errorf("open API tokens: %d %s, want 404 tokens_disabled", code, b)
	}
	adminOnly, _ := newAPI(t, api.WithToken(adminToken))
	if code, b := call(t, adminOnly, "GET", "/api/v1/tokens", "", nil, bearer(adminToken)...); code != 404 {
		t.Errorf("WithToken only, tokens: %d %s, want 404", code, b)
	}
}

// oidcIssuer serves an OIDC issuer (discovery and keys over real HTTP, a
// key made for the test) and returns it with a func that mints an Actions
// ID token for aud from repo, triggered by actor.
func oidcIssuer(t *testing.T) (*httptest.Server, func(aud, repo, actor string) string) {
	t.Helper()
	is := authtest.NewIssuer(t)
	return is.Server, is.ActionsToken
}

func TestOIDCTokenScopesToItsRepository(t *testing.T) {
	t.Parallel()
	iss, mint := oidcIssuer(t)
	sign := func(aud string) string { return mint(aud, "acme/web", "alice") }

	srv, eng, authn := newScopedAPI(t, iss.URL)
	assign(t, srv, "web", "acme/web")
	assign(t, srv, "hello", "acme/api")
	if code, b := deployAs(t, srv, eng, sign(publicURL), "web"); code != 202 {
		t.Fatalf("OIDC deploy: %d %s", code, b)
	}
	if st, _ := eng.Status(context.Background(), "web"); st.Repo != "acme/web" {
		t.Errorf("web belongs to %q, want acme/web from the repository claim", st.Repo)
	}
	other := issue(t, authn, "acme/api", "")
	deployAs(t, srv, eng, other, "hello")
	if code, b := call(t, srv, "GET", "/api/v1/services/hello", "", nil, bearer(sign(publicURL))...); code != 403 {
		t.Errorf("OIDC token on another repo's service: %d %s, want 403", code, b)
	}
	code, b := deployAs(t, srv, eng, sign("https://elsewhere.example.com"), "web")
	if code != 401 || !strings.Contains(string(b), "oidc_wrong_audience") || !strings.Contains(string(b), publicURL) {
		t.Errorf("wrong audience: %d %s, want 401 oidc_wrong_audience naming %s", code, b, publicURL)
	}
	if st, _ := eng.Status(context.Background(), "web"); len(st.Versions) != 1 {
		t.Errorf("refused deploy added a version: %d", len(st.Versions))
	}
}
