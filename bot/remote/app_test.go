package remote_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/rollout/source"
)

// The test binary doubles as the deployed app: with TESTAPP_MODE set it
// serves $PORT instead of running tests ("exit" fails at once).
func TestMain(m *testing.M) {
	switch os.Getenv("TESTAPP_MODE") {
	case "":
		os.Exit(m.Run())
	case "exit":
		fmt.Println("fatal: cannot open config file app.conf")
		os.Exit(3)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", os.Getenv("SLUICE_VERSION"), os.Getenv("GREETING"))
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// appSource packs a source tree whose sluice.yaml declares service,
// running this test binary in mode ("serve" or "exit").
func appSource(t *testing.T, service, mode string) []byte {
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
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
