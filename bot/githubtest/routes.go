package githubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// authKind is what credential an operation takes.
type authKind string

const (
	// authApp: an App JWT (Authorization: Bearer <jwt>).
	authApp authKind = "app"
	// authRepo: an installation token of the repository's installation, or
	// the plain token given with WithToken.
	authRepo authKind = "repo"
)

// route is one operation of the OpenAPI subset the fake answers.
type route struct {
	op     string // operationId
	method string
	tmpl   string // path template as in the description
	auth   authKind
	handle func(*Server, *call) reply

	re     *regexp.Regexp
	params []string
	spec   *routers.Route
}

// slashParams may contain "/" (file paths, branch names).
var slashParams = map[string]bool{"path": true, "ref": true, "base": true, "head": true}

var paramRE = regexp.MustCompile(`\{([a-z_]+)\}`)

func (r *route) compile() {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, m := range paramRE.FindAllStringSubmatchIndex(r.tmpl, -1) {
		b.WriteString(regexp.QuoteMeta(r.tmpl[last:m[0]]))
		name := r.tmpl[m[2]:m[3]]
		r.params = append(r.params, name)
		if slashParams[name] {
			b.WriteString("(.+?)")
		} else {
			b.WriteString("([^/]+)")
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(r.tmpl[last:]))
	b.WriteString("$")
	r.re = regexp.MustCompile(b.String())
}

// literalLen orders routes so the most specific template is tried first
// (commits/{ref}/check-runs before commits/{ref}).
func (r *route) literalLen() int { return len(paramRE.ReplaceAllString(r.tmpl, "")) }

// match returns the unescaped path parameters when escapedPath matches.
func (r *route) match(escapedPath string) (map[string]string, bool) {
	m := r.re.FindStringSubmatch(escapedPath)
	if m == nil {
		return nil, false
	}
	params := make(map[string]string, len(r.params))
	for i, name := range r.params {
		v, err := url.PathUnescape(m[i+1])
		if err != nil {
			return nil, false
		}
		params[name] = v
	}
	return params, true
}

// spec is the loaded OpenAPI subset, shared by every server of the process.
type spec struct {
	doc    *openapi3.T
	routes []*route
	// mu serialises validation: kin-openapi does not promise that
	// validating against one document from many goroutines is safe.
	mu sync.Mutex
}

var (
	specOnce sync.Once
	specVal  *spec
	specErr  error
)

func loadSpec(dir string) (*spec, error) {
	specOnce.Do(func() {
		specVal, specErr = buildSpec(filepath.Join(dir, "openapi", "api.github.com.subset.json"))
	})
	return specVal, specErr
}

func buildSpec(file string) (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(file)
	if err != nil {
		return nil, fmt.Errorf("load openapi subset: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("validate openapi subset: %w", err)
	}
	routes := routeTable()
	for _, r := range routes {
		item := doc.Paths.Value(r.tmpl)
		if item == nil {
			return nil, fmt.Errorf("openapi subset has no path %s", r.tmpl)
		}
		op := item.GetOperation(r.method)
		if op == nil || op.OperationID != r.op {
			return nil, fmt.Errorf("openapi subset has no %s %s (%s)", r.method, r.tmpl, r.op)
		}
		r.compile()
		r.spec = &routers.Route{Spec: doc, Path: r.tmpl, PathItem: item, Method: r.method, Operation: op}
	}
	n := 0
	for _, item := range doc.Paths.Map() {
		n += len(item.Operations())
	}
	if n != len(routes) {
		return nil, fmt.Errorf("openapi subset has %d operations, the fake answers %d", n, len(routes))
	}
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].literalLen() > routes[j].literalLen() })
	return &spec{doc: doc, routes: routes}, nil
}

// find returns the route for method and escaped path; pathKnown tells a
// wrong method on a known path from an unknown path.
func (s *spec) find(method, escapedPath string) (r *route, params map[string]string, pathKnown bool) {
	for _, r := range s.routes {
		p, ok := r.match(escapedPath)
		if !ok {
			continue
		}
		pathKnown = true
		if r.method == method {
			return r, p, true
		}
	}
	return nil, nil, pathKnown
}

