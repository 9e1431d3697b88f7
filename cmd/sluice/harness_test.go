package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testpar"
)

// The tests of this package run the real binary: `sluice serve` as a child
// process with a real data directory on loopback sockets the test owns,
// and the CLI verbs against it. The harness, for tests that need a server:
//
//	t.Parallel()                              // every server has its own sockets and data
//	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN=…")
//	v := s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait")
//	out, errs, code := s.cli("traffic", "hello", v+"=100")
//	version, body, err := s.get("hello.localhost", "env=beta")  // through the router
//	st := s.status("hello")                   // `sluice status --json`, decoded
//
// sluiceBin and helloBin are built once per package run by TestMain.
// Nothing here depends on the machine: no fixed ports, no process search;
// tests may run in parallel.

var (
	sluiceBin string // the sluice binary, built once by TestMain
	helloBin  string // examples/hello, prebuilt for fast deploys
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Run as root, serve runs deployed code as another user, which must be
	// able to run the prebuilt binaries.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	helloBin = filepath.Join(dir, "hello")
	// The two builds share nothing, so they run side by side.
	builds := [][]string{{sluiceBin, "."}, {helloBin, "../../examples/hello"}}
	failed := make([]string, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", b[0], ".")
			cmd.Dir = b[1]
			if out, err := cmd.CombinedOutput(); err != nil {
				failed[i] = fmt.Sprintf("build %s: %v\n%s", b[1], err, out)
			}
		})
	}
	wg.Wait()
	for _, f := range failed {
		if f != "" {
			fmt.Fprint(os.Stderr, f)
			os.Exit(1)
		}
	}
	// These tests mostly wait on child processes (servers, builds, health
	// probes).
	testpar.MostlyWaiting()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// reserved maps each address freePort handed out to its listening socket.
var reserved sync.Map // string -> *os.File

// freePort reserves a loopback address for the rest of the test: it opens
// a listening socket on 127.0.0.1:0 and keeps it. Nothing else can take
// the address, and startServer hands that very socket to `sluice serve`
// (as --listen fd:N), so a server restarted on the same addresses (after
// SIGKILL, say) gets the same socket back. Connections made while no
// server runs wait in the socket's queue. For an address nothing answers
// on, use unusedAddr.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	l.Close() // f holds the socket
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	reserved.Store(addr, f)
	t.Cleanup(func() {
		reserved.Delete(addr)
		f.Close()
	})
	return addr
}

// unusedAddr is a loopback address nothing listens on: connecting to it
// is refused (the port was free a moment ago; the kernel does not hand an
// ephemeral port out again at once).
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// traversable lets every user pass (not list) the test directories above
// data, as serve running as root requires of a data directory whose
// deployed code runs as another user.
func traversable(t *testing.T, data string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(data); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}

// server is one `sluice serve` child process.
type server struct {
	t          *testing.T
	cmd        *exec.Cmd
	data       string
	api, route string
	logs       *syncBuffer // the server's stdout and stderr; readable while it runs
	listening  time.Time   // when the API first answered /healthz
}

// syncBuffer is a bytes.Buffer that a child process's output may be
// written to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns a copy of what was written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written so far.
func (b *syncBuffer) Bytes() []byte { return []byte(b.String()) }

// startServer starts `sluice serve` on data with the API on api and the
// router on route (addresses from freePort are passed as their sockets;
// any other address is given to serve as it is), plus extra KEY=VALUE
// environment. It returns once /healthz answers; the server gets SIGTERM
// when the test ends, and its log is printed if the test failed.
func startServer(t *testing.T, data, api, route string, extraEnv ...string) *server {
	t.Helper()
	return startServerCmd(t, exec.Command(sluiceBin, "serve"), data, api, route, extraEnv...)
}

