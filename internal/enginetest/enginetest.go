// Package enginetest builds a real engine for tests: a bbolt store, the
// local runtime running real processes, and the router serving a loopback
// listener with Router.Serve (as cmd/sluice serves it), all in one data
// directory. Test support only: it imports the
// store and the local runtime, so only tests may import it.
package enginetest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/router"
	"github.com/sluicehq/sluice/rollout/runtime"
	"github.com/sluicehq/sluice/rollout/runtime/local"
	"github.com/sluicehq/sluice/store"
)

// World is one running engine and what it is built from.
type World struct {
	Dir    string
	DB     *store.DB
	Router *router.Router
	// Server is Router served with Router.Serve on 127.0.0.1; the
	// engine's URLs name its port.
	Server *Front
	Engine *rollout.Engine

	once  sync.Once
	serve chan error // Serve's result
}

// Front is where a World's router listens.
type Front struct {
	// URL is "http://" and the listener's address.
	URL      string
	Listener net.Listener
}

// New opens (or reopens) the data directory dir, recovers the engine and
// returns it; Close runs at the test's end unless called earlier. opts
// are added after the defaults (a router address matching Server).
func New(t testing.TB, dir string, opts ...rollout.Option) *World {
	t.Helper()
	return NewWrapped(t, dir, func(rt runtime.Runtime) runtime.Runtime { return rt }, opts...)
}

// NewWrapped is New with the engine driving wrap(the local runtime), for
// tests that inject a driver's fault (a panic) around the real one.
func NewWrapped(t testing.TB, dir string, wrap func(runtime.Runtime) runtime.Runtime, opts ...rollout.Option) *World {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "sluice.db"), store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rtr := router.New("localhost")
	srv := &Front{URL: "http://" + ln.Addr().String(), Listener: ln}
	all := append([]rollout.Option{rollout.WithRouterAddr(ln.Addr().String())}, opts...)
	w := &World{Dir: dir, DB: db, Router: rtr, Server: srv, Engine: rollout.New(db, wrap(rt), rtr, "localhost", all...),
		serve: make(chan error, 1)}
	go func() { w.serve <- rtr.Serve(ln) }()
	t.Cleanup(func() {
		w.Close()
		if err := <-w.serve; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("router Serve returned %v; want http.ErrServerClosed", err)
		}
	})
	if err := w.Engine.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

// Close shuts the router down (its listener and connections), then stops
// every instance and the store, as a sluice shutting down does.
// Idempotent.
func (w *World) Close() {
	w.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = w.Router.Shutdown(ctx)
		_ = w.Engine.Close(ctx)
		_ = w.DB.Close()
	})
}
