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

func TestLogsReadWithAScopedTokenHideSecrets(t *testing.T) {
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
