package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/dashboard"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// fakeEngine serves fixed statuses.
type fakeEngine map[string]rollout.ServiceStatus

func (f fakeEngine) Services(context.Context) ([]string, error) {
	var out []string
	for n := range f {
		out = append(out, n)
	}
	return out, nil
}

func (f fakeEngine) Status(_ context.Context, s string) (rollout.ServiceStatus, error) {
	st, ok := f[s]
	if !ok {
		return st, &rollout.Error{Kind: rollout.KindNotFound, Code: rollout.ErrCodeUnknownService, Message: `unknown service "` + s + `"`}
	}
	return st, nil
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDashboardShowsVersionsButNoDetails(t *testing.T) {
	v1 := rollout.VersionStatus{Version: rollout.Version{Name: "hello-001", Status: rollout.StatusNormal}, URL: "http://hello-001.hello.localhost:8000/", Traffic: 90}
	v2 := rollout.VersionStatus{Version: rollout.Version{Name: "hello-002", Status: rollout.StatusFailed,
		Reason: rollout.Reason{Code: "ProcessExited", Detail: "log: password=hunter2", Suggestion: "Fix the run command."}}}
	eng := fakeEngine{"hello": {Name: "hello", URL: "http://hello.localhost:8000/", Stable: "hello-001",
		Versions: []rollout.VersionStatus{v1, v2},
		Policy:   policy.Policy{Split: map[string]int{"hello-001": 100}, Rules: []policy.Rule{{Version: "hello-001", Match: map[string]string{"env": "beta*"}}}}}}
	e := echo.New()
	dashboard.Register(e, eng)
	srv := httptest.NewServer(e)
	defer srv.Close()

	for _, path := range []string{"/dashboard", "/dashboard/services/hello"} {
		code, body := get(t, srv, path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		for _, want := range []string{`id="hello-001"`, "hello-002", "ProcessExited", "Fix the run command.", "90%", "rule 1: env=beta*"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", path, want)
			}
		}
		if strings.Contains(body, "hunter2") {
			t.Errorf("%s shows a failure's detail", path)
		}
	}
	if code, _ := get(t, srv, "/dashboard/services/nope"); code != http.StatusNotFound {
		t.Fatalf("unknown service: %d", code)
	}
	if p := dashboard.VersionPath("hello", "hello-002"); p != "/dashboard/services/hello#hello-002" {
		t.Fatalf("VersionPath: %s", p)
	}
}

// TestAnonymousDashboard: a public dashboard read by an anonymous client
// names no repository, no actor and no build or run command.
func TestAnonymousDashboard(t *testing.T) {
	v1 := rollout.VersionStatus{Version: rollout.Version{Name: "hello-001", Status: rollout.StatusNormal,
		Config:    rollout.Config{Build: "go build -ldflags=-X.key=s3cret-build", Run: "./app --secret-run"},
		CreatedBy: rollout.Origin{Via: "comment", Actor: "alice-secret", PR: 12, Repo: "acme/private-repo", URL: "https://github.com/acme/private-repo/pull/12"}}}
	eng := fakeEngine{"hello": {Name: "hello", Repo: "acme/private-repo", Stable: "hello-001", Versions: []rollout.VersionStatus{v1},
		Policy: policy.Policy{Split: map[string]int{"hello-001": 100}}}}
	for _, tc := range []struct {
		name string
		opts []dashboard.Option
		leak bool
	}{{"public", []dashboard.Option{dashboard.Anonymous()}, false}, {"operator's", nil, true}} {
		e := echo.New()
		dashboard.Register(e, eng, tc.opts...)
		srv := httptest.NewServer(e)
		for _, path := range []string{"/dashboard", "/dashboard/services/hello"} {
			code, body := get(t, srv, path)
			if code != 200 || !strings.Contains(body, "hello-001") {
				t.Fatalf("%s %s: %d", tc.name, path, code)
			}
			leaked := false
			for _, secret := range []string{"private-repo", "alice-secret", "s3cret-build", "secret-run", "PR #12"} {
				leaked = leaked || strings.Contains(body, secret)
				if !tc.leak && strings.Contains(body, secret) {
					t.Errorf("%s dashboard %s shows %q to an anonymous reader", tc.name, path, secret)
				}
			}
			if tc.leak && !leaked {
				t.Errorf("the operator's dashboard shows none of the markers; the public check proves nothing")
			}
		}
		srv.Close()
	}
}

// TestGuardedDashboard: without --public-dashboard the page is behind the
// guard (the admin token); an anonymous client gets nothing.
func TestGuardedDashboard(t *testing.T) {
	eng := fakeEngine{"hello": {Name: "hello", Repo: "acme/web"}}
	e := echo.New()
	dashboard.Register(e, eng, dashboard.WithMiddleware(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Request().Header.Get("Authorization") != "Bearer admin" {
				return c.String(http.StatusUnauthorized, "admin token needed\n")
			}
			return next(c)
		}
	}))
	srv := httptest.NewServer(e)
	defer srv.Close()
	for _, path := range []string{"/dashboard", "/dashboard/services/hello"} {
		if code, body := get(t, srv, path); code != http.StatusUnauthorized || strings.Contains(body, "acme/web") {
			t.Errorf("anonymous %s: %d %s, want 401", path, code, body)
		}
	}
}

func TestDashboardHidesSecretsAndURLCredentials(t *testing.T) {
	v := rollout.VersionStatus{Version: rollout.Version{Name: "hello-001", Status: rollout.StatusFailed,
		Config: rollout.Config{Env: map[string]string{"UPSTREAM": "tok3n-Zq81-xy"}},
		Reason: rollout.Reason{Code: "HealthCheckFailed",
			Suggestion: "Check https://deploy:pa55word@db.internal/ and tok3n-Zq81-xy, or ask with admin-t0ken-123."}}}
	eng := fakeEngine{"hello": {Name: "hello", Versions: []rollout.VersionStatus{v},
		Policy: policy.Policy{Rules: []policy.Rule{{Version: "hello-001", Match: map[string]string{"key": "tok3n-Zq81-xy"}}}}}}
	e := echo.New()
	dashboard.Register(e, eng, dashboard.WithSecrets("admin-t0ken-123"))
	srv := httptest.NewServer(e)
	defer srv.Close()
	_, body := get(t, srv, "/dashboard")
	for _, secret := range []string{"pa55word", "tok3n-Zq81-xy", "admin-t0ken-123"} {
		if strings.Contains(body, secret) {
			t.Errorf("the page shows %q", secret)
		}
	}
	if !strings.Contains(body, "https://deploy:***@db.internal/") || !strings.Contains(body, "key=***") {
		t.Errorf("the page lost what is not secret:\n%s", body)
	}
	if eng["hello"].Versions[0].Reason.Suggestion == "" || eng["hello"].Policy.Rules[0].Match["key"] != "tok3n-Zq81-xy" {
		t.Error("the engine's statuses were changed")
	}
}
