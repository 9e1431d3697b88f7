package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/cli"
	"github.com/sluicehq/sluice/internal/enginetest"
)

// tokenServer serves the API as serve wires it, with admin token "adm".
func tokenServer(t *testing.T) (*httptest.Server, *auth.Authenticator) {
	t.Helper()
	w := enginetest.New(t, t.TempDir())
	authn := auth.New(w.DB, auth.WithAdminToken("adm"))
	e := echo.New()
	api.Register(e, w.Engine, api.WithAuthenticator(authn), api.WithLogger(slog.New(slog.DiscardHandler)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, authn
}

func TestTokenVerbs(t *testing.T) {
	t.Parallel()
	srv, authn := tokenServer(t)
	admin := cli.ClientFlags{Server: srv.URL, Token: "adm"}
	run := func(cmd interface{ Run(*cli.Env) error }) (string, error) {
		var out bytes.Buffer
		err := cmd.Run(&cli.Env{Ctx: context.Background(), Stdout: &out})
		return out.String(), err
	}

	out, err := run(&cli.TokenCreateCmd{ClientFlags: admin, Repo: "acme/web", Service: "web", Expires: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(out)
	if !strings.HasPrefix(text, auth.TokenPrefix) || strings.Contains(text, "\n") {
		t.Fatalf("create printed %q, want the token alone", out)
	}
	p, err := authn.Authenticate(context.Background(), text)
	if err != nil || p.Repo != "acme/web" || p.Service != "web" {
		t.Fatalf("the printed token authenticates as %+v, %v", p, err)
	}

	out, err = run(&cli.TokenListCmd{ClientFlags: admin})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "acme/web") ||
		!strings.Contains(lines[1], p.Subject) || strings.Contains(out, text) {
		t.Fatalf("list:\n%s", out)
	}

	if out, err = run(&cli.TokenRevokeCmd{ClientFlags: admin, ID: p.Subject}); err != nil || !strings.HasPrefix(out, "revoked "+p.Subject) {
		t.Fatalf("revoke: %q, %v", out, err)
	}
	if _, err := authn.Authenticate(context.Background(), text); err == nil {
		t.Error("the revoked token still authenticates")
	}

	// Refusals come back as the server's one-line message.
	scoped, _, err := authn.Issue("acme/web", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cmd   interface{ Run(*cli.Env) error }
		inErr string
	}{
		{"scoped token", &cli.TokenListCmd{ClientFlags: cli.ClientFlags{Server: srv.URL, Token: scoped}}, "managing tokens needs the admin token"},
		{"revoked token", &cli.TokenListCmd{ClientFlags: cli.ClientFlags{Server: srv.URL, Token: text}}, "token revoked"},
		{"no token", &cli.TokenListCmd{ClientFlags: cli.ClientFlags{Server: srv.URL}}, "missing API token"},
		{"bad repo", &cli.TokenCreateCmd{ClientFlags: admin, Repo: "acme", Expires: time.Hour}, "OWNER/NAME"},
		{"unknown id", &cli.TokenRevokeCmd{ClientFlags: admin, ID: "nope"}, `no token with id "nope"`},
		{"no server", &cli.TokenListCmd{ClientFlags: cli.ClientFlags{Server: "http://127.0.0.1:1", Token: "adm"}}, "cannot reach the sluice server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := run(tc.cmd); err == nil || !strings.Contains(err.Error(), tc.inErr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want one line with %q", err, tc.inErr)
			}
		})
	}
}
