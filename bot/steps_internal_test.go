package bot

import (
	"testing"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/reason"
)

// A deploy's checklist marks the step its failure reason belongs to, and
// none when every step passed but the data plane refused its traffic.
func TestStepsMarkWhereADeployFailed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status rollout.Status
		code   reason.Code
		want   string // per step: + done, x failed, . not reached
	}{
		{rollout.StatusNormal, "", "++++"},
		{rollout.StatusCreating, "", "++.."},
		{rollout.StatusFailed, reason.BuildFailed, "+x.."},
		{rollout.StatusFailed, reason.ProcessExited, "++x."},
		{rollout.StatusFailed, reason.HealthCheckFailed, "+++x"},
		{rollout.StatusFailed, reason.DataPlaneFailed, "++++"},
	} {
		v := rollout.VersionStatus{}
		v.Status, v.Reason.Code = tc.status, tc.code
		got := ""
		for _, s := range steps(v, true) {
			switch {
			case s.Failed:
				got += "x"
			case s.Done:
				got += "+"
			default:
				got += "."
			}
		}
		if got != tc.want {
			t.Errorf("%s %s: steps %s, want %s", tc.status, tc.code, got, tc.want)
		}
	}
}
