package rollout

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// The verdict of a step depends only on the plan and the figures, whatever
// measured them.
func TestJudgeCanary(t *testing.T) {
	t.Parallel()
	plan := &CanaryPlan{Steps: []int{10, 100}, MaxErrorRate: 0.05, MaxP99: Duration(500 * time.Millisecond)}
	noP99 := &CanaryPlan{Steps: []int{10, 100}, MaxErrorRate: 0.05}
	for _, tc := range []struct {
		name string
		plan *CanaryPlan
		s    runtime.Served
		want canaryOutcome
	}{
		{"healthy", plan, runtime.Served{Requests: 100, Errors: 5, P99: 400 * time.Millisecond, HasP99: true}, canaryAdvance},
		{"5xx above the plan", plan, runtime.Served{Requests: 100, Errors: 6, P99: 10 * time.Millisecond, HasP99: true}, canaryStop},
		{"p99 above the plan", plan, runtime.Served{Requests: 100, P99: 501 * time.Millisecond, HasP99: true}, canaryStop},
		{"no requests", plan, runtime.Served{}, canaryHold},
		{"no requests, errors counted anyway", plan, runtime.Served{Errors: 3}, canaryHold},
		{"p99 bounded but unknown", plan, runtime.Served{Requests: 100}, canaryHold},
		{"p99 not bounded and unknown", noP99, runtime.Served{Requests: 100}, canaryAdvance},
		{"errors judged before an unknown p99", plan, runtime.Served{Requests: 10, Errors: 10}, canaryStop},
	} {
		if got := judgeCanary(tc.plan, tc.s); got.outcome != tc.want {
			t.Errorf("%s: %s (%s); want %s", tc.name, got.outcome, got.why, tc.want)
		}
	}
}