// validate checks a request (whose body was read into body) against the
// route's operation.
func (s *spec) validate(req *http.Request, body []byte, r *route, params map[string]string) error {
	if rule := strictRules[r.op]; rule != nil {
		if err := rule(body); err != nil {
			return err
		}
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) && !bodyRequired(r) {
		// ghinstallation sends "null" when minting a token without
		// options; GitHub takes it as no body.
		body = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	clone := req.Clone(req.Context())
	clone.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateRequest(req.Context(), &openapi3filter.RequestValidationInput{
		Request:    clone,
		PathParams: params,
		Route:      r.spec,
		Options: &openapi3filter.Options{
			MultiError:         true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	})
}

// strictRules are checks the description does not express but that
// production code must meet; a request breaking one fails the test like
// a non-conforming one. A check run update must carry the run's name:
// go-github always sends "name", so an update built without it would
// blank the name.
//
// GitHub also refuses text over its published limits that the description
// leaves out: a comment body over 65,536 characters and a deployment
// status description over 140 (check run summaries and texts over 65,535
// the description itself refuses).
var strictRules = map[string]func(body []byte) error{
	"checks/create":                  requireName,
	"checks/update":                  requireName,
	"issues/create-comment":          maxField("body", 65536),
	"issues/update-comment":          maxField("body", 65536),
	"repos/create-deployment-status": maxField("description", 140),
}

// maxField refuses a body whose string field is longer than max
// characters.
func maxField(field string, max int) func(body []byte) error {
	return func(body []byte) error {
		var b map[string]any
		if err := json.Unmarshal(body, &b); err != nil {
			return fmt.Errorf("decode body: %w", err)
		}
		if s, ok := b[field].(string); ok && utf8.RuneCountInString(s) > max {
			return fmt.Errorf("%q is %d characters; GitHub allows at most %d", field, utf8.RuneCountInString(s), max)
		}
		return nil
	}
}

func requireName(body []byte) error {
	var b struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	switch {
	case b.Name == nil:
		return errors.New(`body has no "name": a check run request must carry the run's name`)
	case strings.TrimSpace(*b.Name) == "":
		return errors.New(`"name" is empty`)
	}
	return nil
}

func bodyRequired(r *route) bool {
	rb := r.spec.Operation.RequestBody
	return rb != nil && rb.Value != nil && rb.Value.Required
}

// routeTable lists the 24 operations; buildSpec checks it against the
// description, so a typo here cannot hide.
func routeTable() []*route {
	return []*route{
		{op: "apps/get-authenticated", method: "GET", tmpl: "/app", auth: authApp, handle: (*Server).getApp},
		{op: "apps/create-installation-access-token", method: "POST", tmpl: "/app/installations/{installation_id}/access_tokens", auth: authApp, handle: (*Server).createToken},
		{op: "apps/list-webhook-deliveries", method: "GET", tmpl: "/app/hook/deliveries", auth: authApp, handle: (*Server).listHookDeliveries},
		{op: "apps/redeliver-webhook-delivery", method: "POST", tmpl: "/app/hook/deliveries/{delivery_id}/attempts", auth: authApp, handle: (*Server).redeliverHook},
		{op: "apps/get-repo-installation", method: "GET", tmpl: "/repos/{owner}/{repo}/installation", auth: authApp, handle: (*Server).getRepoInstallation},
		{op: "checks/create", method: "POST", tmpl: "/repos/{owner}/{repo}/check-runs", auth: authRepo, handle: (*Server).createCheckRun},
		{op: "checks/get", method: "GET", tmpl: "/repos/{owner}/{repo}/check-runs/{check_run_id}", auth: authRepo, handle: (*Server).getCheckRun},
		{op: "checks/update", method: "PATCH", tmpl: "/repos/{owner}/{repo}/check-runs/{check_run_id}", auth: authRepo, handle: (*Server).updateCheckRun},
		{op: "checks/list-for-ref", method: "GET", tmpl: "/repos/{owner}/{repo}/commits/{ref}/check-runs", auth: authRepo, handle: (*Server).listCheckRuns},
		{op: "repos/get-collaborator-permission-level", method: "GET", tmpl: "/repos/{owner}/{repo}/collaborators/{username}/permission", auth: authRepo, handle: (*Server).getPermission},
		{op: "repos/get-commit", method: "GET", tmpl: "/repos/{owner}/{repo}/commits/{ref}", auth: authRepo, handle: (*Server).getCommit},
		{op: "repos/compare-commits", method: "GET", tmpl: "/repos/{owner}/{repo}/compare/{base}...{head}", auth: authRepo, handle: (*Server).compareCommits},
		{op: "repos/get-content", method: "GET", tmpl: "/repos/{owner}/{repo}/contents/{path}", auth: authRepo, handle: (*Server).getContent},
		{op: "repos/download-tarball-archive", method: "GET", tmpl: "/repos/{owner}/{repo}/tarball/{ref}", auth: authRepo, handle: (*Server).getTarball},
		{op: "repos/list-deployments", method: "GET", tmpl: "/repos/{owner}/{repo}/deployments", auth: authRepo, handle: (*Server).listDeployments},
		{op: "repos/create-deployment", method: "POST", tmpl: "/repos/{owner}/{repo}/deployments", auth: authRepo, handle: (*Server).createDeployment},
		{op: "repos/list-deployment-statuses", method: "GET", tmpl: "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", auth: authRepo, handle: (*Server).listDeploymentStatuses},
		{op: "repos/create-deployment-status", method: "POST", tmpl: "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", auth: authRepo, handle: (*Server).createDeploymentStatus},
		{op: "issues/list-comments", method: "GET", tmpl: "/repos/{owner}/{repo}/issues/{issue_number}/comments", auth: authRepo, handle: (*Server).listComments},
		{op: "issues/create-comment", method: "POST", tmpl: "/repos/{owner}/{repo}/issues/{issue_number}/comments", auth: authRepo, handle: (*Server).createComment},
		{op: "issues/update-comment", method: "PATCH", tmpl: "/repos/{owner}/{repo}/issues/comments/{comment_id}", auth: authRepo, handle: (*Server).updateComment},
		{op: "reactions/create-for-issue-comment", method: "POST", tmpl: "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", auth: authRepo, handle: (*Server).createReaction},
		{op: "pulls/get", method: "GET", tmpl: "/repos/{owner}/{repo}/pulls/{pull_number}", auth: authRepo, handle: (*Server).getPull},
		{op: "pulls/list-files", method: "GET", tmpl: "/repos/{owner}/{repo}/pulls/{pull_number}/files", auth: authRepo, handle: (*Server).listPullFiles},
	}
}
