// Package apitest serves sluice's real HTTP API (bot/api) over a real
// engine for the tests of its clients (bot/remote, bot/cli), and turns a
// test binary into a tiny app those tests deploy. Test support only: it
// imports the store and the local runtime through enginetest.
package apitest

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout/source"
)

// AdminToken is the admin token of every Server.
const AdminToken = "admin-s3cret"

// MaxUpload is every Server's limit on an uploaded source, in bytes.
const MaxUpload = 64 << 10

// Server is the API over a real engine: bbolt in a temporary directory,
// the local runtime running real processes, the router on loopback; it
// answers on URL, over loopback HTTP, until the test ends.
type Server struct {
	URL   string
	World *enginetest.World
	Auth  *auth.Authenticator
}

// New starts a Server whose API takes AdminToken and the tokens Auth
// issues.
func New(t *testing.T) *Server {
	t.Helper()
	w := enginetest.New(t, t.TempDir())
	authn := auth.New(w.DB, auth.WithAdminToken(AdminToken))
	e := echo.New()
	api.Register(e, w.Engine, api.WithAuthenticator(authn), api.WithMaxUpload(MaxUpload), api.WithLogger(slog.New(slog.DiscardHandler)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL, World: w, Auth: authn}
}

// Modes of the test app.
const (
	// Serve answers every path with "<version> <$GREETING>".
	Serve = "serve"
	// Exit prints a line and exits 3 at once: the version fails.
	Exit = "exit"
)

// RunApp is called first by a TestMain: when the binary runs as the test
// app it serves (or fails) and never returns; otherwise it returns.
func RunApp() {
	switch os.Getenv("TESTAPP_MODE") {
	case "":
		return
	case Exit:
		fmt.Println("fatal: cannot open config file app.conf")
		os.Exit(3)
	}
	fmt.Println("serving", os.Getenv("SLUICE_VERSION"))
	err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", os.Getenv("SLUICE_VERSION"), os.Getenv("GREETING"))
	}))
	fmt.Println(err)
	os.Exit(1)
}

// AppDir writes a source directory whose sluice.yaml declares service,
// running the test binary as the app in mode (Serve or Exit).
func AppDir(t *testing.T, service, mode string) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	yaml := fmt.Sprintf("services:\n  %s:\n    run: exec \"$TESTAPP_BIN\"\n    env: {TESTAPP_MODE: %s, TESTAPP_BIN: %q, GREETING: hi}\n    timeouts: {start: 60s}\n",
		service, mode, bin)
	if err := os.WriteFile(filepath.Join(dir, source.ManifestName), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// AppSource is AppDir packed as a tar.gz, as an upload sends it.
func AppSource(t *testing.T, service, mode string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := source.Pack(AppDir(t, service, mode), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
