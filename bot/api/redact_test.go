package api_test

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/internal/enginetest"
)

// deployWithSecrets serves the API with the admin token and configured
// secrets, and has a token of acme/web deploy web-001, whose env holds a
// secret-looking value and a plain word and whose run command prints
// them, a URL with credentials and the configured secrets, then fails.
// It returns the server, the scoped token and the deploy's answer.
func deployWithSecrets(t *testing.T) (*httptest.Server, string, string) {
	t.Helper()
	w := enginetest.New(t, t.TempDir())
	authn := auth.New(w.DB, auth.WithAdminToken(adminToken))
	e := echo.New()
	api.Register(e, w.Engine, api.WithAuthenticator(authn), api.WithSecrets(adminToken, "app-private-key-line"),
		api.WithLogger(slog.New(slog.DiscardHandler)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	y := "services:\n  web:\n    run: echo \"db=postgres://app:pw-Xy12@db/x up=$UPSTREAM t=admin-s3cret k=app-private-key-line mode=$MODE\"; exit 1\n" +
		"    env: {UPSTREAM: Zk29-qq81-Lm, MODE: production}\n"
	assign(t, srv, "web", "acme/web")
	token := issue(t, authn, "acme/web", "")
	code, b := call(t, srv, "POST", "/api/v1/services/web/versions", "application/gzip", tgz(t, map[string]string{"sluice.yaml": y}), bearer(token)...)
	if code != 201 && code != 202 {
		t.Fatalf("deploy: %d %s", code, b)
	}
	w.Engine.Wait()
	return srv, token, string(b)
}

func TestLogsReadWithAScopedTokenHideSecrets(t *testing.T) {
	srv, token, _ := deployWithSecrets(t)
	logs := func(tok string) string {
		code, b := call(t, srv, "GET", "/api/v1/services/web/versions/web-001/logs", "", nil, bearer(tok)...)
		if code != 200 {
			t.Fatalf("logs: %d %s", code, b)
		}
		return string(b)
	}
	scoped := logs(token)
	for _, secret := range []string{"pw-Xy12", "Zk29-qq81-Lm", "admin-s3cret", "app-private-key-line"} {
		if strings.Contains(scoped, secret) {
			t.Errorf("a scoped token reads %q in:\n%s", secret, scoped)
		}
	}
	if !strings.Contains(scoped, "db=postgres://app:***@db/x up=*** t=*** k=*** mode=production") {
		t.Errorf("scoped logs:\n%s", scoped)
	}
	if admin := logs(adminToken); !strings.Contains(admin, "pw-Xy12") || !strings.Contains(admin, "Zk29-qq81-Lm") {
		t.Errorf("the admin's logs are redacted too:\n%s", admin)
	}
}

// TestStatusReadWithAScopedTokenHidesSecrets: env values that look like
// secrets leave sluice in clear to the admin only. A token of the
// service's own repository reads every status, version, event and
// deploy answer with them masked, and with the configured secrets and
// URL credentials masked in every text that quotes them.
func TestStatusReadWithAScopedTokenHidesSecrets(t *testing.T) {
	srv, token, deployed := deployWithSecrets(t)
	secrets := []string{"pw-Xy12", "Zk29-qq81-Lm", "admin-s3cret", "app-private-key-line"}
	answers := map[string]string{"deploy": deployed}
	for _, path := range []string{"/api/v1/services", "/api/v1/services/web", "/api/v1/services/web/versions/web-001",
		"/api/v1/services/web/events"} {
		code, b := call(t, srv, "GET", path, "", nil, bearer(token)...)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		answers[path] = string(b)
		code, admin := call(t, srv, "GET", path, "", nil, bearer(adminToken)...)
		if code != 200 || !strings.Contains(string(admin), "Zk29-qq81-Lm") {
			t.Errorf("the admin does not read the env in clear at %s: %d %s", path, code, admin)
		}
	}
	for what, body := range answers {
		for _, secret := range secrets {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows %q to a scoped token:\n%s", what, secret, body)
			}
		}
	}
	for _, want := range []string{`"UPSTREAM":"***"`, `"MODE":"production"`} {
		if !strings.Contains(answers["/api/v1/services/web"], want) {
			t.Errorf("status lacks %s:\n%s", want, answers["/api/v1/services/web"])
		}
	}
}
