package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/routing"
	"github.com/sluicehq/sluice/rollout/runtime"
)

// ServiceStatus is the view of one service that front doors show: its URL,
// versions with their URLs, statuses and traffic, and the policy.
type ServiceStatus struct {
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	Stable   string          `json:"stable"`
	Repo     string          `json:"repo,omitempty"`
	Versions []VersionStatus `json:"versions"`
	Policy   policy.Policy   `json:"policy"`
}

// VersionStatus is a version with what is derived from the live state.
type VersionStatus struct {
	Version
	URL string `json:"url"`
	// Traffic is the version's weight in the split, in percent.
	Traffic int `json:"traffic"`
	// Rules numbers (from 1) the policy rules that send traffic to it.
	Rules     []int              `json:"rules"`
	Instances []runtime.Instance `json:"instances"`
	// Served is what the router has seen of the version since sluice
	// started: requests, error rate and latency.
	Served Served `json:"served"`
	// Canary is the version's automatic canary step while it follows its
	// plan (nil otherwise).
	Canary *CanaryStep `json:"canary,omitempty"`
}

// CanaryStep is where a version's automatic canary stands.
type CanaryStep struct {
	// Since is when the current step began (steps start again when sluice
	// restarts).
	Since time.Time `json:"since"`
	// Hold says why the step waits past its interval ("" when it does
	// not): there was nothing to judge it on. Suggestion says what to do.
	Hold       string `json:"hold,omitempty"`
	Suggestion string `json:"suggestion,omitempty"`
}

// Served summarizes a version's traffic as the router measured it.
type Served struct {
	Requests  uint64  `json:"requests"`
	InFlight  int64   `json:"in_flight"`
	Errors5xx uint64  `json:"errors_5xx"`
	ErrorRate float64 `json:"error_rate"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

func servedOf(s routing.Stats) Served {
	return Served{Requests: s.Requests, InFlight: s.InFlight, Errors5xx: s.Status5xx, ErrorRate: s.ErrorRate(),
		P50Ms: float64(s.P50.Microseconds()) / 1000, P99Ms: float64(s.P99.Microseconds()) / 1000}
}

// Status returns the view of one service.
func (e *Engine) Status(ctx context.Context, service string) (ServiceStatus, error) {
	return e.status(service)
}

func (e *Engine) status(service string) (ServiceStatus, error) {
	svc, vs, err := e.loadService(service)
	if err != nil {
		return ServiceStatus{}, err
	}
	out := ServiceStatus{Name: svc.Name, URL: e.ServiceURL(svc.Name), Stable: svc.Stable(), Repo: svc.Repo,
		Policy: clonePolicy(svc.Policy), Versions: []VersionStatus{}}
	for _, v := range vs {
		v.Config = cloneConfig(v.Config)
		vst := VersionStatus{Version: v, URL: e.VersionURL(svc.Name, v.Name), Traffic: svc.Policy.Split[v.Name],
			Rules: []int{}, Instances: []runtime.Instance{}}
		for i, r := range svc.Policy.Rules {
			if r.Version == v.Name {
				vst.Rules = append(vst.Rules, i+1)
			}
		}
		if in := e.getRunning(v.Name); in != nil {
			vst.Instances = in.group.Instances()
		}
		vst.Served = servedOf(e.router.Stats(v.Name))
		vst.Canary = e.canaryStep(v, vst.Traffic)
		out.Versions = append(out.Versions, vst)
	}
	return out, nil
}

// Prediction says which version serves a request with a given query, and why.
type Prediction struct {
	Query string `json:"query"`
	// Version serves the request; "" when the split picks at random among
	// several versions (see Split).
	Version string `json:"version"`
	// Rule is the matching rule's number, from 1; 0 when no rule matched.
	Rule  int               `json:"rule"`
	Match map[string]string `json:"match,omitempty"`
	// Split lists the candidates when no rule matched.
	Split  []Share `json:"split,omitempty"`
	Reason string  `json:"reason"`
}

// Share is one version's weight in a split, in whole percent.
type Share struct {
	Version string `json:"version"`
	Percent int    `json:"percent"`
}

// Predict answers which version a request with query (a URL query string,
// with or without "?") would reach. It uses the router's own decision
// function over the committed policy.
func (e *Engine) Predict(ctx context.Context, service, query string) (Prediction, error) {
	svc, _, err := e.loadService(service)
	if err != nil {
		return Prediction{}, err
	}
	query = strings.TrimPrefix(query, "?")
	c, err := policy.Compile(svc.Policy)
	if err != nil {
		return Prediction{}, fmt.Errorf("compile policy of %s: %w", service, err)
	}
	d := c.Decide(query)
	p := Prediction{Query: query}
	if d.Rule >= 0 {
		r := svc.Policy.Rules[d.Rule]
		p.Version, p.Rule, p.Match = d.Version, d.Rule+1, r.Match
		p.Reason = fmt.Sprintf("rule %d matched (%s)", d.Rule+1, policy.FormatMatch(r.Match))
		return p, nil
	}
	for _, w := range c.Split() {
		p.Split = append(p.Split, Share{Version: w.Version, Percent: w.Percent})
	}
	switch len(p.Split) {
	case 0:
		p.Reason = "no rule matched and the split is empty: the service has no version taking traffic"
	case 1:
		p.Version = p.Split[0].Version
		p.Reason = fmt.Sprintf("no rule matched; the split sends 100%% to %s", p.Version)
	default:
		var parts []string
		for _, w := range p.Split {
			parts = append(parts, fmt.Sprintf("%s %d%%", w.Version, w.Percent))
		}
		p.Reason = "no rule matched; split: random among " + strings.Join(parts, ", ")
	}
	return p, nil
}
