package rollout_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// buildPanics is the real local runtime whose Build panics for one
// service, standing for a bug in any runtime driver.
type buildPanics struct {
	runtime.Runtime
	service string
}

func (r buildPanics) Build(ctx context.Context, spec runtime.Spec) error {
	if spec.Service == r.service {
		panic("build exploded")
	}
	return r.Runtime.Build(ctx, spec)
}

// A driver that panics while building a version fails that version only
// (InternalError, counted), the service is not left locked, and the next
// deploy — of this service or another — runs as usual.
func TestAPanickingBuildFailsOnlyItsVersion(t *testing.T) {
	t.Parallel()
	w := enginetest.NewWrapped(t, t.TempDir(), func(rt runtime.Runtime) runtime.Runtime { return buildPanics{Runtime: rt, service: "boom"} },
		rollout.WithLogger(slog.New(slog.DiscardHandler)))
	h := &harness{t: t, eng: w.Engine, srv: w.Server}
	before := contain.Panics()
	bad := h.deploy("boom", "serve", rollout.StrategyFull, "")
	if bad.Status != rollout.StatusFailed || bad.Reason.Code != "InternalError" {
		t.Fatalf("the panicking build left %s %s (%+v)", bad.Name, bad.Status, bad.Reason)
	}
	if contain.Panics() < before+1 {
		t.Fatal("the panic was not counted")
	}
	mustNormal(t, h.deploy("hello", "serve", rollout.StrategyFull, ""))
	// The service is not left locked: its next deploy is taken and fails
	// the same way, on its own.
	if again := h.deploy("boom", "serve", rollout.StrategyFull, ""); again.Status != rollout.StatusFailed || again.Name == bad.Name {
		t.Fatalf("the next deploy of the service: %s %s", again.Name, again.Status)
	}
}
