package rollout

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// decideFixture is a service whose stable history is v1 then v2 (v2 takes
// everything), with a rule sending beta users to v1; v3 is retired and v4
// failed to deploy.
func decideFixture() (Service, []Version) {
	svc := Service{Name: "hello", Stables: []string{"v1", "v2"}, Policy: policy.Policy{
		Split: map[string]int{"v2": 100},
		Rules: []policy.Rule{{Version: "v1", Match: map[string]string{"user": "beta"}}},
	}}
	vs := []Version{
		{Name: "v1", Service: "hello", Status: StatusNormal, Generation: 1},
		{Name: "v2", Service: "hello", Status: StatusNormal, Generation: 1},
		{Name: "v3", Service: "hello", Status: StatusStopped, Generation: 2, IdleSince: time.Unix(1, 0)},
		{Name: "v4", Service: "hello", Status: StatusFailed, Generation: 1},
	}
	return svc, vs
}

func TestDecidePolicy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	beta := policy.Rule{Version: "v1", Match: map[string]string{"user": "beta"}}
	ruleTo := func(v string) policy.Rule { return policy.Rule{Version: v, Match: map[string]string{"team": "qa"}} }
	noRules := []policy.Rule{}
	cases := []struct {
		name    string
		edit    func(*Service, []Version)
		ch      policyChange
		code    string // refusal expected
		split   map[string]int
		rules   []policy.Rule
		starts  []string
		stables []string
	}{
		{name: "traffic splits", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v1": 50, "v2": 50}},
			split: map[string]int{"v1": 50, "v2": 50}, rules: []policy.Rule{beta}, stables: []string{"v1", "v2"}},
		{name: "traffic drops a 0% weight", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v1": 0, "v2": 100}},
			split: map[string]int{"v2": 100}, rules: []policy.Rule{beta}, stables: []string{"v1", "v2"}},
		{name: "traffic replaces the rules", ch: policyChange{Op: OpTraffic, Rules: &noRules},
			split: map[string]int{"v2": 100}, rules: noRules, stables: []string{"v1", "v2"}},
		{name: "traffic summing to 50 is refused and starts nothing", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v3": 50}},
			code: ErrCodeInvalidPolicy},
		{name: "traffic to an unknown version", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v9": 100}},
			code: ErrCodeUnknownVersion},
		{name: "traffic to a failed version", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v4": 100}},
			code: ErrCodeNotNormal},
		{name: "traffic to a retired version starts it", ch: policyChange{Op: OpTraffic, Split: map[string]int{"v2": 50, "v3": 50}},
			split: map[string]int{"v2": 50, "v3": 50}, rules: []policy.Rule{beta}, starts: []string{"v3"}, stables: []string{"v1", "v2"}},
		{name: "route appends", ch: policyChange{Op: OpRoute, Rule: ruleTo("v2")},
			split: map[string]int{"v2": 100}, rules: []policy.Rule{beta, ruleTo("v2")}, stables: []string{"v1", "v2"}},
		{name: "route to a retired version starts it", ch: policyChange{Op: OpRoute, Rule: ruleTo("v3")},
			split: map[string]int{"v2": 100}, rules: []policy.Rule{beta, ruleTo("v3")}, starts: []string{"v3"}, stables: []string{"v1", "v2"}},
		{name: "route to a failed version", ch: policyChange{Op: OpRoute, Rule: ruleTo("v4")}, code: ErrCodeNotNormal},
		{name: "unroute all", ch: policyChange{Op: OpUnroute},
			split: map[string]int{"v2": 100}, rules: noRules, stables: []string{"v1", "v2"}},
		{name: "unroute one version keeps the others' rules", edit: func(s *Service, _ []Version) { s.Policy.Rules = append(s.Policy.Rules, ruleTo("v2")) },
			ch:    policyChange{Op: OpUnroute, Version: "v1"},
			split: map[string]int{"v2": 100}, rules: []policy.Rule{ruleTo("v2")}, stables: []string{"v1", "v2"}},
		{name: "unroute an unknown version", ch: policyChange{Op: OpUnroute, Version: "v9"}, code: ErrCodeUnknownVersion},
		{name: "promote drops other rules", edit: func(s *Service, _ []Version) { s.Policy.Rules = append(s.Policy.Rules, ruleTo("v2")) },
			ch:    policyChange{Op: OpPromote, Version: "v2"},
			split: map[string]int{"v2": 100}, rules: []policy.Rule{ruleTo("v2")}, stables: []string{"v1", "v2"}},
		{name: "promote keeping rules", ch: policyChange{Op: OpPromote, Version: "v1", KeepOther: true},
			split: map[string]int{"v1": 100}, rules: []policy.Rule{beta}, stables: []string{"v1", "v2", "v1"}},
		{name: "promote a retired version starts it", ch: policyChange{Op: OpPromote, Version: "v3"},
			split: map[string]int{"v3": 100}, rules: noRules, starts: []string{"v3"}, stables: []string{"v1", "v2", "v3"}},
		{name: "promote an unknown version", ch: policyChange{Op: OpPromote, Version: "v9"}, code: ErrCodeUnknownVersion},
		{name: "promote a failed version", ch: policyChange{Op: OpPromote, Version: "v4"}, code: ErrCodeNotNormal},
		{name: "rollback walks the stable history back", ch: policyChange{Op: OpRollback},
			split: map[string]int{"v1": 100}, rules: noRules, stables: []string{"v1"}},
		{name: "rollback to a retired previous stable starts it",
			edit:  func(s *Service, _ []Version) { s.Stables = []string{"v3", "v2"} },
			ch:    policyChange{Op: OpRollback},
			split: map[string]int{"v3": 100}, rules: noRules, starts: []string{"v3"}, stables: []string{"v3"}},
		{name: "rollback skips a failed previous stable",
			edit:  func(s *Service, _ []Version) { s.Stables = []string{"v1", "v4", "v2"} },
			ch:    policyChange{Op: OpRollback},
			split: map[string]int{"v1": 100}, rules: noRules, stables: []string{"v1"}},
		{name: "rollback without a previous stable", edit: func(s *Service, _ []Version) { s.Stables = []string{"v2"} },
			ch: policyChange{Op: OpRollback}, code: ErrCodeNoStable},
		{name: "rollback to a named retired version starts it", ch: policyChange{Op: OpRollback, Version: "v3"},
			split: map[string]int{"v3": 100}, rules: noRules, starts: []string{"v3"}, stables: []string{"v1", "v2", "v3"}},
		{name: "rollback to an unknown version", ch: policyChange{Op: OpRollback, Version: "v9"}, code: ErrCodeUnknownVersion},
		{name: "rollback to a failed version", ch: policyChange{Op: OpRollback, Version: "v4"}, code: ErrCodeNotNormal},
		{name: "abort gives the stable its share back",
			edit:  func(s *Service, _ []Version) { s.Policy.Split = map[string]int{"v2": 80, "v1": 20} },
			ch:    policyChange{Op: OpAbort, Version: "v1"},
			split: map[string]int{"v2": 100}, rules: noRules, stables: []string{"v1", "v2"}},
		{name: "abort of a version with only a rule", ch: policyChange{Op: OpAbort, Version: "v1"},
			split: map[string]int{"v2": 100}, rules: noRules, stables: []string{"v1", "v2"}},
		{name: "abort starts a retired stable that gets traffic back",
			edit: func(s *Service, vs []Version) {
				s.Stables = []string{"v3"}
				s.Policy = policy.Policy{Split: map[string]int{"v1": 100}, Rules: []policy.Rule{}}
			},
			ch:    policyChange{Op: OpAbort, Version: "v1"},
			split: map[string]int{"v3": 100}, rules: noRules, starts: []string{"v3"}, stables: []string{"v3"}},
		{name: "abort of the stable", ch: policyChange{Op: OpAbort, Version: "v2"}, code: ErrCodeNoStable},
		{name: "abort of a version without traffic", edit: func(s *Service, _ []Version) { s.Policy.Rules = nil },
			ch: policyChange{Op: OpAbort, Version: "v1"}, code: ErrCodeUnchanged},
		{name: "abort of an unknown version", ch: policyChange{Op: OpAbort, Version: "v9"}, code: ErrCodeUnknownVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, vs := decideFixture()
			if c.edit != nil {
				c.edit(&svc, vs)
			}
			inSvc, inVs := decideFixture()
			if c.edit != nil {
				c.edit(&inSvc, inVs)
			}
			pl, err := decidePolicy(svc, vs, c.ch, Origin{Via: ViaSluice}, now)
			if !reflect.DeepEqual(svc, inSvc) || !reflect.DeepEqual(vs, inVs) {
				t.Fatalf("decide changed its input")
			}
			if c.code != "" {
				if e, ok := AsError(err); !ok || e.Code != c.code {
					t.Fatalf("got %v (%+v), want refusal %s", err, pl, c.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pl.Service.Policy.Split, c.split) || !reflect.DeepEqual(pl.Service.Policy.Rules, c.rules) {
				t.Fatalf("policy %+v, want split %v rules %v", pl.Service.Policy, c.split, c.rules)
			}
			if !reflect.DeepEqual(pl.Service.Stables, c.stables) {
				t.Fatalf("stables %v, want %v", pl.Service.Stables, c.stables)
			}
			var starts []string
			for _, v := range pl.starts() {
				starts = append(starts, v.Name)
			}
			if !reflect.DeepEqual(starts, c.starts) {
				t.Fatalf("starts %v, want %v", starts, c.starts)
			}
			checkPlan(t, pl, c.ch.Op, c.starts, now)
		})
	}
}

