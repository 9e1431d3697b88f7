package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/reason"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// extraPort is the port an extraport app said it listens on besides $PORT.
func extraPort(t *testing.T, log string) string {
	t.Helper()
	m := regexp.MustCompile(`extra port (\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the app never said its extra port; its log:\n%s", log)
	}
	return m[1]
}

func runLog(t *testing.T, l *Local, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.logDir(version), runLogName(1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStartFailsAnInstanceListeningOnAnExtraPort: deployed code that opens
// a second listening socket next to $PORT does not go live; the reason
// names the port.
func TestStartFailsAnInstanceListeningOnAnExtraPort(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	// The app listens on its extra port before its health check passes.
	spec := appSpec(t, "hello-001", "extraport", nil)
	mustBuild(t, l, spec)
	g, err := l.Start(ctxT(t), spec, nil)
	if err == nil {
		_ = g.Stop(context.Background(), time.Second)
		t.Fatal("an instance listening on an extra port started")
	}
	f := asFailure(t, err)
	port := extraPort(t, runLog(t, l, "hello-001"))
	if f.Code != reason.PortNotAllowed || !strings.Contains(f.Detail, "port "+port+" besides its own $PORT") {
		t.Errorf("failure = %s: %s; want %s naming port %s", f.Code, f.Detail, reason.PortNotAllowed, port)
	}
	if len(l.ports) != 0 {
		t.Errorf("ports still reserved after the refused start: %v", l.ports)
	}
}

// TestRunningInstanceOpeningAnExtraPortIsKilled: an instance that opens a
// second listener after it went live is killed within a watch round and
// restarted; its log says why, naming the port, and the port is closed.
func TestRunningInstanceOpeningAnExtraPortIsKilled(t *testing.T) {
	t.Parallel()
	l, err := New(t.TempDir(),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithDrainGrace(500*time.Millisecond),
		WithRestartBackoff(50*time.Millisecond, 400*time.Millisecond),
		WithWatchInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	spec := appSpec(t, "hello-001", "extraport", map[string]string{"LOCALTEST_EXTRA": "request"})
	mustBuild(t, l, spec)
	g, err := l.Start(ctxT(t), spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background(), time.Second) })
	first := g.Instances()[0]
	get(t, first.Addr, "/open") // the live instance opens a second listener

	eventually(t, 15*time.Second, "the instance to be killed and come back", func() bool {
		in := g.Instances()[0]
		return in.Restarts >= 1 && in.Up
	})
	log := runLog(t, l, "hello-001")
	port := extraPort(t, log)
	if !strings.Contains(log, "listens on port "+port+" besides its own $PORT "+strings.TrimPrefix(first.Addr, "127.0.0.1:")) {
		t.Errorf("the run log does not say why the instance was killed:\n%s", log)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.Close()
		t.Errorf("the extra port %s still accepts connections", port)
	}
	if in := g.Instances()[0]; in.Addr != first.Addr {
		t.Errorf("the restarted instance moved from %s to %s", first.Addr, in.Addr)
	}
}

// TestPortsComeFromTheRangeOutsideEphemeralPorts: instance ports are never
// from the kernel's ephemeral range, where an outgoing connection (the
// router's own, to another instance) could take one while its instance
// restarts; a port of the range that something else listens on is skipped.
func TestPortsComeFromTheRangeOutsideEphemeralPorts(t *testing.T) {
	t.Parallel()
	// A range of three ports, the middle one held by another program.
	var held net.Listener
	var lo int
	for lo = DefaultPortMin + 5000; lo < DefaultPortMax-3; lo += 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lo+1))
		if err == nil && bindable(lo) && bindable(lo+2) {
			held = ln
			break
		}
		if err == nil {
			ln.Close()
		}
	}
	if held == nil {
		t.Skip("no three free ports in a row")
	}
	defer held.Close()
	l, err := New(t.TempDir(), WithLogger(slog.New(slog.DiscardHandler)), WithPortRange(lo, lo+2))
	if err != nil {
		t.Fatal(err)
	}
	ports, err := l.allocPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ports) != fmt.Sprint([]int{lo, lo + 2}) && fmt.Sprint(ports) != fmt.Sprint([]int{lo + 2, lo}) {
		t.Errorf("allocPorts = %v, want %d and %d (not the held %d)", ports, lo, lo+2, lo+1)
	}
	if _, err := l.allocPorts(1); err == nil {
		t.Error("a third port was handed out of a range with two free ports, both reserved")
	}

	if b, err := os.ReadFile(ephemeralRange); err == nil {
		var elo, ehi int
		if _, err := fmt.Sscan(string(b), &elo, &ehi); err == nil && DefaultPortMin <= ehi && elo <= DefaultPortMax {
			t.Skipf("this machine's ephemeral range %d-%d overlaps the default", elo, ehi)
		}
	}
	d := newLocal(t)
	ports, err = d.allocPorts(20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p < DefaultPortMin || p > DefaultPortMax {
			t.Errorf("port %d outside the default range %d-%d", p, DefaultPortMin, DefaultPortMax)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		min, max int
		ok       bool
	}{
		{"20000-29999", 20000, 29999, true},
		{" 1024 - 2048 ", 1024, 2048, true},
		{"5-5", 5, 5, true},
		{"2048-1024", 0, 0, false},
		{"0-10", 0, 0, false},
		{"1-65536", 0, 0, false},
		{"20000", 0, 0, false},
		{"a-b", 0, 0, false},
	} {
		min, max, err := ParsePortRange(tc.in)
		if (err == nil) != tc.ok || min != tc.min || max != tc.max {
			t.Errorf("ParsePortRange(%q) = %d, %d, %v; want %d, %d, ok %v", tc.in, min, max, err, tc.min, tc.max, tc.ok)
		}
	}
}

// TestPortHeldByAnotherProcessIsNotTheInstances: when something else
// answers on an instance's $PORT (a neighbour that bound it), the instance
// does not pass for healthy; an instance with no listener at all is not a
// port violation (its health check judges it).
func TestPortHeldByAnotherProcessIsNotTheInstances(t *testing.T) {
	t.Parallel()
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	why, code := portViolation(child.Process.Pid, port)
	if code != reason.PortNotListening || !strings.Contains(why, "another process") || !strings.Contains(why, strconv.Itoa(port)) {
		t.Errorf("portViolation with the port held elsewhere = %q, %q; want %s naming port %d", why, code, reason.PortNotListening, port)
	}
	ln.Close()
	if why, code := portViolation(child.Process.Pid, port); why != "" {
		t.Errorf("portViolation with nothing listening = %q, %q; want none", why, code)
	}
	// Our own process listens on the port: no violation.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if why, _ := portViolation(os.Getpid(), ln.Addr().(*net.TCPAddr).Port); strings.Contains(why, "another process") {
		t.Errorf("portViolation of the listener's own process = %q", why)
	}
}

// TestAPortTakenBeforeTheInstanceBindsItIsNotTheVersionsFault: another
// program binds an instance's port between the moment it was handed out
// and the moment the instance listens (here the test itself, answering
// the health path as a neighbour might). The start does not fail: it
// begins again on another port of the range.
func TestAPortTakenBeforeTheInstanceBindsItIsNotTheVersionsFault(t *testing.T) {
	t.Parallel()
	var lo int
	for lo = DefaultPortMin + 7000; lo < DefaultPortMax-2; lo += 2 {
		if bindable(lo) && bindable(lo+1) {
			break
		}
	}
	l, err := New(t.TempDir(), WithLogger(slog.New(slog.DiscardHandler)), WithPortRange(lo, lo+1),
		WithDrainGrace(500*time.Millisecond), WithRestartBackoff(50*time.Millisecond, 400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gate, portFile := filepath.Join(dir, "gate"), filepath.Join(dir, "ports")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := appSpec(t, "hello-001", "serve", map[string]string{"LOCALTEST_GATE": gate, "LOCALTEST_PORTFILE": portFile})
	mustBuild(t, l, spec)
	type started struct {
		g   runtime.Group
		err error
	}
	done := make(chan started, 1)
	go func() {
		g, err := l.Start(ctxT(t), spec, nil)
		done <- started{g, err}
	}()

	var first string
	eventually(t, 10*time.Second, "the instance to say its port", func() bool {
		b, _ := os.ReadFile(portFile)
		first, _, _ = strings.Cut(string(b), "\n")
		return first != ""
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+first)
	if err != nil {
		t.Fatalf("take port %s: %v", first, err)
	}
	neighbour := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "neighbour") })}
	go neighbour.Serve(ln)
	t.Cleanup(func() { neighbour.Close() })
	os.Remove(gate)

	s := <-done
	if s.err != nil {
		t.Fatalf("start with its first port taken by another program: %v", s.err)
	}
	defer s.g.Stop(context.Background(), time.Second)
	in := s.g.Instances()
	if len(in) != 1 || strings.HasSuffix(in[0].Addr, ":"+first) {
		t.Fatalf("instances %+v; want one, on another port than the taken %s", in, first)
	}
	if code, body := get(t, in[0].Addr, "/"); code != http.StatusOK || !strings.Contains(body, "PORT=") || strings.Contains(body, "neighbour") {
		t.Fatalf("the instance's address answered %d %q", code, body)
	}
}
