package rollout

import (
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/reason"
)

// policyChange is the request of one policy operation: Op says which, and
// the fields that operation reads are set.
type policyChange struct {
	Op Operation
	// Traffic: nil leaves the split or the rules as they are.
	Split map[string]int
	Rules *[]policy.Rule
	// Route: the rule appended.
	Rule policy.Rule
	// Unroute ("" clears every rule), promote, rollback ("" walks the
	// stable history back) and abort: the version named.
	Version string
	// Promote: keep the rules that send traffic to other versions.
	KeepOther bool
}

// actionKind names one thing a decision asks the engine to do outside
// itself. Each plan's actions are carried out in the order listed.
type actionKind string

const (
	// actStart: start Version's recorded configuration (it is stopped) and
	// wait until it is healthy. Slow; run outside the service lock.
	actStart actionKind = "start"
	// actHandOver: the instances the caller already started for Version
	// (a deploy's build) take their place in the running set at commit.
	actHandOver actionKind = "hand over"
	// actApply: have the data plane route the service by Policy. Slow;
	// run outside the service lock.
	actApply actionKind = "apply"
	// actCommit: write the plan's service, versions and events in one
	// transaction.
	actCommit actionKind = "commit"
	// actPublish: rebuild the routing table from the committed state.
	actPublish actionKind = "publish"
)

// action is one step of a plan.
type action struct {
	Kind    actionKind
	Version Version       // actStart, actHandOver
	Policy  policy.Policy // actApply
}

// plan is the outcome of a decision: the next state of the service (its
// record, every version, the events that say what happened) and the
// actions that make it real.
type plan struct {
	Service  Service
	Versions []Version
	Events   []Event
	Actions  []action
}

// starts returns the versions the plan starts, in order.
func (p plan) starts() []Version { return p.versionsOf(actStart) }

// handOvers returns the versions whose already started instances the plan
// puts in the running set, in order.
func (p plan) handOvers() []Version { return p.versionsOf(actHandOver) }

func (p plan) versionsOf(kind actionKind) []Version {
	var out []Version
	for _, a := range p.Actions {
		if a.Kind == kind {
			out = append(out, a.Version)
		}
	}
	return out
}

// decidePolicy decides one policy operation on a service as it is loaded:
// it refuses with an *Error, or returns the plan. Pure: it reads only its
// arguments and changes none of them.
func decidePolicy(svc Service, vs []Version, ch policyChange, origin Origin, now time.Time) (plan, error) {
	svc.Stables = slices.Clone(svc.Stables)
	p, err := nextPolicy(&svc, vs, ch)
	if err != nil {
		return plan{}, err
	}
	return planPolicy(svc, vs, p, ch.Op, origin, now, true)
}

// nextPolicy computes the policy an operation asks for, refusing what the
// operation itself forbids; a rollback walks svc's stable history back.
func nextPolicy(svc *Service, vs []Version, ch policyChange) (policy.Policy, error) {
	known := func(name string) error {
		if _, ok := findVersion(vs, name); !ok {
			return notFound(ErrCodeUnknownVersion, "service %s has no version %q", svc.Name, name)
		}
		return nil
	}
	p := clonePolicy(svc.Policy)
	switch ch.Op {
	case OpTraffic:
		if ch.Split != nil {
			p.Split = ch.Split
		}
		if ch.Rules != nil {
			p.Rules = *ch.Rules
		}
	case OpRoute:
		p.Rules = append(p.Rules, ch.Rule)
	case OpUnroute:
		if ch.Version != "" {
			if err := known(ch.Version); err != nil {
				return policy.Policy{}, err
			}
		}
		p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return ch.Version != "" && r.Version != ch.Version })
	case OpPromote:
		if err := known(ch.Version); err != nil {
			return policy.Policy{}, err
		}
		p.Split = map[string]int{ch.Version: 100}
		if !ch.KeepOther {
			p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version == ch.Version })
		}
	case OpRollback:
		return rollbackPolicy(svc, vs, ch.Version)
	case OpAbort:
		return abortPolicy(*svc, vs, ch.Version)
	default:
		return policy.Policy{}, fmt.Errorf("decide policy: unknown operation %q", ch.Op)
	}
	return p, nil
}

