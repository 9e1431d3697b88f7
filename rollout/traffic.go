package rollout

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/rollout/policy"
)

// TrafficRequest replaces parts of a service's policy. A nil field is left
// as it is.
type TrafficRequest struct {
	Split map[string]int
	Rules *[]policy.Rule
}

// Traffic replaces the split and/or the rules of a service's policy. The
// whole new policy is validated first (shape, globs, versions exist and
// are normal); an *Error means nothing changed. When Traffic returns nil,
// the new policy is committed and already routes new requests. A stopped
// version the policy names is started again first (see changePolicy).
func (e *Engine) Traffic(ctx context.Context, service string, req TrafficRequest, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(ctx, service, policyChange{Op: OpTraffic, Split: req.Split, Rules: req.Rules}, origin)
}

// Route appends a rule to a service's policy.
func (e *Engine) Route(ctx context.Context, service string, rule policy.Rule, origin Origin) (ServiceStatus, error) {
	if len(rule.Match) == 0 {
		return ServiceStatus{}, invalid(ErrCodeInvalidRule, "a rule needs at least one key=glob condition")
	}
	// The rule on its own first, so its own mistakes are named before the
	// rest of the policy is looked at.
	if err := (policy.Policy{Rules: []policy.Rule{rule}, Split: map[string]int{rule.Version: 100}}).Validate(); err != nil {
		return ServiceStatus{}, invalid(ErrCodeInvalidRule, "%v", err)
	}
	return e.changePolicy(ctx, service, policyChange{Op: OpRoute, Rule: rule}, origin)
}

// ClearRoutes removes the rules of a service that send traffic to version,
// or every rule when version is "".
func (e *Engine) ClearRoutes(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(ctx, service, policyChange{Op: OpUnroute, Version: version}, origin)
}

// Promote gives version 100% of the split and makes it stable. Rules that
// send traffic to other versions are dropped unless keepRules.
func (e *Engine) Promote(ctx context.Context, service, version string, keepOther bool, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(ctx, service, policyChange{Op: OpPromote, Version: version, KeepOther: keepOther}, origin)
}

// Rollback sends 100% to the previous stable version (or to version, when
// named) and clears the rules. A stopped target is started again first.
// Rolling back to the previous stable walks the stable history back, so a
// second rollback goes one further.
func (e *Engine) Rollback(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(ctx, service, policyChange{Op: OpRollback, Version: version}, origin)
}

// Abort removes version (a canary) from the split and the rules; the stable
// version gets its share back (and is started again first if it was
// retired).
func (e *Engine) Abort(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(ctx, service, policyChange{Op: OpAbort, Version: version}, origin)
}

func keepRules(rs []policy.Rule, keep func(policy.Rule) bool) []policy.Rule {
	out := []policy.Rule{}
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// validatePolicy checks a policy against a service's versions.
func validatePolicy(service string, p policy.Policy, vs []Version) error {
	if err := p.Validate(); err != nil {
		return invalid(ErrCodeInvalidPolicy, "%v", err)
	}
	check := func(name string) error {
		i, ok := findVersion(vs, name)
		if !ok {
			return notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, name)
		}
		if st := vs[i].Status; !st.Serving() {
			msg := fmt.Sprintf("%s is %s", name, st)
			if vs[i].Reason.Code != "" {
				msg += " (" + string(vs[i].Reason.Code) + ")"
			}
			return conflict(ErrCodeNotNormal, "%s; only normal versions can take traffic", msg)
		}
		return nil
	}
	names := make([]string, 0, len(p.Split))
	for n := range p.Split {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := check(n); err != nil {
			return err
		}
	}
	for _, r := range p.Rules {
		if err := check(r.Version); err != nil {
			return err
		}
	}
	return nil
}

// describePolicy renders a policy on one line for the history log.
func describePolicy(p policy.Policy) string {
	var parts []string
	for _, w := range sortedSplit(p) {
		parts = append(parts, fmt.Sprintf("%s=%d%%", w.Version, w.Percent))
	}
	s := "split " + strings.Join(parts, " ")
	for i, r := range p.Rules {
		s += fmt.Sprintf("; rule %d %s -> %s", i+1, policy.FormatMatch(r.Match), r.Version)
	}
	return s
}

func sortedSplit(p policy.Policy) []policy.Weight {
	out := make([]policy.Weight, 0, len(p.Split))
	for v, w := range p.Split {
		out = append(out, policy.Weight{Version: v, Percent: w})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}