// checkPlan checks what every policy plan holds: the actions in order
// (starts, apply, commit, publish), started versions recorded normal with
// a start event each before the one policy event, and idle times.
func checkPlan(t *testing.T, pl plan, op Operation, starts []string, now time.Time) {
	t.Helper()
	var kinds []actionKind
	for _, a := range pl.Actions {
		kinds = append(kinds, a.Kind)
	}
	want := []actionKind{}
	for range starts {
		want = append(want, actStart)
	}
	want = append(want, actApply, actCommit, actPublish)
	if !reflect.DeepEqual(kinds, want) {
		t.Fatalf("actions %v, want %v", kinds, want)
	}
	if got := pl.Actions[len(starts)].Policy; !reflect.DeepEqual(got, pl.Service.Policy) {
		t.Fatalf("applies %+v, commits %+v", got, pl.Service.Policy)
	}
	if n := len(pl.Events); n != len(starts)+1 || pl.Events[n-1].Kind != EventPolicy || pl.Events[n-1].Op != op {
		t.Fatalf("events %+v", pl.Events)
	}
	for i, name := range starts {
		if ev := pl.Events[i]; ev.Op != OpStart || ev.Version != name || ev.Status != StatusNormal {
			t.Fatalf("event %d: %+v, want %s started", i, ev, name)
		}
	}
	for _, v := range pl.Versions {
		in := inPolicy(pl.Service.Policy, v.Name)
		if in && !v.IdleSince.IsZero() {
			t.Fatalf("%s takes traffic but is idle since %v", v.Name, v.IdleSince)
		}
		if v.Status == StatusStopped && in {
			t.Fatalf("%s takes traffic but stays stopped", v.Name)
		}
	}
}

func TestDecidePolicyIdleTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	svc, vs := decideFixture()
	pl, err := decidePolicy(svc, vs, policyChange{Op: OpPromote, Version: "v2"}, Origin{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if i, _ := findVersion(pl.Versions, "v1"); !pl.Versions[i].IdleSince.Equal(now) {
		t.Fatalf("v1 lost its rule but is idle since %v", pl.Versions[i].IdleSince)
	}
	if i, _ := findVersion(pl.Versions, "v3"); !pl.Versions[i].IdleSince.Equal(time.Unix(1, 0)) {
		t.Fatalf("v3 was idle already, now since %v", pl.Versions[i].IdleSince)
	}
}

func TestDecideRedeploy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{Run: "./new", Env: map[string]string{"X": "1"}}
	for _, c := range []struct {
		status Status
		starts bool
		busy   bool
	}{
		{StatusNormal, false, false},
		{StatusDeployFailed, false, false},
		{StatusStopped, true, false},
		{StatusCreating, false, true},
		{StatusUpdating, false, true},
		{StatusFailed, false, true},
	} {
		t.Run(string(c.status), func(t *testing.T) {
			v := Version{Name: "v1", Service: "hello", Status: c.status, Generation: 3, Config: Config{Run: "./old"}}
			pl, err := decideRedeploy(v, cfg, Origin{}, now)
			if c.busy {
				if e, ok := AsError(err); !ok || e.Code != ErrCodeBusy {
					t.Fatalf("redeploy of a %s version: %v, want %s", c.status, err, ErrCodeBusy)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(pl.starts()) == 1; got != c.starts {
				t.Fatalf("starts %v, want %v", pl.starts(), c.starts)
			}
			nv := pl.Versions[0]
			if nv.Status != StatusUpdating || nv.Pending == nil || nv.Pending.Run != "./new" || nv.Config.Run != "./old" {
				t.Fatalf("redeployed version %+v", nv)
			}
			last := pl.Events[len(pl.Events)-1]
			if last.Op != OpRedeploy || (c.starts && (len(pl.Events) != 2 || pl.Events[0].Op != OpStart)) {
				t.Fatalf("events %+v", pl.Events)
			}
		})
	}
}

func TestDecideRetire(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	svc := Service{Name: "hello", Policy: policy.Policy{Split: map[string]int{"live": 100},
		Rules: []policy.Rule{{Version: "ruled", Match: map[string]string{"a": "b"}}}}}
	idle := now.Add(-2 * time.Hour)
	vs := []Version{
		{Name: "live", Status: StatusNormal, IdleSince: idle},        // takes traffic
		{Name: "ruled", Status: StatusNormal, IdleSince: idle},       // has a rule
		{Name: "idle", Status: StatusNormal, IdleSince: idle},        // retired
		{Name: "broke", Status: StatusDeployFailed, IdleSince: idle}, // retired: its old instances serve
		{Name: "fresh", Status: StatusNormal, IdleSince: now.Add(-time.Minute)},
		{Name: "never", Status: StatusNormal}, // never had traffic taken away
		{Name: "busy", Status: StatusUpdating, IdleSince: idle},
		{Name: "gone", Status: StatusStopped, IdleSince: idle},
		{Name: "failed", Status: StatusFailed, IdleSince: idle},
	}
	in := slices.Clone(vs)
	for _, c := range []struct {
		olderThan time.Duration
		want      []string
	}{
		{time.Hour, []string{"idle", "broke"}},
		{0, []string{"idle", "broke", "fresh"}},
		{3 * time.Hour, nil},
	} {
		changed, events := decideRetire(svc, vs, c.olderThan, Origin{}, now)
		var got []string
		for i, v := range changed {
			got = append(got, v.Name)
			if v.Status != StatusStopped || events[i].Op != OpRetire || events[i].Version != v.Name {
				t.Fatalf("retired %+v with event %+v", v, events[i])
			}
		}
		if !reflect.DeepEqual(got, c.want) || len(events) != len(changed) {
			t.Fatalf("older than %v: retired %v, want %v", c.olderThan, got, c.want)
		}
	}
	if !reflect.DeepEqual(vs, in) {
		t.Fatal("decide changed its input")
	}
}
