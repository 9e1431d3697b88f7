package rollout_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/source"
)

// A version that cannot start right after a restart (something it needs
// is not there yet) is started again, with backoff, once it can.
func TestRestartRetriesAVersionThatCannotStartYet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	need := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(need, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := os.Executable()
	src := t.TempDir()
	yaml := fmt.Sprintf("services:\n  hello:\n    run: exec \"$TESTAPP_BIN\"\n    health: /healthz\n    env: {TESTAPP_MODE: needfile, TESTAPP_BIN: %q, NEEDFILE: %q}\n    timeouts: {start: 2s}\n", bin, need)
	os.WriteFile(filepath.Join(src, "sluice.yaml"), []byte(yaml), 0o644)
	var archive bytes.Buffer
	if err := source.Pack(src, &archive); err != nil {
		t.Fatal(err)
	}

	open := func() *enginetest.World { return enginetest.New(t, dir) }
	shut := func(w *enginetest.World) { w.Close() }

	w := open()
	v, err := w.Engine.Deploy(context.Background(), rollout.DeployRequest{Service: "hello", Archive: archive.Bytes(), Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	w.Engine.Wait()
	shut(w)

	os.Remove(need) // what the app needs is gone while sluice restarts
	w = open()
	defer shut(w)
	// The app leaves need+".missed" when a start finds need missing: once
	// it is there, a start was tried and failed.
	deadline := time.Now().Add(20 * time.Second)
	for _, err := os.Stat(need + ".missed"); err != nil; _, err = os.Stat(need + ".missed") {
		if time.Now().After(deadline) {
			t.Fatal("no start was tried after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := w.Engine.Status(context.Background(), "hello"); len(st.Versions[0].Instances) != 0 {
		t.Fatal("started without what it needs")
	}
	os.WriteFile(need, nil, 0o644)
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := w.Engine.Status(context.Background(), "hello")
		if vs := st.Versions[0]; vs.Name == v.Name && len(vs.Instances) == 1 && vs.Instances[0].Up {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the version was not started again once it could")
}