func rollbackPolicy(svc *Service, vs []Version, target string) (policy.Policy, error) {
	if target == "" {
		idx := -1
		for i := len(svc.Stables) - 2; i >= 0; i-- {
			j, ok := findVersion(vs, svc.Stables[i])
			if ok && (vs[j].Status.Serving() || vs[j].Status == StatusStopped) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return policy.Policy{}, conflict(ErrCodeNoStable, "service %s has no previous stable version to roll back to; name a version", svc.Name)
		}
		target = svc.Stables[idx]
		svc.Stables = svc.Stables[:idx+1]
	}
	if _, ok := findVersion(vs, target); !ok {
		return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", svc.Name, target)
	}
	return policy.Policy{Split: map[string]int{target: 100}, Rules: []policy.Rule{}}, nil
}

func abortPolicy(svc Service, vs []Version, version string) (policy.Policy, error) {
	if _, ok := findVersion(vs, version); !ok {
		return policy.Policy{}, notFound(ErrCodeUnknownVersion, "service %s has no version %q", svc.Name, version)
	}
	stable := svc.Stable()
	if stable == "" || stable == version {
		return policy.Policy{}, conflict(ErrCodeNoStable, "%s is the stable version of %s; there is nothing to abort to (use rollback)", version, svc.Name)
	}
	if _, ok := svc.Policy.Split[version]; !ok && !slices.ContainsFunc(svc.Policy.Rules, func(r policy.Rule) bool { return r.Version == version }) {
		return policy.Policy{}, conflict(ErrCodeUnchanged, "%s has no traffic and no rule in %s: nothing changed (aborted already?)", version, svc.Name)
	}
	p := clonePolicy(svc.Policy)
	p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version != version })
	if w, ok := p.Split[version]; ok {
		delete(p.Split, version)
		p.Split[stable] += w
	}
	if len(p.Split) == 0 {
		p.Split[stable] = 100
	}
	return p, nil
}

// planPolicy is the common tail of every decision that sets a policy: p is
// normalized (a 0% weight is the same as none) and validated against the
// versions; with mayStart, the stopped versions p gives traffic or a rule
// are started first (p is validated as if they were normal, so a policy
// refused anyway starts nothing) and recorded normal again. The plan
// updates the stable history and the versions' idle times, and records
// extra events, then a start event per started version, then the policy
// event. Pure.
func planPolicy(svc Service, vs []Version, p policy.Policy, op Operation, origin Origin, now time.Time, mayStart bool, extra ...Event) (plan, error) {
	p = clonePolicy(p)
	if p.Rules == nil {
		p.Rules = []policy.Rule{}
	}
	for v, w := range p.Split {
		if w == 0 {
			delete(p.Split, v)
		}
	}
	vs = slices.Clone(vs)
	var starts []int
	if mayStart {
		for i := range vs {
			if vs[i].Status == StatusStopped && inPolicy(p, vs[i].Name) {
				starts = append(starts, i)
			}
		}
	}
	probe := slices.Clone(vs)
	for _, i := range starts {
		probe[i].Status = StatusNormal
	}
	if err := validatePolicy(svc.Name, p, probe); err != nil {
		return plan{}, err
	}
	out := plan{Events: slices.Clone(extra)}
	for _, i := range starts {
		out.Actions = append(out.Actions, action{Kind: actStart, Version: vs[i]})
		vs[i].Status, vs[i].Reason, vs[i].UpdatedAt = StatusNormal, Reason{}, now
		out.Events = append(out.Events, Event{Time: now, Kind: EventVersionStatus, Service: svc.Name, Version: vs[i].Name,
			Origin: origin, Op: OpStart, Status: StatusNormal, Message: vs[i].Name + " started again"})
	}
	svc.Stables = slices.Clone(svc.Stables)
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
	out.Events = append(out.Events, Event{Time: now, Kind: EventPolicy, Service: svc.Name, Origin: origin, Op: op,
		Policy: &pc, Message: describePolicy(p)})
	out.Service, out.Versions = svc, vs
	out.Actions = append(out.Actions, action{Kind: actApply, Policy: clonePolicy(p)}, action{Kind: actCommit}, action{Kind: actPublish})
	return out, nil
}

