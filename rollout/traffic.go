package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

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
// the new policy is committed and already routes new requests.
func (e *Engine) Traffic(ctx context.Context, service string, req TrafficRequest, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(service, OpTraffic, origin, func(s *Service, vs []Version) (policy.Policy, error) {
		p := clonePolicy(s.Policy)
		if req.Split != nil {
			p.Split = req.Split
		}
		if req.Rules != nil {
			p.Rules = *req.Rules
		}
		return p, e.startStopped(service, p, vs, origin)
	})
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
	return e.changePolicy(service, OpRoute, origin, func(s *Service, vs []Version) (policy.Policy, error) {
		p := clonePolicy(s.Policy)
		p.Rules = append(p.Rules, rule)
		return p, e.startStopped(service, p, vs, origin)
	})
}

// ClearRoutes removes the rules of a service that send traffic to version,
// or every rule when version is "".
func (e *Engine) ClearRoutes(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(service, "unroute", origin, func(s *Service, vs []Version) (policy.Policy, error) {
		if version != "" {
			if _, ok := findVersion(vs, version); !ok {
				return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, version)
			}
		}
		p := clonePolicy(s.Policy)
		p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return version != "" && r.Version != version })
		return p, nil
	})
}

// Promote gives version 100% of the split and makes it stable. Rules that
// send traffic to other versions are dropped unless keepRules.
func (e *Engine) Promote(ctx context.Context, service, version string, keepOther bool, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(service, OpPromote, origin, func(s *Service, vs []Version) (policy.Policy, error) {
		if _, ok := findVersion(vs, version); !ok {
			return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, version)
		}
		p := clonePolicy(s.Policy)
		p.Split = map[string]int{version: 100}
		if !keepOther {
			p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version == version })
		}
		return p, e.startStopped(service, p, vs, origin)
	})
}

// Rollback sends 100% to the previous stable version (or to version, when
// named) and clears the rules. A stopped target is started again first.
// Rolling back to the previous stable walks the stable history back, so a
// second rollback goes one further.
func (e *Engine) Rollback(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(service, OpRollback, origin, func(s *Service, vs []Version) (policy.Policy, error) {
		target := version
		if target == "" {
			idx := -1
			for i := len(s.Stables) - 2; i >= 0; i-- {
				j, ok := findVersion(vs, s.Stables[i])
				if ok && (vs[j].Status.Serving() || vs[j].Status == StatusStopped) {
					idx = i
					break
				}
			}
			if idx < 0 {
				return policy.Policy{}, conflict(ErrCodeNoStable, "service %s has no previous stable version to roll back to; name a version", service)
			}
			target = s.Stables[idx]
			s.Stables = s.Stables[:idx+1]
		}
		j, ok := findVersion(vs, target)
		if !ok {
			return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, target)
		}
		if vs[j].Status == StatusStopped {
			if err := e.restart(&vs[j], origin); err != nil {
				return policy.Policy{}, err
			}
		}
		return policy.Policy{Split: map[string]int{target: 100}, Rules: []policy.Rule{}}, nil
	})
}

// Abort removes version (a canary) from the split and the rules; the stable
// version gets its share back.
func (e *Engine) Abort(ctx context.Context, service, version string, origin Origin) (ServiceStatus, error) {
	return e.changePolicy(service, OpAbort, origin, func(s *Service, vs []Version) (policy.Policy, error) {
		if _, ok := findVersion(vs, version); !ok {
			return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", service, version)
		}
		stable := s.Stable()
		if stable == "" || stable == version {
			return policy.Policy{}, conflict(ErrCodeNoStable, "%s is the stable version of %s; there is nothing to abort to (use rollback)", version, service)
		}
		if _, ok := s.Policy.Split[version]; !ok && !slices.ContainsFunc(s.Policy.Rules, func(r policy.Rule) bool { return r.Version == version }) {
			return policy.Policy{}, conflict(ErrCodeUnchanged, "%s has no traffic and no rule in %s: nothing changed (aborted already?)", version, service)
		}
		p := clonePolicy(s.Policy)
		p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version != version })
		if w, ok := p.Split[version]; ok {
			delete(p.Split, version)
			p.Split[stable] += w
		}
		if len(p.Split) == 0 {
			p.Split[stable] = 100
		}
		if j, _ := findVersion(vs, stable); vs[j].Status == StatusStopped && p.Split[stable] > 0 {
			if err := e.restart(&vs[j], origin); err != nil {
				return policy.Policy{}, err
			}
		}
		return p, nil
	})
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

