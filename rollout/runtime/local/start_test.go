package local

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

func TestStartFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mode      string
		instances int
		env       map[string]string
		timeout   time.Duration
		code      reason.Code
		detail    []string // "{port}" stands for the failing instance's port
		suggests  string
	}{
		{
			name: "process exits", mode: "exit", instances: 2,
			code:     reason.ProcessExited,
			detail:   []string{"exited with status 3", "fatal: cannot open config.yaml", "/healthz"},
			suggests: "Read the log above",
		},
		{
			name: "port not listening", mode: "nolisten", instances: 2, timeout: 3 * time.Second,
			code:     reason.PortNotListening,
			detail:   []string{"127.0.0.1:{port}", "$PORT={port}", "starting without listening"},
			suggests: "PORT environment variable (here {port})",
		},
		{
			// 5xx answers in a row end the start long before its timeout.
			name: "health check fails", mode: "unhealthy", instances: 1, timeout: time.Hour,
			code:     reason.HealthCheckFailed,
			detail:   []string{"HTTP 500 10 times in a row", "GET /healthz", "listening on"},
			suggests: "`health:`",
		},
		{
			name: "health check never answers", mode: "silent", instances: 1, timeout: 3 * time.Second,
			code:     reason.HealthCheckTimeout,
			detail:   []string{"accepted connections", "never answered GET /healthz"},
			suggests: "answer quickly",
		},
		{
			name: "command cannot start", mode: "serve", instances: 1,
			env:      map[string]string{"BAD": "nul\x00byte"},
			code:     reason.StartFailed,
			detail:   []string{"could not be started"},
			suggests: "env values",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLocal(t)
			spec := appSpec(t, "hello-001", tt.mode, tt.env)
			pidFile := filepath.Join(t.TempDir(), "pids")
			spec.Env["LOCALTEST_PIDFILE"] = pidFile
			spec.Instances = tt.instances
			if tt.timeout > 0 {
				spec.StartTimeout = tt.timeout
			}
			mustBuild(t, l, spec)
			start := time.Now()
			g, err := l.Start(ctxT(t), spec, nil)
			if err == nil {
				_ = g.Stop(context.Background(), 0)
				t.Fatalf("Start succeeded, want %s", tt.code)
			}
			if tt.timeout > 0 && time.Since(start) > tt.timeout+2*time.Second {
				t.Errorf("Start took %v with a %v start timeout", time.Since(start), tt.timeout)
			}
			f := asFailure(t, err)
			if f.Code != tt.code {
				t.Fatalf("code = %s, want %s; detail:\n%s", f.Code, tt.code, f.Detail)
			}
			port := portIn(f.Detail)
			for _, want := range tt.detail {
				want = strings.ReplaceAll(want, "{port}", port)
				if !strings.Contains(f.Detail, want) {
					t.Errorf("detail lacks %q:\n%s", want, f.Detail)
				}
			}
			if want := strings.ReplaceAll(tt.suggests, "{port}", port); !strings.Contains(f.Suggestion, want) {
				t.Errorf("suggestion %q lacks %q", f.Suggestion, want)
			}
			if tt.code == reason.StartFailed {
				return // nothing ran
			}
			if pids := readPids(t, pidFile); len(pids) == 0 {
				t.Error("no instance ran")
			}
			if left, _ := findMarked([]byte(EnvOwner + "=" + l.dataDir)); len(left) != 0 {
				t.Errorf("processes still run after a failed start: %+v", left)
			}
			if len(l.ports) != 0 {
				t.Errorf("ports still reserved after a failed start: %v", l.ports)
			}
		})
	}
}

