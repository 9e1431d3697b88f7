package rollout

import (
	"errors"
	"maps"

	"github.com/sluicehq/sluice/rollout/policy"
)

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func findVersion(vs []Version, name string) (int, bool) {
	for i := range vs {
		if vs[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// clonePolicy deep-copies a policy so edits never alias a stored value.
func clonePolicy(p policy.Policy) policy.Policy {
	out := policy.Policy{Split: maps.Clone(p.Split), Rules: make([]policy.Rule, len(p.Rules))}
	if out.Split == nil {
		out.Split = map[string]int{}
	}
	for i, r := range p.Rules {
		out.Rules[i] = policy.Rule{Version: r.Version, Match: maps.Clone(r.Match)}
	}
	return out
}

func cloneConfig(c Config) Config {
	c.Env = maps.Clone(c.Env)
	if c.Env == nil {
		c.Env = map[string]string{}
	}
	return c
}

// inPolicy reports whether a version has weight or a rule in p.
func inPolicy(p policy.Policy, version string) bool {
	if p.Split[version] > 0 {
		return true
	}
	for _, r := range p.Rules {
		if r.Version == version {
			return true
		}
	}
	return false
}
