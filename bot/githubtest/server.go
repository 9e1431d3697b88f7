package githubtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultAppSlug is the App's slug unless WithAppSlug says otherwise; the
// App's installation tokens write as "<slug>[bot]".
const DefaultAppSlug = "sluice"

// ActionsBot is the login that writes with the plain token of WithToken,
// as a workflow's GITHUB_TOKEN does.
const ActionsBot = "github-actions[bot]"

// tokenTTL is how long a minted installation token lives, as on GitHub.
const tokenTTL = time.Hour

// maxBody bounds a request body the fake reads.
const maxBody = 8 << 20

// Server is a fake GitHub REST API on 127.0.0.1. Its methods are safe for
// concurrent use; state is changed and read under one lock.
type Server struct {
	t    testing.TB
	srv  *httptest.Server
	spec *spec

	appID      int64
	appKey     *rsa.PublicKey
	appSlug    string
	plainToken string

	mu           sync.Mutex
	repos        map[string]*repoState // by lower-case "owner/name"
	tokens       map[string]*instToken
	comments     map[int64]*commentRec
	reactions    map[int64][]*reactionRec
	nextID       int64
	requests     []Request
	faults       []*fault
	delay        time.Duration
	archiveToken string
	hooks        []*HookDelivery
	hookURL      string
	hookSecret   []byte
}

// Option configures NewServer.
type Option func(*Server)

// WithAppKey makes the fake accept App JWTs signed (RS256) by the private
// half of pub and issued for appID. Without it every JWT is refused.
func WithAppKey(pub *rsa.PublicKey, appID int64) Option {
	return func(s *Server) { s.appKey, s.appID = pub, appID }
}

// WithAppSlug sets the App's slug (default DefaultAppSlug).
func WithAppSlug(slug string) Option { return func(s *Server) { s.appSlug = slug } }

// WithToken makes the fake accept tok (as "Bearer tok" or "token tok") for
// every repository endpoint, like a workflow's GITHUB_TOKEN; what it writes
// is authored by ActionsBot.
func WithToken(tok string) Option { return func(s *Server) { s.plainToken = tok } }

// Request is one request the fake received.
type Request struct {
	Method string
	// Path is the decoded URL path, e.g. "/repos/o/r/check-runs".
	Path string
	// Query is the raw query string.
	Query string
	Body  []byte
	// Authorization is the header as sent.
	Authorization string
	// Operation is the OpenAPI operationId ("checks/update"), "archive" for
	// a tarball download, or "" for an unknown route.
	Operation string
	// Status is the status answered; 0 when the client went away during a
	// Delay and nothing was done.
	Status int
}

// fault is an injected failure for the next n matching requests.
type fault struct {
	method  string // "" matches any
	prefix  string // "" matches any
	n       int
	status  int
	headers map[string]string
}

// NewServer starts a fake on 127.0.0.1 and closes it in t.Cleanup. It
// fails the test if the shared fixtures cannot be found or loaded.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	sp, err := loadSpec(FixturesDir(t))
	if err != nil {
		t.Fatalf("githubtest: %v", err)
	}
	s := &Server{
		t:            t,
		spec:         sp,
		appSlug:      DefaultAppSlug,
		repos:        make(map[string]*repoState),
		tokens:       make(map[string]*instToken),
		comments:     make(map[int64]*commentRec),
		reactions:    make(map[int64][]*reactionRec),
		nextID:       1000,
		archiveToken: randomHex(16),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the REST base, "http://127.0.0.1:PORT/", to be used as the API
// URL exactly as given.
func (s *Server) URL() string { return s.srv.URL + "/" }

// BotLogin is the login of what the App's installation tokens write.
func (s *Server) BotLogin() string { return s.appSlug + "[bot]" }

// Requests returns a copy of every request received so far, in order of
// completion.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// FailNext makes the next n requests, whatever their route, answer status
// with headers (for example 502; 403 with X-RateLimit-Remaining: 0 and
// X-RateLimit-Reset; 429 with Retry-After) and a GitHub-like error body,
// without acting on them. Requests are still validated first.
func (s *Server) FailNext(n, status int, headers map[string]string) {
	s.FailRoute("", "", n, status, headers)
}

// FailRoute is FailNext for requests whose method is method ("" for any)
// and whose path starts with pathPrefix ("" for any). Faults are used in
// the order they were added.
func (s *Server) FailRoute(method, pathPrefix string, n, status int, headers map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: method, prefix: pathPrefix, n: n, status: status, headers: headers})
}

