package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary: `sluice serve` as a child process on
// loopback ports with a real data directory, and the CLI verbs against it.

var (
	sluiceBin string // built once by TestMain
	helloBin  string // examples/hello, prebuilt for fast deploys
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	helloBin = filepath.Join(dir, "hello")
	for _, b := range [][]string{{sluiceBin, "."}, {helloBin, "../../examples/hello"}} {
		cmd := exec.Command("go", "build", "-o", b[0], ".")
		cmd.Dir = b[1]
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is one `sluice serve` child process.
type server struct {
	t          *testing.T
	cmd        *exec.Cmd
	data       string
	api, route string
	logs       *bytes.Buffer
	listening  time.Time // when the router accepted its first connection
}

func startServer(t *testing.T, data, api, route string, extraEnv ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, api: api, route: route, logs: &bytes.Buffer{}}
	s.cmd = exec.Command(sluiceBin, "serve")
	s.cmd.Env = append(os.Environ(), "SLUICE_DATA="+data, "SLUICE_LISTEN="+api, "SLUICE_ROUTER_LISTEN="+route,
		"SLUICE_DRAIN_GRACE=2s")
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
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", route); err == nil {
			s.listening = time.Now()
			c.Close()
			if r, err := http.Get("http://" + api + "/healthz"); err == nil {
				r.Body.Close()
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
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

// get fetches a URL through the router, with host as the Host header.
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
			PID int `json:"PID"`
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

func (s *server) status(service string) statusView {
	s.t.Helper()
	var st statusView
	if err := json.Unmarshal([]byte(s.ok("status", service, "--json")), &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// fastSource writes a source dir that runs the prebuilt hello binary.
func fastSource(t *testing.T, build string) string {
	dir := t.TempDir()
	yaml := fmt.Sprintf("services:\n  hello:\n    run: exec %q\n    health: /healthz\n    env: {GREETING: hi}\n    timeouts: {start: 5s}\n", helloBin)
	if build != "" {
		yaml += "    build: " + build + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestREADMEWalkthrough(t *testing.T) {
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	src := "../../examples/hello"
	if v := s.ok("deploy", "hello", "--source", src, "--wait"); v != "hello-001" {
		t.Fatalf("deploy printed %q", v)
	}
	if _, body, err := s.get("hello.localhost", ""); err != nil || body != "hi from hello-001\n" {
		t.Fatalf("v1: %q %v", body, err)
	}
	if v := s.ok("deploy", "hello", "--source", src, "--strategy", "canary", "--wait"); v != "hello-002" {
		t.Fatalf("deploy printed %q", v)
	}
	if _, body, _ := s.get("hello-002.hello.localhost", ""); body != "hi from hello-002\n" {
		t.Fatalf("version URL: %q", body)
	}
	if v, _, _ := s.get("hello.localhost", ""); v != "hello-001" {
		t.Fatalf("canary took traffic: %s", v)
	}
	s.ok("traffic", "hello", "hello-001=90", "hello-002=10")
	s.ok("route", "hello", "hello-002", "env=beta*")
	if v, _, _ := s.get("hello.localhost", "env=beta-eu"); v != "hello-002" {
		t.Fatalf("rule: %s", v)
	}
	if out := s.ok("predict", "hello", "env=beta-eu"); !strings.HasPrefix(out, "hello-002") || !strings.Contains(out, "env=beta*") {
		t.Fatalf("predict: %q", out)
	}
	if out := s.ok("predict", "hello", "env=prod"); !strings.Contains(out, "hello-001 90%") {
		t.Fatalf("predict split: %q", out)
	}
	st := s.status("hello")
	if st.URL != "http://hello.localhost:"+port(s.route)+"/" || st.Policy.Split["hello-001"] != 90 ||
		len(st.Policy.Rules) != 1 || st.Policy.Rules[0].Match["env"] != "beta*" ||
		st.Versions[0].Config.Env["GREETING"] != "hi" || st.Versions[0].Config.Run != "./app" || st.Versions[0].Config.Instances != 1 {
		t.Fatalf("status --json: %+v", st)
	}
	if human := s.ok("status", "hello"); !strings.Contains(human, "hello-002") || !strings.Contains(human, "rule 1: env=beta* -> hello-002") {
		t.Fatalf("status: %s", human)
	}
	s.ok("promote", "hello", "hello-002")
	if v, _, _ := s.get("hello.localhost", "env=prod"); v != "hello-002" {
		t.Fatalf("after promote: %s", v)
	}
	s.ok("rollback", "hello")
	if v, _, _ := s.get("hello.localhost", "env=beta"); v != "hello-001" {
		t.Fatalf("after rollback: %s", v)
	}
	_, errs, code := s.cli("redeploy", "hello", "hello-001", "--env", "BROKEN=1", "--wait")
	if code == 0 || !strings.Contains(errs, "deploy-failed") || !strings.Contains(errs, "HealthCheckFailed") || !strings.Contains(errs, "Suggestion") {
		t.Fatalf("failing redeploy: exit %d: %s", code, errs)
	}
	if _, body, err := s.get("hello.localhost", ""); err != nil || body != "hi from hello-001\n" {
		t.Fatalf("old instances after failed redeploy: %q %v", body, err)
	}
	s.ok("redeploy", "hello", "hello-001", "--env", "GREETING=bonjour", "--wait")
	if _, body, err := s.get("hello.localhost", ""); err != nil || body != "bonjour from hello-001\n" {
		t.Fatalf("after redeploy: %q %v", body, err)
	}
	if h := s.ok("history", "hello"); !strings.Contains(h, "rollback") || !strings.Contains(h, "redeploy") {
		t.Fatalf("history: %s", h)
	}
	resp, err := http.Get("http://" + s.api + "/dashboard/services/hello")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `id="hello-002"`) {
		t.Fatalf("dashboard: %d %s", resp.StatusCode, page)
	}
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func TestCLIBadInput(t *testing.T) {
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	src := fastSource(t, "")
	s.ok("deploy", "hello", "--source", src, "--wait")
	before := s.ok("status", "hello", "--json")
	notDir := filepath.Join(src, "sluice.yaml")
	noManifest := t.TempDir()
	badManifest := t.TempDir()
	os.WriteFile(filepath.Join(badManifest, "sluice.yaml"), []byte("services:\n  hello:\n    run: ./app\n    instances: zero\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"traffic", "hello", "hello-001=90"}, "sum to 90"},
		{[]string{"traffic", "hello", "hello-001=ten"}, "whole percentage"},
		{[]string{"traffic", "hello", "hello-001=-5"}, "whole percentage"},
		{[]string{"traffic", "hello", "hello-009=100"}, "hello-009"},
		{[]string{"traffic", "nope", "hello-001=100"}, "unknown service"},
		{[]string{"route", "hello", "hello-001", "env"}, "invalid rule"},
		{[]string{"route", "hello", "hello-001", "env=[beta"}, "invalid rule"},
		{[]string{"deploy", "hello", "--source", notDir}, "not a directory"},
		{[]string{"deploy", "hello", "--source", noManifest}, "no sluice.yaml"},
		{[]string{"deploy", "hello", "--source", badManifest}, "sluice.yaml:4:16"},
		{[]string{"promote", "hello", "hello-404"}, "hello-404"},
	} {
		out, errs, code := s.cli(tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("sluice %s: exit %d, stderr %q, want it to mention %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
		if out != "" {
			t.Errorf("sluice %s printed %q on stdout", strings.Join(tc.args, " "), out)
		}
	}
	if after := s.ok("status", "hello", "--json"); after != before {
		t.Fatalf("state changed:\n%s\n%s", before, after)
	}
}

func TestTokenRequiredWhenSet(t *testing.T) {
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN=s3cret")
	cmd := exec.Command(sluiceBin, "services", "--server", "http://"+s.api, "--token", "wrong")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "token") {
		t.Fatalf("wrong token accepted: %v %s", err, out)
	}
	if _, errs, code := s.cli("services"); code == 0 || !strings.Contains(errs, "token") {
		t.Fatalf("no token accepted: %d %s", code, errs)
	}
	cmd = exec.Command(sluiceBin, "services", "--server", "http://"+s.api, "--token", "s3cret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("right token refused: %v %s", err, out)
	}
}

func TestServeRefusesPublicListenWithoutToken(t *testing.T) {
	cmd := exec.Command(sluiceBin, "serve", "--listen", "0.0.0.0:0", "--data", t.TempDir())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without --token") {
		t.Fatalf("serve on 0.0.0.0 without a token: %v %s", err, out)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is not running anything.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestKill9AndRestart(t *testing.T) {
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	src := fastSource(t, "")
	s.ok("deploy", "hello", "--source", src, "--wait")
	s.ok("deploy", "hello", "--source", src, "--strategy", "canary", "--wait")
	s.ok("traffic", "hello", "hello-001=50", "hello-002=50")
	s.ok("route", "hello", "hello-002", "env=beta*")
	building := s.ok("deploy", "hello", "--source", fastSource(t, "sleep 60"))
	before := s.status("hello")
	var pids []int
	for _, v := range before.Versions {
		for _, i := range v.Instances {
			pids = append(pids, i.PID)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("instances before kill: %v", pids)
	}
	time.Sleep(300 * time.Millisecond) // let the build start
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()

	s2 := startServer(t, data, api, route)
	deadline := s2.listening.Add(2 * time.Second)
	seen := map[string]bool{}
	for time.Now().Before(deadline) && !(seen["hello-001"] && seen["hello-002"] && seen["rule"]) {
		if v, _, err := s2.get("hello.localhost", ""); err == nil {
			seen[v] = true
		}
		if v, _, err := s2.get("hello.localhost", "env=beta1"); err == nil && v == "hello-002" {
			seen["rule"] = true
		}
	}
	if !(seen["hello-001"] && seen["hello-002"] && seen["rule"]) {
		t.Fatalf("within 2s of the router listening, served %v", seen)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("instance pid %d of the killed server is still running", pid)
		}
	}
	after := s2.status("hello")
	if fmt.Sprint(after.Policy) != fmt.Sprint(before.Policy) {
		t.Fatalf("policy changed across restart: %+v -> %+v", before.Policy, after.Policy)
	}
	for _, v := range after.Versions {
		if v.Name == building && (v.Status != "failed" || v.Reason.Code != "Interrupted" || v.Reason.Suggestion == "") {
			t.Fatalf("building version after restart: %+v", v)
		}
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 60").Output(); len(out) > 0 {
		// The orphaned build must be gone too (only ours runs sleep 60 here).
		t.Errorf("orphaned build still running: %s", out)
	}
}

func TestSIGTERMStopsEverythingAndExitsZero(t *testing.T) {
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait")
	st := s.status("hello")
	pid := st.Versions[0].Instances[0].PID
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	if alive(pid) {
		t.Fatalf("instance %d still running after SIGTERM", pid)
	}
	sc := bufio.NewScanner(bytes.NewReader(s.logs.Bytes()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "level=ERROR") {
			t.Errorf("error during shutdown: %s", sc.Text())
		}
	}
}

func TestMetricsAndStickiness(t *testing.T) {
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	src := fastSource(t, "")
	y, _ := os.ReadFile(filepath.Join(src, "sluice.yaml"))
	os.WriteFile(filepath.Join(src, "sluice.yaml"), append(y, []byte("    sticky: true\n")...), 0o644)
	s.ok("deploy", "hello", "--source", src, "--wait")
	s.ok("deploy", "hello", "--source", src, "--strategy", "canary", "--wait")
	s.ok("traffic", "hello", "hello-001=50", "hello-002=50")

	// A client that keeps its cookie stays on the version it first got;
	// one without cookies sees both.
	jar := map[string]bool{}
	var cookie string
	for range 30 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.route+"/", nil)
		req.Host = "hello.localhost"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		jar[resp.Header.Get("X-Sluice-Version")] = true
		for _, c := range resp.Cookies() {
			cookie = c.Name + "=" + c.Value
		}
	}
	if len(jar) != 1 || cookie == "" {
		t.Fatalf("a sticky client saw %v (cookie %q)", jar, cookie)
	}
	fresh := map[string]bool{}
	for range 60 {
		v, _, err := s.get("hello.localhost", "")
		if err != nil {
			t.Fatal(err)
		}
		fresh[v] = true
	}
	if len(fresh) != 2 {
		t.Fatalf("cookie-less clients saw only %v", fresh)
	}

	resp, err := http.Get("http://" + s.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sluice_router_requests_total{service="hello",version="hello-001"}`, "sluice_router_request_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestSIGTERMDuringABuildExitsAndTheDeployEndsInterrupted(t *testing.T) {
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	v := s.ok("deploy", "hello", "--source", fastSource(t, "sleep 60"))
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("SIGTERM waited %s for the build", d)
	}
	s2 := startServer(t, data, api, route)
	st := s2.status("hello")
	if len(st.Versions) != 1 || st.Versions[0].Name != v || st.Versions[0].Reason.Code != "Interrupted" {
		t.Fatalf("after restart: %+v", st.Versions)
	}
}
