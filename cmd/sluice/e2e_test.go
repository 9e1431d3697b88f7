package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEWalkthrough follows the README's walkthrough with the CLI.
// It runs sluice as a reader of the README does: as themselves. Run as root
// (CI), sluice would run builds as its dedicated user with a home of its
// own, and the example's `go build` would compile the standard library
// with an empty cache first (about two minutes of this suite on two cores);
// running as the caller's user, builds share the caller's Go cache. What
// --run-as changes is tested in rollout/runtime/local (isolation_test.go).
func TestREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	var env []string
	if os.Geteuid() == 0 {
		env = append(env, "SLUICE_RUN_AS=root")
	}
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), env...)
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

func TestCLIBadInput(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	cmd := exec.Command(sluiceBin, "serve", "--listen", "0.0.0.0:0", "--router-listen", "127.0.0.1:0", "--data", t.TempDir())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without --token") {
		t.Fatalf("serve on 0.0.0.0 without a token: %v %s", err, out)
	}
}

func TestKill9AndRestart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	src := fastSource(t, "")
	s.ok("deploy", "hello", "--source", src, "--wait")
	s.ok("deploy", "hello", "--source", src, "--strategy", "canary", "--wait")
	s.ok("traffic", "hello", "hello-001=50", "hello-002=50")
	s.ok("route", "hello", "hello-002", "env=beta*")
	build := newSlowBuild(t)
	building := s.ok("deploy", "hello", "--source", fastSource(t, build.command()))
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
	buildPID := build.pid(t)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()

	s2 := startServer(t, data, api, route)
	// Liveness only (a loaded machine is slow): the restarted server serves
	// the stored split and rule again.
	deadline := s2.listening.Add(30 * time.Second)
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
		t.Fatalf("after the restart, served %v", seen)
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
	if alive(buildPID) {
		t.Errorf("the killed server's build (pid %d) is still running", buildPID)
	}
}

func TestSIGTERMStopsEverythingAndExitsZero(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	for _, want := range []string{`sluice_router_requests_total{service="hello",version="hello-001"}`, "sluice_router_request_duration_seconds_bucket", "sluice_panics_total 0", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestSIGTERMDuringABuildExitsAndTheDeployEndsInterrupted(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	api, route := freePort(t), freePort(t)
	s := startServer(t, data, api, route)
	build := newSlowBuild(t)
	v := s.ok("deploy", "hello", "--source", fastSource(t, build.command()))
	buildPID := build.pid(t)
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
	if alive(buildPID) {
		t.Errorf("the build (pid %d) outlived the server", buildPID)
	}
	s2 := startServer(t, data, api, route)
	st := s2.status("hello")
	if len(st.Versions) != 1 || st.Versions[0].Name != v || st.Versions[0].Reason.Code != "Interrupted" {
		t.Fatalf("after restart: %+v", st.Versions)
	}
}