// changePolicy runs one policy operation under the service lock: the
// origin's principal must own the service (see authorize), decide computes the next policy (it may edit the service's stable history and
// restart a stopped version), then commitPolicy validates, persists and
// publishes it.
func (e *Engine) changePolicy(service string, op Operation, origin Origin, decide func(*Service, []Version) (policy.Policy, error)) (ServiceStatus, error) {
	unlock := e.lock(service)
	defer unlock()
	svc, vs, err := e.loadService(service)
	if err != nil {
		return ServiceStatus{}, err
	}
	if err := authorize(origin.Principal, &svc, true, op); err != nil {
		return ServiceStatus{}, err
	}
	p, err := decide(&svc, vs)
	if err != nil {
		return ServiceStatus{}, err
	}
	if err := e.commitPolicy(&svc, vs, p, op, origin); err != nil {
		return ServiceStatus{}, err
	}
	return e.status(svc.Name)
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

// commitPolicy validates p against the service's versions, has the data
// plane apply it (when there is one: the change counts only once the data
// plane confirms it), updates the stable history and the versions' idle
// times, commits it all with a policy event (plus extra events) in one
// transaction, then publishes the new routing table. On error nothing is
// committed.
func (e *Engine) commitPolicy(svc *Service, vs []Version, p policy.Policy, op Operation, origin Origin, extra ...Event) error {
	if p.Split == nil {
		p.Split = map[string]int{}
	}
	if p.Rules == nil {
		p.Rules = []policy.Rule{}
	}
	for v, w := range p.Split {
		if w == 0 {
			delete(p.Split, v) // a 0% weight is the same as none
		}
	}
	if err := validatePolicy(svc.Name, p, vs); err != nil {
		return err
	}
	if e.plane != nil {
		if err := e.plane.ApplyPolicy(e.ctx, svc.Name, p); err != nil {
			if errors.Is(err, policy.ErrInvalidPolicy) {
				return invalid(ErrCodeInvalidPolicy, "%v", err)
			}
			return conflict(ErrCodeDataPlane, "the new policy of %s was not applied, the previous one still routes: %v", svc.Name, err)
		}
	}
	now := e.now().UTC()
	if len(p.Split) == 1 {
		for v := range p.Split {
			if svc.Stable() != v {
				svc.Stables = append(svc.Stables, v)
			}
		}
	}
	for i := range vs {
		was, is := inPolicy(svc.Policy, vs[i].Name), inPolicy(p, vs[i].Name)
		switch {
		case is:
			vs[i].IdleSince = time.Time{}
		case was:
			vs[i].IdleSince = now
		}
	}
	svc.Policy = p
	pc := clonePolicy(p)
	events := append(extra, Event{Time: now, Kind: EventPolicy, Service: svc.Name, Origin: origin, Op: op,
		Policy: &pc, Message: describePolicy(p)})
	// Every version is written with the policy: callers pass versions whose
	// status they changed for this same decision, and a service has few.
	if err := e.store.Commit(svc, vs, events); err != nil {
		return fmt.Errorf("record policy: %w", err)
	}
	return e.publish()
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

// startStopped starts again the stopped (retired) versions that p gives
// traffic or a rule, so that a retired version can be brought back by
// naming it: p is validated first as if they were normal, so a policy
// that would be refused anyway starts nothing. Caller holds the service
// lock.
func (e *Engine) startStopped(service string, p policy.Policy, vs []Version, origin Origin) error {
	probe := slices.Clone(vs)
	var stopped []int
	for i := range probe {
		if probe[i].Status == StatusStopped && inPolicy(p, probe[i].Name) {
			probe[i].Status = StatusNormal
			stopped = append(stopped, i)
		}
	}
	if len(stopped) == 0 {
		return nil
	}
	q := clonePolicy(p)
	for v, w := range q.Split {
		if w == 0 {
			delete(q.Split, v)
		}
	}
	if err := validatePolicy(service, q, probe); err != nil {
		return err
	}
	for _, i := range stopped {
		if err := e.restart(&vs[i], origin); err != nil {
			return err
		}
	}
	return nil
}

// restart starts a stopped version's recorded configuration again and
// records it as normal. Caller holds the service lock.
func (e *Engine) restart(v *Version, origin Origin) error {
	if r := e.startVersion(*v); r != nil {
		return conflict(ErrCodeStartFailed, "could not start %s again: %s: %s", v.Name, r.Code, r.Detail)
	}
	now := e.now().UTC()
	v.Status, v.Reason, v.UpdatedAt = StatusNormal, Reason{}, now
	ev := Event{Time: now, Kind: EventVersionStatus, Service: v.Service, Version: v.Name, Origin: origin,
		Op: OpStart, Status: StatusNormal, Message: v.Name + " started again"}
	if err := e.store.Commit(nil, []Version{*v}, []Event{ev}); err != nil {
		return fmt.Errorf("record start: %w", err)
	}
	return nil
}
