package wire

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Prefix is where the API is mounted; every Route's Pattern is below it.
const Prefix = "/api/v1"

// Route is one operation of the API: an HTTP method and a path pattern
// below Prefix whose ":name" segments are parameters, in echo's syntax.
// The server registers Pattern; clients build a request path with Path.
type Route struct {
	Method  string
	Pattern string
}

// The API's routes. Parameters are ":service" (a service name),
// ":version" (a version name, "<service>-NNN") and ":id" (a token id).
var (
	// ListServices answers ServiceList, filtered to what the caller may see.
	ListServices = Route{http.MethodGet, "/services"}
	// GetService answers the service's rollout.ServiceStatus.
	GetService = Route{http.MethodGet, "/services/:service"}
	// Deploy takes a tar.gz body (Content-Type application/gzip) with the
	// query parameters strategy=full|canary and auto_canary=true, and
	// answers 202 with a VersionView.
	Deploy = Route{http.MethodPost, "/services/:service/versions"}
	// GetVersion answers the version's rollout.VersionStatus.
	GetVersion = Route{http.MethodGet, "/services/:service/versions/:version"}
	// DeleteVersion deletes a failed version's record and answers Deleted.
	DeleteVersion = Route{http.MethodDelete, "/services/:service/versions/:version"}
	// Logs answers the tail of a version's logs as text/plain; the query
	// parameter bytes bounds it.
	Logs = Route{http.MethodGet, "/services/:service/versions/:version/logs"}
	// Redeploy takes a RedeployBody (application/json), or a tar.gz body
	// with the same overrides as query parameters (see RedeployQuery), and
	// answers 202 with a VersionView.
	Redeploy = Route{http.MethodPost, "/services/:service/versions/:version/redeploy"}
	// StopVersion stops a version and answers Stopped.
	StopVersion = Route{http.MethodPost, "/services/:service/versions/:version/stop"}
	// SetPolicy takes a PolicyBody and answers the new rollout.ServiceStatus.
	SetPolicy = Route{http.MethodPut, "/services/:service/policy"}
	// AddRule takes a RuleBody and answers the new rollout.ServiceStatus.
	AddRule = Route{http.MethodPost, "/services/:service/rules"}
	// ClearRules removes the rules of the query parameter version (all
	// rules without it) and answers the new rollout.ServiceStatus.
	ClearRules = Route{http.MethodDelete, "/services/:service/rules"}
	// Predict takes the query parameter query and answers a
	// rollout.Prediction.
	Predict = Route{http.MethodGet, "/services/:service/predict"}
	// Promote, Rollback and Abort take a VersionBody and answer the new
	// rollout.ServiceStatus; Rollback's version may be empty (the
	// previous stable), and only Promote reads keep_rules.
	Promote  = Route{http.MethodPost, "/services/:service/promote"}
	Rollback = Route{http.MethodPost, "/services/:service/rollback"}
	Abort    = Route{http.MethodPost, "/services/:service/abort"}
	// Retire takes a RetireBody and answers Retired.
	Retire = Route{http.MethodPost, "/services/:service/retire"}
	// ServiceEvents and AllEvents answer an EventList; see EventsQuery.
	ServiceEvents = Route{http.MethodGet, "/services/:service/events"}
	AllEvents     = Route{http.MethodGet, "/events"}
	// SetRepo takes a RepoBody and answers the new rollout.ServiceStatus.
	SetRepo = Route{http.MethodPut, "/services/:service/repo"}
	// CreateToken takes a TokenBody and answers 201 with a TokenView that
	// carries the token's text; ListTokens answers TokenList; RevokeToken
	// answers the revoked TokenView.
	CreateToken = Route{http.MethodPost, "/tokens"}
	ListTokens  = Route{http.MethodGet, "/tokens"}
	RevokeToken = Route{http.MethodDelete, "/tokens/:id"}
)

// Path fills the route's parameters in order with params, each escaped
// as one path segment, and returns the path below Prefix. It panics when
// the number of params differs from the pattern's parameters: that is a
// programming error, not input.
func (r Route) Path(params ...string) string {
	segs := strings.Split(r.Pattern, "/")
	n := 0
	for i, s := range segs {
		if !strings.HasPrefix(s, ":") {
			continue
		}
		if n >= len(params) {
			panic(fmt.Sprintf("wire: %s %s needs more than %d parameters", r.Method, r.Pattern, len(params)))
		}
		segs[i] = url.PathEscape(params[n])
		n++
	}
	if n != len(params) {
		panic(fmt.Sprintf("wire: %s %s takes %d parameters, got %d", r.Method, r.Pattern, n, len(params)))
	}
	return strings.Join(segs, "/")
}