// Delay makes every later request wait d before it is acted on, until
// Delay(0). A client that gives up during the wait leaves nothing done
// (recorded with Status 0).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// call is one routed request.
type call struct {
	r      *http.Request
	params map[string]string
	body   []byte
	repo   *repoState
	who    identity
}

// reply is what a handler answers.
type reply struct {
	status int
	body   any // JSON-encoded unless raw is set
	raw    []byte
	header http.Header
	// after runs without s.mu before the reply is written: work GitHub
	// queues when it answers (a redelivery), done by the time the client
	// has the answer, so tests need not wait for it.
	after func()
}

func jsonReply(status int, body any) reply { return reply{status: status, body: body} }

func errReply(status int, msg string) reply {
	return jsonReply(status, map[string]any{
		"message":           msg,
		"documentation_url": "https://docs.github.com/rest",
	})
}

func notFound() reply { return errReply(http.StatusNotFound, "Not Found") }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          body,
		Authorization: r.Header.Get("Authorization"),
	}
	rep := s.handle(r, body, &rec)
	if rep != nil && rep.after != nil {
		rep.after()
	}
	if rep != nil {
		s.write(w, *rep)
		rec.Status = rep.status
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

// handle routes, validates, delays, injects faults, authenticates and
// runs the handler; nil means the client went away.
func (s *Server) handle(r *http.Request, body []byte, rec *Request) *reply {
	if strings.HasPrefix(r.URL.Path, archivePrefix) && r.Method == http.MethodGet {
		rec.Operation = "archive"
		rep := s.serveArchive(r)
		return &rep
	}
	rt, params, pathKnown := s.spec.find(r.Method, r.URL.EscapedPath())
	if rt == nil {
		what := "unknown route"
		if pathKnown {
			what = "method not in the OpenAPI subset for this path"
		}
		s.t.Errorf("githubtest: unexpected request %s %s (%s)", r.Method, r.URL.Path, what)
		rep := notFound()
		return &rep
	}
	rec.Operation = rt.op
	if err := s.spec.validate(r, body, rt, params); err != nil {
		s.t.Errorf("githubtest: %s %s does not conform to %s: %v", r.Method, r.URL.Path, rt.op, err)
		rep := errReply(http.StatusUnprocessableEntity, "Invalid request.\n\n"+err.Error())
		return &rep
	}
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	if d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-r.Context().Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
	if rep, ok := s.takeFault(r); ok {
		return &rep
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &call{r: r, params: params, body: body}
	if rep, ok := s.authenticate(c, rt); !ok {
		return &rep
	}
	rep := rt.handle(s, c)
	return &rep
}

func (s *Server) takeFault(r *http.Request) (reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if (f.method != "" && f.method != r.Method) || !strings.HasPrefix(r.URL.Path, f.prefix) {
			continue
		}
		f.n--
		if f.n <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		rep := faultReply(f.status, f.headers)
		return rep, true
	}
	return reply{}, false
}

// faultReply builds the body GitHub sends with such a status, so go-github
// types the error as it would (RateLimitError, AbuseRateLimitError, ...).
func faultReply(status int, headers map[string]string) reply {
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	var rep reply
	switch {
	case status == http.StatusForbidden && h.Get("X-RateLimit-Remaining") == "0":
		rep = jsonReply(status, map[string]any{
			"message":           "API rate limit exceeded for installation.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
		})
	case status == http.StatusForbidden || status == http.StatusTooManyRequests:
		rep = jsonReply(status, map[string]any{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		})
	case status >= 500:
		rep = errReply(status, http.StatusText(status))
	default:
		rep = errReply(status, http.StatusText(status))
	}
	rep.header = h
	return rep
}

func (s *Server) write(w http.ResponseWriter, rep reply) {
	h := w.Header()
	s.mu.Lock()
	used := len(s.requests) + 1
	s.mu.Unlock()
	h.Set("X-GitHub-Request-Id", strings.ToUpper(randomHex(8)))
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(5000-used, 1)))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	for k, vs := range rep.header {
		h[k] = vs
	}
	if rep.raw != nil || rep.body == nil {
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.raw)
		return
	}
	b, err := json.Marshal(rep.body)
	if err != nil {
		s.t.Errorf("githubtest: encode reply: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("githubtest: read random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}
