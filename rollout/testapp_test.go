package rollout_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testpar"
	"github.com/sluicehq/sluice/rollout/source"
)

// The test binary doubles as the deployed app: with TESTAPP_MODE set it
// behaves as a tiny service instead of running tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("TESTAPP_MODE"); mode != "" {
		runApp(mode)
		return
	}
	// These tests mostly wait on the apps they deploy (starts, health
	// probes, start timeouts), so more of them run at once than there
	// are CPUs, unless -parallel says otherwise.
	testpar.MostlyWaiting()
	os.Exit(m.Run())
}

func runApp(mode string) {
	switch mode {
	case "exit":
		fmt.Println("fatal: cannot open config file app.conf")
		os.Exit(3)
	case "needfile":
		// Exits while $NEEDFILE is missing, leaving $NEEDFILE.missed
		// behind so a test can tell that a start was tried.
		if _, err := os.Stat(os.Getenv("NEEDFILE")); err != nil {
			fmt.Println("missing", os.Getenv("NEEDFILE"))
			_ = os.WriteFile(os.Getenv("NEEDFILE")+".missed", nil, 0o644)
			os.Exit(4)
		}
	case "gated":
		// Healthy only once the file $GATE is gone; says so once while it
		// waits, and leaves its pid beside the gate.
		if gate := os.Getenv("GATE"); gate != "" {
			if _, err := os.Stat(gate); err == nil {
				_ = os.WriteFile(gate+".pid", []byte(strconv.Itoa(os.Getpid())), 0o644)
				fmt.Println("waiting for the gate")
			}
			for {
				if _, err := os.Stat(gate); err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	case "nolisten":
		fmt.Println("listening on port 9 (ignoring $PORT)")
		time.Sleep(time.Hour)
	}
	version, greeting := os.Getenv("SLUICE_VERSION"), os.Getenv("GREETING")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if mode == "unhealthy" {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if mode == "errors" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		if d := r.URL.Query().Get("sleep"); d != "" {
			t, _ := time.ParseDuration(d)
			time.Sleep(t)
		}
		fmt.Fprintf(w, "%s %s", version, greeting)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	fmt.Println("serving", version)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// appSource writes a source tree whose sluice.yaml runs this test binary in
// mode, and returns it packed.
func appSource(t testing.TB, service, mode string, extra string) []byte {
	t.Helper()
	return appSourceGated(t, service, mode, "", extra)
}

// appSourceGated is appSource with GATE set to gate (the "gated" mode's
// file) when gate is not "".
func appSourceGated(t testing.TB, service, mode, gate, extra string) []byte {
	t.Helper()
	gateEnv := ""
	if gate != "" {
		gateEnv = fmt.Sprintf(", GATE: %q", gate)
	}
	dir := t.TempDir()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`services:
  %s:
    run: exec "$TESTAPP_BIN"
    health: /healthz
    env: {TESTAPP_MODE: %s, TESTAPP_BIN: %q, GREETING: hi%s}
    timeouts: {start: %s, build: 60s}
%s`, service, mode, bin, gateEnv, startTimeout(mode), indent(extra))
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// startTimeout is the start timeout of an app in mode: long, so a loaded
// machine starts healthy apps in time (failing health checks end early
// anyway), except for an app that never listens, whose failure is the
// timeout itself.
func startTimeout(mode string) string {
	if mode == "nolisten" {
		return "5s"
	}
	return "60s"
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