// portIn finds the port in "127.0.0.1:<port>" or "port <port>" of a detail.
func portIn(detail string) string {
	for _, prefix := range []string{"127.0.0.1:", "port "} {
		if i := strings.Index(detail, prefix); i >= 0 {
			rest := detail[i+len(prefix):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if j > 0 {
				return rest[:j]
			}
		}
	}
	return "?"
}

func TestStartUnbuiltGeneration(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	_, err := l.Start(ctxT(t), appSpec(t, "hello-001", "serve", nil), nil)
	if f := asFailure(t, err); f.Code != reason.SourceUnavailable {
		t.Errorf("code = %s, want %s", f.Code, reason.SourceUnavailable)
	}
}

func TestStartHealthyInstances(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ctx := ctxT(t)
	spec := appSpec(t, "hello-004", "serve", map[string]string{"GREETING": "hi there", "SLUICE_OWNER": "spoofed"})
	spec.Instances = 2
	mustBuild(t, l, spec)
	g, err := l.Start(ctx, spec, func() { t.Error("notify called without a liveness change") })
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	insts := g.Instances()
	if len(insts) != 2 || insts[0].Addr == insts[1].Addr {
		t.Fatalf("instances = %+v, want 2 on distinct addresses", insts)
	}
	for i, inst := range insts {
		if !inst.Up || inst.PID <= 0 || inst.Restarts != 0 {
			t.Errorf("instance %d = %+v, want up with a pid and no restarts", i, inst)
		}
		_, port, _ := net.SplitHostPort(inst.Addr)
		code, body := get(t, inst.Addr, "/")
		for _, want := range []string{
			"GREETING=hi there\n",
			"PORT=" + port + "\n",
			"SLUICE_VERSION=hello-004\n",
			"SLUICE_OWNER=" + l.dataDir + "\n", // the spec cannot override the marker
		} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("instance %d GET / = %d %q, want it to contain %q", i, code, body, want)
			}
		}
	}
	if err := g.Stop(ctx, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, inst := range g.Instances() {
		if inst.Up {
			t.Errorf("instance %+v up after Stop", inst)
		}
		if !processGone(inst.PID) {
			t.Errorf("process %d runs after Stop", inst.PID)
		}
		if c, err := net.DialTimeout("tcp", inst.Addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", inst.Addr)
		}
	}
	if len(l.ports) != 0 {
		t.Errorf("ports still reserved after Stop: %v", l.ports)
	}
}

func TestRestartAfterCrash(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ctx := ctxT(t)
	spec := appSpec(t, "hello-001", "crash", map[string]string{
		"LOCALTEST_CRASH_AFTER": "300ms",
		"LOCALTEST_STATE":       filepath.Join(t.TempDir(), "crashed"),
	})
	mustBuild(t, l, spec)

	var mu sync.Mutex
	var seen []runtime.Instance
	var g runtime.Group
	ready := make(chan struct{})
	notify := func() {
		<-ready
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, g.Instances()[0])
	}
	g, err := l.Start(ctx, spec, notify)
	close(ready)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background(), time.Second) })
	first := g.Instances()[0]

	eventually(t, 10*time.Second, "the instance to come back up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 2
	})
	mu.Lock()
	down, up := seen[0], seen[1]
	mu.Unlock()
	if down.Up || down.Addr != first.Addr {
		t.Errorf("first notification saw %+v, want the instance down on %s", down, first.Addr)
	}
	if !up.Up || up.Addr != first.Addr || up.Restarts != 1 || up.PID == first.PID {
		t.Errorf("second notification saw %+v, want it up again on %s after 1 restart with a new pid (was %d)", up, first.Addr, first.PID)
	}
	code, body := get(t, first.Addr, "/")
	if code != 200 || !strings.Contains(body, fmt.Sprintf("PID=%d\n", up.PID)) {
		t.Errorf("GET / after restart = %d %q, want an answer from pid %d", code, body, up.PID)
	}
	if err := g.Stop(ctx, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if n != 2 {
		t.Errorf("notify called %d times, want 2 (down, up; none for Stop)", n)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ctx := ctxT(t)
	spec := appSpec(t, "hello-001", "serve", nil)
	// The shell stays the group leader; its background child ignores
	// SIGTERM, so only the group-wide SIGKILL after the grace ends it.
	spec.Run = `LOCALTEST_APP=nolisten LOCALTEST_IGNORE_TERM=1 LOCALTEST_PIDFILE=child.pid "$LOCALTEST_BIN" & "$LOCALTEST_BIN"`
	mustBuild(t, l, spec)
	g, err := l.Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pidFile := filepath.Join(l.srcDir("hello-001", 1), "child.pid")
	eventually(t, 5*time.Second, "the background child to start", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
	child := readPids(t, pidFile)[0]
	shellPID := g.Instances()[0].PID
	if processGone(child) {
		t.Fatal("background child is not running")
	}

	const grace = 300 * time.Millisecond
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.Stop(ctx, grace)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Stop %d: %v", i, err)
		}
	}
	if took < grace {
		t.Errorf("Stop returned after %v, before the %v grace, although a process ignores SIGTERM", took, grace)
	}
	for _, pid := range []int{shellPID, child} {
		if !processGone(pid) {
			t.Errorf("process %d survived Stop", pid)
		}
	}
	if err := g.Stop(ctx, grace); err != nil {
		t.Errorf("repeated Stop: %v", err)
	}
}
