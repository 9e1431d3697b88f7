package wire

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// Query parameter names.
const (
	QueryStrategy   = "strategy"
	QueryAutoCanary = "auto_canary"
	QueryVersion    = "version"
	QueryQuery      = "query"
	QueryBytes      = "bytes"
	QueryAfter      = "after"
	QueryBefore     = "before"
	QueryLimit      = "limit"
)

// RedeployBody is the JSON body of a config-only in-place redeploy; an
// absent field keeps the version's value.
type RedeployBody struct {
	Env       map[string]string `json:"env,omitempty"`
	UnsetEnv  []string          `json:"unset_env,omitempty"`
	Instances *int              `json:"instances,omitempty"`
	Run       *string           `json:"run,omitempty"`
}

// Query is b as the query parameters of a redeploy with a new source
// archive: env=K=V (repeated), unset_env=K (repeated), instances=N, run=CMD.
func (b RedeployBody) Query() url.Values {
	q := url.Values{}
	for k, v := range b.Env {
		q.Add("env", k+"="+v)
	}
	for _, k := range b.UnsetEnv {
		q.Add("unset_env", k)
	}
	if b.Instances != nil {
		q.Set("instances", strconv.Itoa(*b.Instances))
	}
	if b.Run != nil {
		q.Set("run", *b.Run)
	}
	return q
}

// ParseRedeployQuery reads what RedeployBody.Query writes. Its error names
// the parameter that is wrong.
func ParseRedeployQuery(q url.Values) (RedeployBody, error) {
	var b RedeployBody
	for _, kv := range q["env"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return b, fmt.Errorf("env must be KEY=VALUE, got %q", kv)
		}
		if b.Env == nil {
			b.Env = map[string]string{}
		}
		b.Env[k] = v
	}
	b.UnsetEnv = q["unset_env"]
	if n := q.Get("instances"); n != "" {
		i, err := strconv.Atoi(n)
		if err != nil {
			return b, fmt.Errorf("instances must be a whole number, got %q", n)
		}
		b.Instances = &i
	}
	if q.Has("run") {
		r := q.Get("run")
		b.Run = &r
	}
	return b, nil
}

// PolicyBody replaces the split and/or the rules; an absent (or null)
// field is kept.
type PolicyBody struct {
	Split map[string]int `json:"split"`
	Rules *[]policy.Rule `json:"rules"`
}

// RuleBody appends a rule; give Match, or Query in the "key=glob&key=glob"
// form, not both.
type RuleBody struct {
	Version string            `json:"version"`
	Match   map[string]string `json:"match,omitempty"`
	Query   string            `json:"query,omitempty"`
}

// VersionBody names a version; KeepRules applies to promote only.
type VersionBody struct {
	Version   string `json:"version"`
	KeepRules bool   `json:"keep_rules,omitempty"`
}

// RetireBody gives the idle time after which versions are stopped; an
// absent body means 0: every idle version.
type RetireBody struct {
	OlderThan rollout.Duration `json:"older_than"`
}

// RepoBody assigns a service to a repository ("owner/name"); "" assigns
// it to none (only the admin may then change it). Repo must be present.
type RepoBody struct {
	Repo *string `json:"repo"`
}

// TokenBody asks for a new token. Expires is its lifetime: absent means
// the server's default, "0s" means it never expires.
type TokenBody struct {
	Repo    string            `json:"repo"`
	Service string            `json:"service,omitempty"`
	Expires *rollout.Duration `json:"expires,omitempty"`
}
