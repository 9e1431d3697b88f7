package api

import (
	"maps"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// What a scoped caller reads.
//
// Only the admin reads a service's env values in clear. A scoped caller (a
// sluice token or an OIDC token, even of the service's own repository)
// reads statuses, versions, deploy and redeploy answers and events with
// every env value that redact.Env hides shown as "***", and every text
// that may quote one — build, run and health commands, failure details
// and suggestions, rule values, event messages — passed through
// redact.String with those values and the configured secrets (which also
// masks credentials inside URLs). The variable names stay, so a caller can
// still see which variables a version has. A scoped token is what a CI
// workflow holds; its logs are public more often than not.

// redactor masks, for a non-admin caller, the secrets of the given
// versions and the configured ones. The zero value (the admin's) changes
// nothing.
type redactor struct {
	on      bool
	secrets []string
}

// redactorFor returns the redactor for the request's caller, knowing the
// env of versions.
func (s *server) redactorFor(c echo.Context, versions ...rollout.Version) redactor {
	if principal(c).Admin {
		return redactor{}
	}
	r := redactor{on: true, secrets: slices.Clone(s.secrets)}
	for _, v := range versions {
		r.secrets = append(r.secrets, redact.Env(v.Config.Env)...)
	}
	return r
}

// statusRedactor is redactorFor with the versions of statuses.
func (s *server) statusRedactor(c echo.Context, statuses ...rollout.ServiceStatus) redactor {
	var vs []rollout.Version
	for _, st := range statuses {
		for _, v := range st.Versions {
			vs = append(vs, v.Version)
		}
	}
	return s.redactorFor(c, vs...)
}

func (r redactor) text(s string) string {
	if !r.on {
		return s
	}
	return redact.String(s, r.secrets)
}

// version returns a copy of v with its secrets masked.
func (r redactor) version(v rollout.Version) rollout.Version {
	if !r.on {
		return v
	}
	cfg := &v.Config
	if cfg.Env != nil {
		env := maps.Clone(cfg.Env)
		for k, val := range env {
			if slices.Contains(r.secrets, val) || r.text(val) != val {
				env[k] = "***"
			}
		}
		cfg.Env = env
	}
	cfg.Build, cfg.Run, cfg.Health = r.text(cfg.Build), r.text(cfg.Run), r.text(cfg.Health)
	v.Reason = r.reason(v.Reason)
	return v
}

func (r redactor) reason(re rollout.Reason) rollout.Reason {
	re.Detail, re.Suggestion = r.text(re.Detail), r.text(re.Suggestion)
	return re
}

func (r redactor) rules(p policy.Policy) policy.Policy {
	if !r.on {
		return p
	}
	p.Rules = slices.Clone(p.Rules)
	for i, rule := range p.Rules {
		m := make(map[string]string, len(rule.Match))
		for k, v := range rule.Match {
			m[k] = r.text(v)
		}
		p.Rules[i].Match = m
	}
	return p
}

// status returns a copy of st with its secrets masked.
func (r redactor) status(st rollout.ServiceStatus) rollout.ServiceStatus {
	if !r.on {
		return st
	}
	st.Versions = slices.Clone(st.Versions)
	for i := range st.Versions {
		st.Versions[i].Version = r.version(st.Versions[i].Version)
	}
	st.Policy = r.rules(st.Policy)
	return st
}

// events returns copies of evs with their secrets masked.
func (r redactor) events(evs []rollout.Event) []rollout.Event {
	if !r.on {
		return evs
	}
	out := slices.Clone(evs)
	for i := range out {
		e := &out[i]
		e.Message = r.text(e.Message)
		if e.Reason != nil {
			re := r.reason(*e.Reason)
			e.Reason = &re
		}
		if e.Policy != nil {
			p := r.rules(*e.Policy)
			e.Policy = &p
		}
	}
	return out
}