// decideDeployed decides what a deploy whose instances are healthy does:
// version name becomes normal and the instances its build started are
// handed over; a full deploy sends it all traffic, an automatic canary the
// first step of its plan beside the stable version, and any other deploy
// leaves the policy as it is (the version idles until traffic reaches
// it). canary reports that a canary step begins. Pure.
func decideDeployed(svc Service, vs []Version, name string, now time.Time) (pl plan, canary bool, err error) {
	i, ok := findVersion(vs, name)
	if !ok {
		return plan{}, false, fmt.Errorf("%s vanished while it was built", name)
	}
	if vs[i].Status != StatusCreating {
		return plan{}, false, fmt.Errorf("%s is %s, no longer creating", name, vs[i].Status)
	}
	vs = slices.Clone(vs)
	cur := &vs[i]
	cur.Status, cur.UpdatedAt = StatusNormal, now
	ev := Event{Time: now, Kind: EventVersionStatus, Service: svc.Name, Version: name, Origin: cur.CreatedBy,
		Op: OpDeploy, Status: StatusNormal, Message: name + " is normal"}
	switch stable := svc.Stable(); {
	case cur.Strategy == StrategyFull:
		p := clonePolicy(svc.Policy)
		p.Split = map[string]int{name: 100}
		pl, err = planPolicy(svc, vs, p, OpDeploy, cur.CreatedBy, now, false, ev)
	case cur.AutoCanary && stable != "" && stable != name:
		step := cur.Config.Canary.Steps[0]
		p := clonePolicy(svc.Policy)
		p.Split = map[string]int{stable: 100 - step, name: step}
		if step >= 100 {
			p.Split = map[string]int{name: 100}
		}
		canary = step < 100
		pl, err = planPolicy(svc, vs, p, OpCanary, Origin{Via: ViaSluice, Actor: "canary"}, now, false, ev)
	default:
		cur.IdleSince = now
		pl = plan{Service: svc, Versions: vs, Events: []Event{ev}, Actions: []action{{Kind: actCommit}, {Kind: actPublish}}}
	}
	if err != nil {
		return plan{}, false, err
	}
	pl.Actions = append([]action{{Kind: actHandOver, Version: vs[i]}}, pl.Actions...)
	return pl, canary, nil
}

// followsCanaryPlan reports whether v's traffic is moved by its automatic
// canary plan at weight: it is normal and neither out of the split nor
// all of it.
func followsCanaryPlan(v Version, weight int) bool {
	return v.AutoCanary && v.Config.Canary != nil && v.Status == StatusNormal && weight > 0 && weight < 100
}

// canaryStillAt returns the index of version name in vs when it still
// follows its canary plan at weight in svc (a step judged at weight is
// carried out only then).
func canaryStillAt(svc Service, vs []Version, name string, weight int) (int, bool) {
	i, ok := findVersion(vs, name)
	if !ok || svc.Policy.Split[name] != weight || !followsCanaryPlan(vs[i], weight) {
		return 0, false
	}
	return i, true
}

// decideCanaryStep decides what the verdict on the step of version name's
// automatic canary that ran at weight does: advance to the plan's next
// step (promote after the last), or stop (its traffic goes back to the
// stable version and it leaves the plan). A plan without actions when the
// version no longer follows its plan at that weight (a person moved its
// traffic meanwhile). msg says what happened; following reports that the
// version goes on with a next step. Pure.
func decideCanaryStep(svc Service, vs []Version, name string, weight int, verdict canaryVerdict, origin Origin, now time.Time) (pl plan, msg string, following bool, err error) {
	i, ok := canaryStillAt(svc, vs, name, weight)
	if !ok {
		return plan{}, "", false, nil
	}
	vs = slices.Clone(vs)
	v := &vs[i]
	stable := svc.Stable()
	p := clonePolicy(svc.Policy)
	if verdict.outcome == canaryStop {
		v.AutoCanary = false
		p.Rules = keepRules(p.Rules, func(r policy.Rule) bool { return r.Version != name })
		delete(p.Split, name)
		if stable != "" && stable != name {
			p.Split[stable] += weight
		}
		msg = fmt.Sprintf("automatic canary of %s stopped: %s; its traffic went back to %s", name, verdict.why, stable)
	} else {
		next := 100
		for _, s := range v.Config.Canary.Steps {
			if s > weight {
				next = s
				break
			}
		}
		if next >= 100 || stable == "" || stable == name {
			v.AutoCanary = false
			p.Split = map[string]int{name: 100}
			msg = fmt.Sprintf("automatic canary of %s passed every step: promoted", name)
		} else {
			p.Split = map[string]int{stable: 100 - next, name: next}
			msg = fmt.Sprintf("automatic canary of %s: %d%% → %d%%", name, weight, next)
		}
	}
	ev := Event{Time: now, Kind: EventVersionStep, Service: svc.Name, Version: name, Origin: origin,
		Op: OpCanary, Status: v.Status, Message: msg}
	if verdict.outcome == canaryStop {
		ev.Reason = &Reason{Code: reason.CanaryStopped, Detail: verdict.why,
			Suggestion: "Fix the version and deploy again, or move its traffic by hand (traffic, promote)."}
	}
	pl, err = planPolicy(svc, vs, p, OpCanary, origin, now, false, ev)
	if err != nil {
		return plan{}, "", false, err
	}
	return pl, msg, v.AutoCanary, nil
}
