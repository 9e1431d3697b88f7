package rollout_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/router"
	"github.com/sluicehq/sluice/rollout/runtime/local"
	"github.com/sluicehq/sluice/rollout/source"
	"github.com/sluicehq/sluice/store"
)

// A version that cannot start right after a restart (something it needs
// is not there yet) is started again, with backoff, once it can.
func TestRestartRetriesAVersionThatCannotStartYet(t *testing.T) {
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

	type world struct {
		eng *rollout.Engine
		db  *store.DB
		srv *httptest.Server
	}
	open := func() world {
		db, err := store.Open(filepath.Join(dir, "sluice.db"))
		if err != nil {
			t.Fatal(err)
		}
		rt, _ := local.New(dir)
		rtr := router.New("localhost")
		w := world{rollout.New(db, rt, rtr, "localhost"), db, httptest.NewServer(rtr)}
		if err := w.eng.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		return w
	}
	shut := func(w world) {
		w.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.eng.Close(ctx)
		w.db.Close()
	}

	w := open()
	v, err := w.eng.Deploy(context.Background(), rollout.DeployRequest{Service: "hello", Archive: archive.Bytes(), Origin: cli})
	if err != nil {
		t.Fatal(err)
	}
	w.eng.Wait()
	shut(w)

	os.Remove(need) // what the app needs is gone while sluice restarts
	w = open()
	defer shut(w)
	time.Sleep(1500 * time.Millisecond)
	if st, _ := w.eng.Status(context.Background(), "hello"); len(st.Versions[0].Instances) != 0 {
		t.Fatal("started without what it needs")
	}
	os.WriteFile(need, nil, 0o644)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := w.eng.Status(context.Background(), "hello")
		if vs := st.Versions[0]; vs.Name == v.Name && len(vs.Instances) == 1 && vs.Instances[0].Up {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the version was not started again once it could")
}
