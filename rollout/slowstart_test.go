package rollout_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// waitBound is how long a call that must not wait for a slow start may
// take at most on a loaded machine; far below a start that never ends.
const waitBound = 20 * time.Second

// retiredGated deploys v1 (a gated app) then v2, retires v1 and closes
// its gate, so starting v1 again waits until the gate file is removed.
// It returns v1, v2 and the gate's path.
func retiredGated(t *testing.T, h *harness) (string, string, string) {
	t.Helper()
	ctx := context.Background()
	gate := filepath.Join(t.TempDir(), "gate")
	v1, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSourceGated(t, "hello", "gated", gate, ""), Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	h.eng.Wait()
	mustNormal(t, h.version("hello", v1.Name))
	v2 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	if stopped, err := h.eng.Retire(ctx, "hello", 0, cli); err != nil || !reflect.DeepEqual(stopped, []string{v1.Name}) {
		t.Fatalf("retire: %v %v", stopped, err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return v1.Name, v2.Name, gate
}

// waitStarting waits until v1's new instance says it waits for its gate.
func waitStarting(t *testing.T, h *harness, version string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for time.Now().Before(deadline) {
		if logs, _ := h.eng.Logs(context.Background(), "hello", version, 1<<16); strings.Contains(logs, "waiting for the gate") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s's start never began", version)
}

type result struct {
	st  rollout.ServiceStatus
	err error
}

// While a rollback waits for a retired version's health check, the
// service can be read and changed by other operations; the rollback then
// decides again on what they did and routes once its version is healthy.
func TestASlowStartBlocksNeitherReadsNorOtherOperations(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	v1, v2, gate := retiredGated(t, h)

	done := make(chan result, 1)
	go func() {
		st, err := h.eng.Rollback(ctx, "hello", "", cli)
		done <- result{st, err}
	}()
	waitStarting(t, h, v1)

	other := make(chan error, 1)
	go func() {
		if st, err := h.eng.Status(ctx, "hello"); err != nil || st.Stable != v2 {
			other <- errors.Join(err, errors.New("status during the start: stable "+st.Stable))
			return
		}
		_, err := h.eng.Route(ctx, "hello", policy.Rule{Version: v2, Match: map[string]string{"team": "qa"}}, cli)
		if err == nil {
			_, err = h.eng.Deploy(ctx, rollout.DeployRequest{Service: "hello", Archive: appSource(t, "hello", "serve", ""),
				Strategy: rollout.StrategyCanary, Origin: cli})
		}
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("while a start was slow: %v", err)
		}
	case r := <-done:
		t.Fatalf("the rollback returned before its version was healthy: %v", r.err)
	case <-time.After(waitBound):
		t.Fatal("status, route and deploy waited for another operation's slow start")
	}
	if v := h.version("hello", v1); v.Status != rollout.StatusStopped {
		t.Fatalf("%s is %s before its start finished", v1, v.Status)
	}
	if got := h.served("hello", 5, ""); got[v2] != 5 {
		t.Fatalf("before the start finished the router served %v", got)
	}

	os.Remove(gate)
	r := <-done
	if r.err != nil || r.st.Stable != v1 || len(r.st.Policy.Rules) != 0 {
		t.Fatalf("rollback: %v, stable %s, rules %v", r.err, r.st.Stable, r.st.Policy.Rules)
	}
	mustNormal(t, h.version("hello", v1))
	if got := h.served("hello", 10, "team=qa"); got[v1] != 10 {
		t.Fatalf("after the rollback: %v", got)
	}
	h.eng.Wait()
}

// Cancelling a rollback while its retired target starts returns at once
// with the context's error, commits nothing and leaves nothing running;
// the same rollback succeeds later.
func TestCancellingASlowStartChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1, v2, gate := retiredGated(t, h)
	before := h.status("hello")
	evs, _ := h.eng.Events(context.Background(), "hello", 0, 1000)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		st, err := h.eng.Rollback(ctx, "hello", "", cli)
		done <- result{st, err}
	}()
	waitStarting(t, h, v1)
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(waitBound):
		t.Fatal("a cancelled rollback kept waiting for its start")
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled rollback: %v, want context.Canceled", r.err)
	}
	if _, ok := rollout.AsError(r.err); ok {
		t.Fatalf("a cancellation is no refusal of the request: %v", r.err)
	}
	after := h.status("hello")
	if after.Stable != v2 || !reflect.DeepEqual(after.Policy, before.Policy) {
		t.Fatalf("after a cancelled rollback: stable %s policy %+v", after.Stable, after.Policy)
	}
	if v := h.version("hello", v1); v.Status != rollout.StatusStopped || len(v.Instances) != 0 {
		t.Fatalf("%s after a cancelled start: %s, %d instances", v1, v.Status, len(v.Instances))
	}
	if evs2, _ := h.eng.Events(context.Background(), "hello", 0, 1000); len(evs2) != len(evs) {
		t.Fatalf("a cancelled rollback recorded %d events", len(evs2)-len(evs))
	}
	pid, err := os.ReadFile(gate + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(string(pid))
	if err := syscall.Kill(n, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the instance started for the cancelled rollback (pid %d) still runs: %v", n, err)
	}
	if got := h.served("hello", 5, ""); got[v2] != 5 {
		t.Fatalf("after a cancelled rollback the router served %v", got)
	}

	os.Remove(gate)
	if st, err := h.eng.Rollback(context.Background(), "hello", "", cli); err != nil || st.Stable != v1 {
		t.Fatalf("rollback after the cancelled one: %v %s", err, st.Stable)
	}
}