// startServerCmd is startServer with the command that runs `sluice serve`
// (through a shell that sets limits, say; it must keep the descriptors it
// is given).
func startServerCmd(t *testing.T, cmd *exec.Cmd, data, api, route string, extraEnv ...string) *server {
	t.Helper()
	traversable(t, data)
	s := &server{t: t, data: data, api: api, route: route, logs: &syncBuffer{}}
	s.cmd = cmd
	s.cmd.Env = append(os.Environ(), "SLUICE_DATA="+data, "SLUICE_DRAIN_GRACE=2s")
	for _, l := range []struct{ env, addr string }{{"SLUICE_LISTEN", api}, {"SLUICE_ROUTER_LISTEN", route}} {
		v := l.addr
		if f, ok := reserved.Load(l.addr); ok {
			s.cmd.ExtraFiles = append(s.cmd.ExtraFiles, f.(*os.File))
			v = fmt.Sprintf("fd:%d", 2+len(s.cmd.ExtraFiles))
		}
		s.cmd.Env = append(s.cmd.Env, l.env+"="+v)
	}
	s.cmd.Env = append(s.cmd.Env, extraEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			_ = s.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	// A reserved socket accepts connections before serve does; a request
	// waits in its queue until serve answers, so each try has a timeout.
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r, err := c.Get("http://" + api + "/healthz"); err == nil {
			r.Body.Close()
			s.listening = time.Now()
			return s
		}
	}
	t.Fatalf("server did not start:\n%s", s.logs.String())
	return nil
}

// cli runs a client verb and returns stdout, stderr and the exit code.
func (s *server) cli(args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	cmd.Env = append(os.Environ(), "SLUICE_SERVER=http://"+s.api)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs a verb that must succeed and returns its trimmed stdout.
func (s *server) ok(args ...string) string {
	s.t.Helper()
	out, errs, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("sluice %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return strings.TrimSpace(out)
}

// get fetches a URL through the router, with host as the Host header, and
// returns the X-Sluice-Version that answered and the body; any status but
// 200 is an error.
func (s *server) get(host, query string) (string, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.route+"/?"+query, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.Header.Get("X-Sluice-Version"), string(b), fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp.Header.Get("X-Sluice-Version"), string(b), nil
}

type statusView struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Versions []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		URL    string `json:"url"`
		Reason struct {
			Code, Detail, Suggestion string
		} `json:"reason"`
		Config struct {
			Env       map[string]string `json:"env"`
			Instances int               `json:"instances"`
			Run       string            `json:"run"`
		} `json:"config"`
		Instances []struct {
			PID int `json:"pid"`
		} `json:"instances"`
	} `json:"versions"`
	Policy struct {
		Rules []struct {
			Version string            `json:"version"`
			Match   map[string]string `json:"match"`
		} `json:"rules"`
		Split map[string]int `json:"split"`
	} `json:"policy"`
}

// status is `sluice status SERVICE --json`, decoded.
func (s *server) status(service string) statusView {
	s.t.Helper()
	var st statusView
	if err := json.Unmarshal([]byte(s.ok("status", service, "--json")), &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// fastSource writes a source dir whose service hello runs the prebuilt
// hello binary (no build unless build is given: a shell command).
func fastSource(t *testing.T, build string) string {
	dir := t.TempDir()
	yaml := fmt.Sprintf("services:\n  hello:\n    run: exec %q\n    health: /healthz\n    env: {GREETING: hi}\n    timeouts: {start: 5s}\n", helloBin)
	if build != "" {
		yaml += fmt.Sprintf("    build: %q\n", build)
	}
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// slowBuild is a build command that runs for a minute, marked by a
// variable unique to the test; pid finds its process from the outside
// (the build may run as another user, in its own PID namespace, where its
// own idea of its pid differs from the host's).
type slowBuild struct{ mark string }

func newSlowBuild(t *testing.T) slowBuild {
	return slowBuild{mark: "SLUICE_TEST_SLOW_BUILD=" + t.TempDir()}
}

func (b slowBuild) command() string { return "exec env '" + b.mark + "' sleep 60" }

// pid waits until the build has started and returns its process id.
func (b slowBuild) pid(t *testing.T) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err == nil && slices.Contains(strings.Split(string(env), "\x00"), b.mark) && alive(pid) {
				return pid
			}
		}
	}
	t.Fatal("the build did not start")
	return 0
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// alive says whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is not running anything.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
