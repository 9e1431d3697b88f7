package rollout_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// TestForeignPrincipalChangesNothing: every operation that changes a
// service, asked for by a principal of another repository (and by one of
// no repository, and for an unowned service by any repository), is
// refused by the engine with KindForbidden; the store and the running
// instances are unchanged. Redeploy is the reported attack: repository
// B's PR or push rebuilding A's stable version from B's source.
func TestForeignPrincipalChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.eng.SetRepo(ctx, "hello", "acme/web", cli); err != nil {
		t.Fatal(err)
	}
	v1 := h.deploy("hello", "serve", rollout.StrategyFull, "")
	v2 := h.deploy("hello", "serve", rollout.StrategyCanary, "")
	h.deploy("admins", "serve", rollout.StrategyFull, "") // no repository: the admin's only
	if v1.Status != rollout.StatusNormal || v2.Status != rollout.StatusNormal {
		t.Fatalf("setup: %s %s", v1.Status, v2.Status)
	}
	two := 2
	ops := map[string]func(svc, v string, o rollout.Origin) error{
		"deploy": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: svc, Archive: appSource(t, svc, "serve", ""), Origin: o})
			return err
		},
		// Ownership is decided before the request is validated: a stranger
		// is refused, not told what is wrong with what it sent.
		"deploy of a source that is not a tar.gz": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: svc, Archive: []byte("not a tarball"), Origin: o})
			return err
		},
		"deploy with an unknown strategy": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Deploy(ctx, rollout.DeployRequest{Service: svc, Archive: appSource(t, svc, "serve", ""), Strategy: "sideways", Origin: o})
			return err
		},
		"redeploy with new source": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Redeploy(ctx, svc, v, rollout.RedeployRequest{Archive: appSource(t, svc, "serve", ""), Origin: o})
			return err
		},
		"redeploy config": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Redeploy(ctx, svc, v, rollout.RedeployRequest{Instances: &two, Origin: o})
			return err
		},
		"traffic": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Traffic(ctx, svc, rollout.TrafficRequest{Split: map[string]int{v: 100}}, o)
			return err
		},
		"route": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Route(ctx, svc, policy.Rule{Version: v, Match: map[string]string{"env": "x"}}, o)
			return err
		},
		"unroute": func(svc, v string, o rollout.Origin) error { _, err := h.eng.ClearRoutes(ctx, svc, "", o); return err },
		"promote": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.Promote(ctx, svc, v, false, o)
			return err
		},
		"rollback": func(svc, v string, o rollout.Origin) error { _, err := h.eng.Rollback(ctx, svc, v, o); return err },
		"abort":    func(svc, v string, o rollout.Origin) error { _, err := h.eng.Abort(ctx, svc, v, o); return err },
		"retire":   func(svc, v string, o rollout.Origin) error { _, err := h.eng.Retire(ctx, svc, 0, o); return err },
		"stop":     func(svc, v string, o rollout.Origin) error { return h.eng.StopVersion(ctx, svc, v, o) },
		"set-repo": func(svc, v string, o rollout.Origin) error {
			_, err := h.eng.SetRepo(ctx, svc, "acme/evil", o)
			return err
		},
	}
	callers := []struct {
		name, service, version string
		p                      rollout.Principal
	}{
		{"another repository's App delivery", "hello", v2.Name, rollout.ServicePrincipal("acme/evil")},
		{"another repository's token", "hello", v2.Name, rollout.Principal{Repo: "acme/evil"}},
		{"no principal", "hello", v2.Name, rollout.Principal{}},
		{"a repository on the admin's unowned service", "admins", "admins-001", rollout.ServicePrincipal("acme/web")},
	}
	snapshot := func() string {
		var all []any
		for _, svc := range []string{"hello", "admins"} {
			st := h.status(svc)
			for i := range st.Versions {
				st.Versions[i].Served = rollout.Served{}
			}
			all = append(all, st)
		}
		evs, _ := h.eng.Events(context.Background(), "", 0, 1000)
		b, _ := json.Marshal([]any{all, len(evs)})
		return string(b)
	}
	before := snapshot()
	for _, c := range callers {
		for name, op := range ops {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				o := rollout.Origin{Via: "test", Repo: c.p.Repo, Principal: c.p}
				err := op(c.service, c.version, o)
				h.eng.Wait()
				if re, ok := rollout.AsError(err); !ok || re.Kind != rollout.KindForbidden {
					t.Fatalf("err = %v, want a KindForbidden refusal", err)
				}
			})
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("refused operations changed state:\nbefore %s\nafter  %s", before, after)
	}
	if got, _, _, err := h.get("hello.localhost", ""); err != nil || got == "" {
		t.Fatalf("hello stopped serving after the refusals: %q %v", got, err)
	}
}
