package ghapp

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"
)

// DefaultAPIURL is the REST base of github.com.
const DefaultAPIURL = "https://api.github.com/"

// defaultUploadURL is go-github's upload base for github.com; sluice
// uploads nothing, but the field must point somewhere sensible.
const defaultUploadURL = "https://uploads.github.com/"

// userAgent is sent with every request; GitHub rejects requests without one.
const userAgent = "sluice"

// Config configures a Factory. AppID and PrivateKey are required.
type Config struct {
	// AppID is the GitHub App's numeric id (the JWT issuer).
	AppID int64
	// PrivateKey is the App's private key, PEM-encoded RSA (PKCS#1 or PKCS#8).
	PrivateKey []byte
	// APIURL is the REST base, used exactly as given (a trailing slash is
	// added if missing). Empty means DefaultAPIURL.
	APIURL string
	// Logger receives one line per HTTP exchange; nil means slog.Default().
	Logger *slog.Logger
	// HTTP is the base transport under the chain; nil means
	// http.DefaultTransport.
	HTTP http.RoundTripper
	// Retry bounds the retries of idempotent reads; zero fields take the
	// defaults documented on RetryPolicy.
	Retry RetryPolicy
}

// Factory builds GitHub clients for one App. It is safe for concurrent use.
type Factory struct {
	appID   int64
	key     *rsa.PrivateKey
	base    *url.URL
	chain   chain
	app     *github.Client
	mu      sync.Mutex
	clients map[int64]*github.Client
}

// Errors New returns for a bad configuration.
var (
	// ErrNoAppID means Config.AppID is not a positive number.
	ErrNoAppID = errors.New("github app id is required")
	// ErrBadPrivateKey means Config.PrivateKey is not a PEM-encoded RSA key.
	ErrBadPrivateKey = errors.New("github app private key is not a PEM-encoded RSA private key")
)

// New validates cfg (the key is parsed; nothing is sent over the network)
// and returns a Factory.
func New(cfg Config) (*Factory, error) {
	if cfg.AppID <= 0 {
		return nil, ErrNoAppID
	}
	key, err := parseKey(cfg.PrivateKey)
	if err != nil {
		return nil, err
	}
	base, err := ParseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	f := &Factory{
		appID:   cfg.AppID,
		key:     key,
		base:    base,
		chain:   newChain(cfg.Logger, cfg.HTTP, cfg.Retry),
		clients: make(map[int64]*github.Client),
	}
	f.app = f.newClient(f.appsTransport())
	return f, nil
}

func parseKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, ErrBadPrivateKey
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", errors.Join(ErrBadPrivateKey, err))
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, ErrBadPrivateKey
	}
	return rk, nil
}

// ParseAPIURL parses a REST base URL as Config.APIURL and TokenClient take
// it: empty means DefaultAPIURL; it must be absolute http(s); a trailing
// slash is added; nothing else is changed. Callers use it to reject a bad
// flag at start-up.
func ParseAPIURL(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultAPIURL
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parse github api url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parse github api url %q: want an absolute http or https URL", s)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if u.RawPath != "" && !strings.HasSuffix(u.RawPath, "/") {
		u.RawPath += "/"
	}
	return u, nil
}

// uploadURL derives go-github's upload base: github.com's for the default
// API, /api/uploads/ for a GitHub Enterprise Server /api/v3/ base, and the
// API base itself otherwise (a test server).
func uploadURL(base *url.URL) *url.URL {
	if base.String() == DefaultAPIURL {
		u, _ := url.Parse(defaultUploadURL)
		return u
	}
	u := *base
	if strings.HasSuffix(u.Path, "/api/v3/") {
		u.Path = strings.TrimSuffix(u.Path, "v3/") + "uploads/"
		u.RawPath = ""
	}
	return &u
}

// App returns a client authenticated as the App itself (a short-lived JWT
// per request), for the /app endpoints. The same client is returned on
// every call.
func (f *Factory) App() *github.Client { return f.app }

// Installation returns a client authenticated as installation id. The
// installation token is minted on first use, cached and renewed shortly
// before it expires; one transport (and so one token) is kept per
// installation id and shared by every caller. Safe for concurrent use.
func (f *Factory) Installation(id int64) *github.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[id]; ok {
		return c
	}
	// Each installation gets its own AppsTransport: ghinstallation writes
	// BaseURL and Client into it on every token refresh.
	it := ghinstallation.NewFromAppsTransport(f.appsTransport(), id)
	c := f.newClient(it)
	f.clients[id] = c
	return c
}

func (f *Factory) appsTransport() *ghinstallation.AppsTransport {
	at := ghinstallation.NewAppsTransportFromPrivateKey(f.chain.logged, f.appID, f.key)
	at.BaseURL = strings.TrimSuffix(f.base.String(), "/")
	return at
}

func (f *Factory) newClient(auth http.RoundTripper) *github.Client {
	return f.chain.client(f.base, auth)
}

// Option configures TokenClient.
type Option func(*tokenOptions)

type tokenOptions struct {
	log   *slog.Logger
	http  http.RoundTripper
	retry RetryPolicy
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *tokenOptions) { o.log = l } }

// WithHTTP sets the base transport; the default is http.DefaultTransport.
func WithHTTP(rt http.RoundTripper) Option { return func(o *tokenOptions) { o.http = rt } }

// WithRetry sets the retry policy for idempotent reads.
func WithRetry(p RetryPolicy) Option { return func(o *tokenOptions) { o.retry = p } }

// TokenClient returns a client that sends token as a bearer token (a
// workflow's GITHUB_TOKEN, a personal token), with the same logging and
// retrying chain as the App's clients. An invalid apiURL (see ParseAPIURL)
// yields a client whose every request fails with the parse error.
func TokenClient(apiURL, token string, opts ...Option) *github.Client {
	var o tokenOptions
	for _, opt := range opts {
		opt(&o)
	}
	ch := newChain(o.log, o.http, o.retry)
	base, err := ParseAPIURL(apiURL)
	if err != nil {
		failing := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, err
		})
		return github.NewClient(&http.Client{Transport: failing})
	}
	auth := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return ch.logged.RoundTrip(r)
	})
	return ch.client(base, auth)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// chain holds the shared layers: logged is the base transport wrapped in
// the logging RoundTripper (what the authentication layer sends through);
// client wraps an authentication layer in the retrying RoundTripper.
type chain struct {
	logged http.RoundTripper
	log    *slog.Logger
	retry  RetryPolicy
}

func newChain(log *slog.Logger, base http.RoundTripper, retry RetryPolicy) chain {
	if log == nil {
		log = slog.Default()
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return chain{
		logged: &logTransport{next: base, log: log},
		log:    log,
		retry:  retry.withDefaults(),
	}
}

func (c chain) client(base *url.URL, auth http.RoundTripper) *github.Client {
	hc := &http.Client{Transport: &retryTransport{next: auth, policy: c.retry, log: c.log}}
	gc := github.NewClient(hc)
	b := *base
	gc.BaseURL = &b
	gc.UploadURL = uploadURL(base)
	gc.UserAgent = userAgent
	return gc
}
