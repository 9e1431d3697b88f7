// Package dashboard is sluice's read-only status page: every service with
// its versions, statuses, URLs and traffic, linked from GitHub check runs
// (details_url). It shows reason codes and suggestions but never details
// or log tails, since it needs no token to read, and what it shows passes
// through bot/redact. It imports rollout, bot/redact and echo; it must not
// import the store, the runtimes or the router.
package dashboard

import (
	"context"
	"embed"
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/redact"
	"github.com/sluicehq/sluice/rollout"
)

// Engine is what the page reads.
type Engine interface {
	Services(ctx context.Context) ([]string, error)
	Status(ctx context.Context, service string) (rollout.ServiceStatus, error)
}

//go:embed page.html
var files embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"bar": func(p int) string { return strings.Repeat("█", p/5) + strings.Repeat("░", 20-p/5) },
	"inc": func(i int) int { return i + 1 },
}).ParseFS(files, "page.html"))

// Option configures Register.
type Option func(*config)

type config struct {
	anonymous bool
	mw        []echo.MiddlewareFunc
	secrets   []string
}

// Anonymous serves the page to readers nobody identified (--public-dashboard):
// it then shows no repository names and no actors (who deployed, from
// which pull request), only services, versions, statuses and traffic.
func Anonymous() Option { return func(c *config) { c.anonymous = true } }

// WithMiddleware guards the pages, e.g. with the admin token.
func WithMiddleware(mw ...echo.MiddlewareFunc) Option {
	return func(c *config) { c.mw = append(c.mw, mw...) }
}

// WithSecrets adds secrets the page must never show (tokens, keys), besides
// the services' own env values that redact.Env hides.
func WithSecrets(secrets ...string) Option {
	return func(c *config) { c.secrets = append(c.secrets, secrets...) }
}

// Register mounts GET /dashboard (every service) and
// GET /dashboard/services/:service (one service) on e.
func Register(e *echo.Echo, eng Engine, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	render := func(c echo.Context, status int, services []rollout.ServiceStatus) error {
		if cfg.anonymous {
			for i := range services {
				services[i].Repo = ""
				for j := range services[i].Versions {
					services[i].Versions[j].CreatedBy = rollout.Origin{Via: services[i].Versions[j].CreatedBy.Via}
					services[i].Versions[j].Config = rollout.Config{}
				}
			}
		}
		return renderPage(c, status, redacted(services, cfg.secrets))
	}
	e.GET("/dashboard", func(c echo.Context) error {
		names, err := eng.Services(c.Request().Context())
		if err != nil {
			return err
		}
		var all []rollout.ServiceStatus
		for _, n := range names {
			st, err := eng.Status(c.Request().Context(), n)
			if err != nil {
				return err
			}
			all = append(all, st)
		}
		return render(c, http.StatusOK, all)
	}, cfg.mw...)
	e.GET("/dashboard/services/:service", func(c echo.Context) error {
		st, err := eng.Status(c.Request().Context(), c.Param("service"))
		if err != nil {
			if re, ok := rollout.AsError(err); ok && re.Kind == rollout.KindNotFound {
				return c.String(http.StatusNotFound, re.Message+"\n")
			}
			return err
		}
		return render(c, http.StatusOK, []rollout.ServiceStatus{st})
	}, cfg.mw...)
}

// redacted copies services with every text that may quote a secret
// (suggestions, details, rule values) passed through redact.String, with
// the configured secrets and every version's secret-looking env values.
func redacted(services []rollout.ServiceStatus, secrets []string) []rollout.ServiceStatus {
	all := slices.Clone(secrets)
	for _, st := range services {
		for _, v := range st.Versions {
			all = append(all, redact.Env(v.Config.Env)...)
		}
	}
	out := make([]rollout.ServiceStatus, len(services))
	for i, st := range services {
		st.Versions = slices.Clone(st.Versions)
		for j := range st.Versions {
			r := &st.Versions[j].Reason
			r.Detail, r.Suggestion = redact.String(r.Detail, all), redact.String(r.Suggestion, all)
		}
		st.Policy.Rules = slices.Clone(st.Policy.Rules)
		for j, rule := range st.Policy.Rules {
			m := make(map[string]string, len(rule.Match))
			for k, v := range rule.Match {
				m[k] = redact.String(v, all)
			}
			st.Policy.Rules[j].Match = m
		}
		out[i] = st
	}
	return out
}

func renderPage(c echo.Context, status int, services []rollout.ServiceStatus) error {
	var b strings.Builder
	if err := page.Execute(&b, services); err != nil {
		return err
	}
	return c.HTML(status, b.String())
}

// VersionPath is the page of a version, relative to the server's public URL.
func VersionPath(service, version string) string {
	return "/dashboard/services/" + service + "#" + version
}
