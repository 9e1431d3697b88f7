package bot

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/bot/render"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
)

// statusCounter is the real engine counting Status calls.
type statusCounter struct {
	*rollout.Engine
	calls atomic.Int32
}

func (e *statusCounter) Status(ctx context.Context, service string) (rollout.ServiceStatus, error) {
	e.calls.Add(1)
	return e.Engine.Status(ctx, service)
}

// The redaction set of PR entries reads every service's status once, and
// again only after the engine's history moved — not once per entry.
func TestRedactionReadsStatusesOnlyWhenHistoryMoves(t *testing.T) {
	t.Parallel()
	w := enginetest.New(t, t.TempDir())
	ctx := context.Background()
	admin := rollout.Origin{Via: "cli", Actor: "admin", Principal: rollout.AdminPrincipal}
	for _, s := range []string{"a", "b", "c"} {
		if _, err := w.Engine.SetRepo(ctx, s, "o/r", admin); err != nil {
			t.Fatal(err)
		}
	}
	eng := &statusCounter{Engine: w.Engine}
	b := New(eng, w.DB, nil, Config{}, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	entries := func(n int) {
		for range n {
			if _, err := b.rep.addPREntries(ctx, "o/r", 1, 1, render.Entry{Title: "x"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries(10)
	if n := eng.calls.Load(); n != 3 {
		t.Fatalf("10 entries over 3 services read %d statuses, want 3", n)
	}
	if _, err := w.Engine.SetRepo(ctx, "d", "o/r", admin); err != nil {
		t.Fatal(err)
	}
	entries(10)
	if n := eng.calls.Load(); n != 3+4 {
		t.Fatalf("after the history moved: %d statuses read in all, want 7", n)
	}
}
