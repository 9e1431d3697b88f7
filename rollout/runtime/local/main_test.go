package local

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testpar"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// The test binary doubles as the app under test: with LOCALTEST_APP set it
// behaves as a tiny HTTP service in the given mode instead of running tests,
// and started as a namespace init it is one.
func TestMain(m *testing.M) {
	RunNamespaceInit()
	if mode := os.Getenv("LOCALTEST_APP"); mode != "" {
		os.Exit(runApp(mode))
	}
	// The tests mostly wait on the processes they start.
	testpar.MostlyWaiting()
	os.Exit(m.Run())
}

// runApp modes:
//
//	serve      /healthz → 200, / → the app's view of its environment
//	exit       print a line, exit 3
//	nolisten   run forever, never listen
//	unhealthy  listen, /healthz → 500
//	silent     accept connections, never answer
//	crash      like serve, exit 4 LOCALTEST_CRASH_AFTER after its first
//	           health answer; with LOCALTEST_STATE only the first time (the
//	           file marks it)
//	chatty     like serve, printing a line of 500 bytes every 5ms
//	extraport  like serve, and also listen on a second, free port, printing
//	           "extra port N": at once, or with LOCALTEST_EXTRA=request on
//	           GET /open
//
// LOCALTEST_PIDFILE appends the pid; LOCALTEST_IGNORE_TERM ignores SIGTERM;
// LOCALTEST_PORTFILE appends $PORT, then, while the file LOCALTEST_GATE
// exists, the app waits before it does anything else.
func runApp(mode string) int {
	if os.Getenv("LOCALTEST_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	}
	if f := os.Getenv("LOCALTEST_PIDFILE"); f != "" { // after Ignore: the pid says "ready"
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintln(fh, os.Getpid())
			fh.Close()
		}
	}
	if f := os.Getenv("LOCALTEST_PORTFILE"); f != "" {
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintln(fh, os.Getenv("PORT"))
			fh.Close()
		}
	}
	for gate := os.Getenv("LOCALTEST_GATE"); gate != ""; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(gate); err != nil {
			break
		}
	}
	addr := "127.0.0.1:" + os.Getenv("PORT")
	mux := http.NewServeMux()
	var answered sync.Once
	onHealthz := func() {} // run once, after the first health answer
	serve := func(health int) int {
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(health)
			answered.Do(onHealthz)
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			for _, k := range []string{"GREETING", "PORT", "SLUICE_VERSION", "SLUICE_OWNER"} {
				fmt.Fprintf(w, "%s=%s\n", k, os.Getenv(k))
			}
			fmt.Fprintf(w, "PID=%d\n", os.Getpid())
		})
		fmt.Println("listening on", addr)
		if err := http.ListenAndServe(addr, mux); err != nil {
			fmt.Println("serve:", err)
			return 1
		}
		return 0
	}
	switch mode {
	case "serve":
		return serve(http.StatusOK)
	case "unhealthy":
		return serve(http.StatusInternalServerError)
	case "exit":
		fmt.Println("fatal: cannot open config.yaml")
		return 3
	case "nolisten":
		fmt.Println("starting without listening")
		select {}
	case "silent":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return 1
		}
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			held = append(held, c) //lint:ignore SA4010 held keeps the accepted connections open, unanswered
		}
	case "chatty":
		go func() {
			line := strings.Repeat("x", 499)
			for i := 0; ; i++ {
				fmt.Println(line)
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return serve(http.StatusOK)
	case "extraport":
		open := func() {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fmt.Println("extra listen:", err)
				return
			}
			fmt.Println("extra port", ln.Addr().(*net.TCPAddr).Port)
			go func() { _ = http.Serve(ln, http.NotFoundHandler()) }()
		}
		if os.Getenv("LOCALTEST_EXTRA") == "request" {
			mux.HandleFunc("/open", func(http.ResponseWriter, *http.Request) { open() })
		} else {
			open()
		}
		return serve(http.StatusOK)
	case "crash":
		state := os.Getenv("LOCALTEST_STATE")
		if state == "" || createOnce(state) {
			// Counted from the first health answer, not from the start,
			// so however slowly the machine starts it, the instance is
			// up (healthy) before it crashes.
			d, _ := time.ParseDuration(os.Getenv("LOCALTEST_CRASH_AFTER"))
			onHealthz = func() {
				time.AfterFunc(d, func() {
					fmt.Println("crashing now")
					os.Exit(4)
				})
			}
		}
		return serve(http.StatusOK)
	}
	fmt.Println("unknown mode", mode)
	return 2
}

func createOnce(path string) bool {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// testBin is the absolute path of the test binary, run as the app.
func testBin(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newLocal(t *testing.T) *Local {
	t.Helper()
	l, err := New(t.TempDir(),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithDrainGrace(500*time.Millisecond),
		WithRestartBackoff(50*time.Millisecond, 400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tarGz builds a real source archive from name → content.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// appSpec is a spec whose instances run the test binary in mode.
func appSpec(t *testing.T, version, mode string, env map[string]string) runtime.Spec {
	t.Helper()
	e := map[string]string{"LOCALTEST_BIN": testBin(t), "LOCALTEST_APP": mode}
	for k, v := range env {
		e[k] = v
	}
	return runtime.Spec{
		Service:      "hello",
		Version:      version,
		Generation:   1,
		Archive:      tarGz(t, map[string]string{"sluice.yaml": "services: {}\n", "README": "hello\n"}),
		Run:          `exec "$LOCALTEST_BIN"`,
		Health:       "/healthz",
		Env:          e,
		Instances:    1,
		BuildTimeout: 5 * time.Second,
		StartTimeout: 15 * time.Second, // long: a loaded machine starts slowly; failing tests set their own
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustBuild(t *testing.T, l *Local, spec runtime.Spec) {
	t.Helper()
	if err := l.Build(ctxT(t), spec); err != nil {
		t.Fatalf("Build: %v", err)
	}
}

func asFailure(t *testing.T, err error) *runtime.Failure {
	t.Helper()
	var f *runtime.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *runtime.Failure", err, err)
	}
	return f
}

// processGone reports whether pid no longer runs (a zombie counts as gone).
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	st, ok := readStat(pid)
	return !ok || st.zombie()
}

// readPids reads the pids apps appended to path.
func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		pid, err := strconv.Atoi(string(f))
		if err != nil {
			t.Fatalf("pid file: %v", err)
		}
		pids = append(pids, pid)
	}
	return pids
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
