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
)

// fakeEngine serves fixed statuses.
type fakeEngine map[string]rollout.ServiceStatus

func (f fakeEngine) Services() ([]string, error) {
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
		Policy:   rollout.Policy{Split: map[string]int{"hello-001": 100}, Rules: []rollout.Rule{{Version: "hello-001", Match: map[string]string{"env": "beta*"}}}}}}
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
