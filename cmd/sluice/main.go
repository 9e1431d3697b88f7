// Command sluice runs the sluice server (`sluice serve`) and is the client
// of its API (every other verb).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"
	"golang.org/x/net/netutil"

	"github.com/sluicehq/sluice/bot"
	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/bot/cli"
	"github.com/sluicehq/sluice/bot/dashboard"
	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/internal/fds"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/contain"
	"github.com/sluicehq/sluice/rollout/router"
	"github.com/sluicehq/sluice/rollout/runtime"
	"github.com/sluicehq/sluice/rollout/runtime/kube"
	"github.com/sluicehq/sluice/rollout/runtime/local"
	"github.com/sluicehq/sluice/rollout/source"
	"github.com/sluicehq/sluice/store"
)

type app struct {
	Serve        serveCmd  `cmd:"" help:"Run the sluice server: API, router and a runtime (local or kubernetes)."`
	Action       actionCmd `cmd:"" help:"Run as the GitHub Action's step: inputs from INPUT_* and the runner's GITHUB_* variables."`
	cli.Commands `embed:""`
}

type serveCmd struct {
	Data            string        `help:"Data directory (store, sources, logs)." env:"SLUICE_DATA" default:"./.sluice"`
	Listen          string        `help:"API address (/api/v1, /healthz); port 0 picks a free one, fd:N serves an inherited listening socket." env:"SLUICE_LISTEN" default:"127.0.0.1:8080"`
	RouterListen    string        `help:"Router address: serves the services' traffic; port 0 and fd:N as for --listen." env:"SLUICE_ROUTER_LISTEN" default:"127.0.0.1:8000"`
	BaseDomain      string        `help:"Services answer at <service>.<base-domain>." env:"SLUICE_BASE_DOMAIN" default:"localhost"`
	Token           string        `help:"When set, the API requires Authorization: Bearer <token> (prefer --token-file: arguments are visible to every local user)." env:"SLUICE_TOKEN"`
	TokenFile       string        `help:"File holding the admin token; wins over --token." type:"path" env:"SLUICE_TOKEN_FILE"`
	MaxUpload       cli.Size      `help:"Largest accepted source upload, with a unit (512MiB)." env:"SLUICE_MAX_UPLOAD" default:"256MiB"`
	RetireAfter     time.Duration `help:"Stop versions idle (0% and no rule) this long; 0 disables." env:"SLUICE_RETIRE_AFTER" default:"24h"`
	DrainGrace      time.Duration `help:"How long stopping instances wait for in-flight requests." env:"SLUICE_DRAIN_GRACE" default:"10s"`
	MaxBody         cli.Size      `help:"Largest request body the router passes to a service without its own max_body, with a unit (32MiB)." env:"SLUICE_MAX_BODY" default:"32MiB"`
	UpstreamTimeout time.Duration `help:"How long the router waits for an instance's response head before answering 504." env:"SLUICE_UPSTREAM_TIMEOUT" default:"60s"`
	MaxConns        int           `help:"Most client connections the router serves at once (lowered to fit the file descriptor limit)." env:"SLUICE_MAX_CONNS" default:"10000"`
	APIMaxConns     int           `name:"api-max-conns" help:"Most connections the API/webhook listener holds at once (lowered to fit the file descriptor limit); more wait to be accepted." env:"SLUICE_API_MAX_CONNS" default:"64"`
	APITimeout      time.Duration `name:"api-timeout" help:"Longest an API request may take to be read, and its answer to be written." env:"SLUICE_API_TIMEOUT" default:"10m"`
	WebhookMaxBody  cli.Size      `name:"webhook-max-body" help:"Largest accepted webhook body, with a unit (413 beyond)." env:"SLUICE_WEBHOOK_MAX_BODY" default:"5MiB"`
	TrustedProxies  []string      `name:"trusted-proxies" sep:"," help:"Proxies (CIDRs or addresses, comma-separated) in front of the API and the router whose X-Forwarded-For and X-Real-IP name the client; without it the client is the connection's peer and the router starts X-Forwarded-For afresh." env:"SLUICE_TRUSTED_PROXIES"`
	WebhookInflight int           `name:"webhook-inflight" help:"Most webhook bodies read at once (503 beyond)." env:"SLUICE_WEBHOOK_INFLIGHT" default:"8"`
	PortRange       string        `name:"port-range" help:"local runtime: ports instances listen on, MIN-MAX; keep it clear of the kernel's ephemeral ports (net.ipv4.ip_local_port_range) and of other servers." env:"SLUICE_PORT_RANGE" default:"20000-29999"`
	RunAs           string        `help:"User builds and instances run as: a name, uid:gid, or root (only when said so). Default as root: a dedicated uid/gid 64100; otherwise sluice's own user." env:"SLUICE_RUN_AS"`
	LogLevel        slog.Level    `help:"debug, info, warn or error." env:"SLUICE_LOG_LEVEL" default:"info"`

	Runtime    string `help:"Where versions run: local (processes on this machine) or kubernetes (Deployments, traffic through a Gateway API HTTPRoute)." env:"SLUICE_RUNTIME" enum:"local,kubernetes" default:"local"`
	Kubeconfig string `help:"kubernetes runtime: kubeconfig file; empty means in-cluster when in a pod, else $KUBECONFIG or ~/.kube/config." env:"SLUICE_KUBECONFIG"`
	Gateway    string `help:"kubernetes runtime: the Gateway (namespace/name) services' HTTPRoutes attach to." env:"SLUICE_GATEWAY"`
	Namespace  string `help:"kubernetes runtime: namespace of services whose sluice.yaml names none." env:"SLUICE_NAMESPACE" default:"default"`

	PrometheusURL     string `name:"prometheus-url" help:"kubernetes runtime: base URL of the Prometheus that scrapes the gateway; automatic canaries judge each step on the figures there." env:"SLUICE_PROMETHEUS_URL"`
	GatewayKind       string `name:"gateway-kind" help:"kubernetes runtime: the gateway whose metrics the canary queries: envoy-gateway or istio." env:"SLUICE_GATEWAY_KIND"`
	PrometheusQueries string `name:"prometheus-queries" type:"path" help:"YAML file of PromQL templates (requests, errors, p99_ms) used instead of the gateway kind's." env:"SLUICE_PROMETHEUS_QUERIES"`

	GitHubAppID             int64    `name:"github-app-id" help:"GitHub App id; without it the App is off." env:"SLUICE_GITHUB_APP_ID"`
	GitHubPrivateKey        string   `name:"github-private-key" type:"path" help:"File with the App's private key (PEM)." env:"SLUICE_GITHUB_PRIVATE_KEY"`
	GitHubWebhookSecret     string   `name:"github-webhook-secret" help:"Webhook secret." env:"SLUICE_GITHUB_WEBHOOK_SECRET"`
	GitHubWebhookSecretFile string   `name:"github-webhook-secret-file" type:"path" help:"File holding the webhook secret." env:"SLUICE_GITHUB_WEBHOOK_SECRET_FILE"`
	GitHubAPIURL            string   `name:"github-api-url" help:"GitHub REST base URL, used exactly as given." env:"SLUICE_GITHUB_API_URL" default:"https://api.github.com/"`
	PublicURL               string   `name:"public-url" help:"Base URL of this server, for links on GitHub and the audience of OIDC tokens." env:"SLUICE_PUBLIC_URL"`
	OIDCIssuer              string   `name:"oidc-issuer" help:"Issuer of the OIDC ID tokens the API accepts (with --oidc-allow)." env:"SLUICE_OIDC_ISSUER" default:"https://token.actions.githubusercontent.com"`
	PublicDashboard         bool     `name:"public-dashboard" help:"Serve /dashboard and /metrics to anyone (the dashboard then hides repositories and actors); by default they need the admin token." env:"SLUICE_PUBLIC_DASHBOARD"`
	OIDCAllow               []string `name:"oidc-allow" help:"Owners or owner/repo patterns (globs; owner@ID, repo@ID pin GitHub's ids) whose workflows' OIDC tokens the API accepts; OIDC is off without it. Needs --token and --public-url." env:"SLUICE_OIDC_ALLOW"`
}

// Fixed limits of the API server.
const (
	apiHeaderTimeout  = 10 * time.Second
	apiIdleTimeout    = 2 * time.Minute
	apiMaxHeaderBytes = 64 << 10
)

// pruneEvery is how often the webhook inbox's records past the replay
// horizon are pruned (bot.Bot.Prune).
const pruneEvery = time.Hour

// The store keeps the API tokens the authenticator checks.
var _ auth.Store = (*store.DB)(nil)

// githubBot builds the GitHub App front door, or returns nil when no App
// id is configured. It also returns the secrets sluice must never show:
// the admin token, and the App's private key and webhook secret.
func (s *serveCmd) githubBot(eng *rollout.Engine, db *store.DB, log *slog.Logger) (*bot.Bot, []string, error) {
	var secrets []string
	if s.Token != "" {
		secrets = append(secrets, s.Token)
	}
	if s.GitHubAppID == 0 {
		log.Info("GitHub App is off (no --github-app-id)")
		return nil, secrets, nil
	}
	if s.GitHubPrivateKey == "" {
		return nil, nil, fmt.Errorf("--github-app-id needs --github-private-key (SLUICE_GITHUB_PRIVATE_KEY)")
	}
	tightenSecretFile(s.GitHubPrivateKey, log)
	key, err := os.ReadFile(s.GitHubPrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("read GitHub App private key: %w", err)
	}
	secret, err := secretValue("github-webhook-secret", s.GitHubWebhookSecret, s.GitHubWebhookSecretFile, log)
	if err != nil {
		return nil, nil, err
	}
	if secret == "" {
		return nil, nil, fmt.Errorf("the GitHub App needs a webhook secret (SLUICE_GITHUB_WEBHOOK_SECRET or _FILE)")
	}
	f, err := ghapp.New(ghapp.Config{AppID: s.GitHubAppID, PrivateKey: key, APIURL: s.GitHubAPIURL, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	secrets = append(secrets, secret, string(key))
	return bot.New(eng, db, f, bot.Config{WebhookSecret: []byte(secret), PublicURL: s.PublicURL, Secrets: secrets,
		MaxBody: int64(s.WebhookMaxBody), MaxInflight: s.WebhookInflight}, bot.WithLogger(log), bot.WithRecovery(f.App(), 0)), secrets, nil
}

func main() {
	// Builds and instances start as this binary re-executed as their
	// namespace's init.
	local.RunNamespaceInit()
	var a app
	parser, err := kong.New(&a, kong.Name("sluice"),
		kong.Description("sluice runs a team's services and moves traffic between their versions."))
	if err != nil {
		panic(err) // the command tree itself is wrong
	}
	k, err := parser.Parse(os.Args[1:])
	if err != nil {
		// The error first, then one line of usage: the whole help would
		// push the error off the screen.
		var pe *kong.ParseError
		errors.As(err, &pe)
		fail(cli.Usage(err), slices.Contains(os.Args[1:], "--json"), pe)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := k.Run(&cli.Env{Ctx: ctx, Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
		stop()
		fail(err, jsonFlag(k), nil)
	}
}

// fail reports err on stderr, as JSON when asked (--json), with the short
// usage of the command for a parse error, and exits: 2 for usage errors, 1
// for the rest.
func fail(err error, asJSON bool, pe *kong.ParseError) {
	code := 1
	if cli.IsUsage(err) {
		code = 2
	}
	if asJSON {
		os.Stderr.Write(cli.ErrorJSON(err))
		os.Exit(code)
	}
	fmt.Fprintln(os.Stderr, "sluice:", err)
	if pe != nil {
		path := "sluice"
		if sel := pe.Context.Selected(); sel != nil {
			fmt.Fprintf(os.Stderr, "usage: sluice %s\n", sel.Summary())
			path += " " + sel.Path()
		}
		fmt.Fprintf(os.Stderr, "run '%s --help' for more\n", path)
	}
	os.Exit(code)
}

// jsonFlag says whether the command that ran was given --json.
func jsonFlag(k *kong.Context) bool {
	for _, f := range k.Flags() {
		if f.Name == "json" {
			v, _ := k.FlagValue(f).(bool)
			return v
		}
	}
	return false
}

// oidcAllow reads --oidc-allow and checks that OIDC, when asked for, can
// work: it needs the admin token (the API has no authentication without
// it) and the public URL (the audience tokens must carry).
func (s *serveCmd) oidcAllow() ([]auth.AllowEntry, error) {
	allow, err := auth.ParseAllowList(s.OIDCAllow)
	switch {
	case err != nil:
		return nil, err
	case len(allow) > 0 && s.Token == "":
		return nil, fmt.Errorf("--oidc-allow needs --token (SLUICE_TOKEN): without an admin token the API accepts no credentials")
	case len(allow) > 0 && s.PublicURL == "":
		return nil, fmt.Errorf("--oidc-allow needs --public-url (SLUICE_PUBLIC_URL): it is the audience OIDC tokens must carry")
	}
	return allow, nil
}

// adminOnly lets through requests that carry the admin token as a bearer
// token (compared in constant time) and answers 401 to the rest.
func adminOnly(token string) echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			bearer, _ := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			got := sha256.Sum256([]byte(bearer))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				return c.String(http.StatusUnauthorized, "this page needs the admin token (Authorization: Bearer ...), or a server started with --public-dashboard\n")
			}
			return next(c)
		}
	}
}

// parsePrefixes reads --trusted-proxies: CIDRs, or single addresses.
func parsePrefixes(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is neither a CIDR (like 10.0.0.0/8) nor an IP address", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listen opens addr: host:port (port 0 picks a free port; the "sluice
// serving" log line reports the one chosen) or fd:N, a listening TCP
// socket inherited as file descriptor N from whoever started sluice (a
// supervisor doing socket activation, or a test that owns its ports).
func listen(addr string) (net.Listener, error) {
	n, ok := strings.CutPrefix(addr, "fd:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	fd, err := strconv.Atoi(n)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%q: fd:N needs a file descriptor number of 3 or more", addr)
	}
	f := os.NewFile(uintptr(fd), addr)
	defer f.Close() // FileListener dups it
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%q is not a listening socket: %w", addr, err)
	}
	return ln, nil
}

// runtime builds the runtime --runtime names, the engine options it needs
// and what to call before the engine closes.
func (s *serveCmd) runtime(data string, log *slog.Logger) (runtime.Runtime, []rollout.Option, func(), error) {
	if s.Runtime != "kubernetes" {
		if s.PrometheusURL != "" || s.GatewayKind != "" || s.PrometheusQueries != "" {
			return nil, nil, nil, fmt.Errorf("--prometheus-url, --gateway-kind and --prometheus-queries are for --runtime kubernetes: on the local runtime canaries read sluice's own router")
		}
		runAs, err := local.ParseRunAs(s.RunAs, os.Geteuid())
		if err != nil {
			return nil, nil, nil, err
		}
		lo, hi, err := local.ParsePortRange(s.PortRange)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--port-range: %w", err)
		}
		rt, err := local.New(data, local.WithLogger(log), local.WithRunAs(runAs), local.WithPortRange(lo, hi))
		return rt, nil, func() {}, err
	}
	if s.Gateway == "" {
		return nil, nil, nil, fmt.Errorf("--runtime kubernetes needs --gateway namespace/name (SLUICE_GATEWAY): the Gateway services' HTTPRoutes attach to")
	}
	gw, err := kube.ParseGateway(s.Gateway)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--gateway: %w", err)
	}
	var k *kube.Kube
	namespace := func(svc string) string { return k.Namespace(svc) }
	opts := []rollout.Option{}
	prom, err := s.prometheus(namespace, log)
	if err != nil {
		return nil, nil, nil, err
	}
	if prom != nil {
		opts = append(opts, rollout.WithCanaryMetrics(prom))
	}
	c, err := kube.Connect(s.Kubeconfig)
	if err != nil {
		return nil, nil, nil, err
	}
	tr := kube.NewTraffic(c, gw, s.BaseDomain, namespace)
	k = kube.New(c, kube.WithNamespace(s.Namespace), kube.WithLogger(log), kube.WithVersionRoutes(tr))
	log.Info("kubernetes runtime", "gateway", s.Gateway, "namespace", s.Namespace)
	// Versions on the cluster keep serving while sluice is away.
	return k, append(opts, rollout.WithDataPlane(tr)), k.Release, nil
}

// prometheus builds the automatic canary's metrics source from
// --prometheus-url, --gateway-kind and --prometheus-queries; nil without a
// URL (canaries then hold: traffic does not pass through sluice's router).
func (s *serveCmd) prometheus(namespace func(string) string, log *slog.Logger) (*kube.Prometheus, error) {
	if s.PrometheusURL == "" {
		if s.GatewayKind != "" || s.PrometheusQueries != "" {
			return nil, fmt.Errorf("--gateway-kind and --prometheus-queries need --prometheus-url (SLUICE_PROMETHEUS_URL)")
		}
		log.Warn("no --prometheus-url: automatic canaries will hold, sluice's router does not see this runtime's traffic")
		return nil, nil
	}
	var q kube.Queries
	var err error
	switch {
	case s.PrometheusQueries != "":
		q, err = kube.LoadQueries(s.PrometheusQueries)
	case s.GatewayKind == "":
		return nil, fmt.Errorf("--prometheus-url needs --gateway-kind (envoy-gateway or istio) or --prometheus-queries: which metrics to query")
	default:
		q, err = kube.ShippedQueries(kube.GatewayKind(s.GatewayKind))
	}
	if err != nil {
		return nil, fmt.Errorf("canary metrics: %w", err)
	}
	p, err := kube.NewPrometheus(s.PrometheusURL, q, namespace)
	if err != nil {
		return nil, fmt.Errorf("--prometheus-url: %w", err)
	}
	return p, nil
}

// keyVersions keys the local runtime's version directories by the store's
// id, taking over the unkeyed ones of a store that predates ids.
func keyVersions(l *local.Local, db *store.DB) error {
	if err := l.SetStoreID(db.ID()); err != nil {
		return err
	}
	if db.PredatesID() {
		if _, err := l.AdoptUnkeyed(); err != nil {
			return err
		}
	}
	return nil
}

// earlierData says what in data shows that a store was kept there before
// (the local runtime's version directories), or "" when nothing does.
func earlierData(data string) string {
	entries, err := os.ReadDir(filepath.Join(data, "versions"))
	if err != nil || len(entries) == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds %d entries (builds and logs of earlier versions)", filepath.Join(data, "versions"), len(entries))
}

// Run wires the server together and serves until SIGTERM or SIGINT.
func (s *serveCmd) Run(env *cli.Env) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: s.LogLevel}))
	slog.SetDefault(log)
	for _, f := range secretOnCommandLine(os.Args[1:], "token", "github-webhook-secret") {
		log.Warn("secret given on the command line: every local user can read it in /proc; use its -file flag or environment variable", "flag", f)
	}
	token, err := secretValue("token", s.Token, s.TokenFile, log)
	if err != nil {
		return err
	}
	s.Token = token
	logNoFile(log)
	allow, err := s.oidcAllow()
	if err != nil {
		return err
	}
	trustedProxies, err := parsePrefixes(s.TrustedProxies)
	if err != nil {
		return err
	}
	if _, _, err := local.ParsePortRange(s.PortRange); err != nil {
		return fmt.Errorf("--port-range: %w", err)
	}
	// Listen before anything else: with port 0 or an inherited socket the
	// router's real address is known only now, and service URLs carry it.
	apiLn, err := listen(s.Listen)
	if err != nil {
		return fmt.Errorf("listen API: %w", err)
	}
	defer apiLn.Close()
	if s.Token == "" && !isLoopback(apiLn.Addr().String()) {
		return fmt.Errorf("refusing to serve the API on non-loopback %s without --token (SLUICE_TOKEN)", apiLn.Addr())
	}
	routerLn, err := listen(s.RouterListen)
	if err != nil {
		return fmt.Errorf("listen router: %w", err)
	}
	defer routerLn.Close()
	data, err := filepath.Abs(s.Data)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := tightenDir(data, false); err != nil {
		return err
	}
	expect := earlierData(data) // before the runtime creates its directories
	rt, engOpts, release, err := s.runtime(data, log)
	if err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(data, "sluice.db"), store.WithLogger(log), store.WithBackup(),
		store.WithExpectData(expect))
	if err != nil {
		return err
	}
	defer db.Close()
	if l, ok := rt.(*local.Local); ok {
		if err := keyVersions(l, db); err != nil {
			return err
		}
	}
	// The API and the router share this process's file descriptors: each
	// gets its share, so a flood of connections to one cannot starve the other.
	budget := fds.Budget{API: s.APIMaxConns, Router: s.MaxConns}
	nofile, err := fds.RaiseLimit()
	if err != nil {
		log.Warn("file descriptor limit not raised", "err", err)
	}
	if nofile > 0 {
		budget = fds.Split(nofile, s.APIMaxConns, s.MaxConns)
	}
	if budget.API < s.APIMaxConns || budget.Router < s.MaxConns {
		log.Warn("connection caps lowered to fit the file descriptor limit", "nofile", nofile, "api_max_conns", budget.API, "max_conns", budget.Router)
	}
	rtr := router.New(s.BaseDomain, router.WithLogger(log), router.WithLimits(router.Limits{
		MaxBodyBytes: int64(s.MaxBody), UpstreamTimeout: s.UpstreamTimeout, MaxConns: budget.Router}),
		router.WithTrustedProxies(trustedProxies))
	eng := rollout.New(db, rt, rtr, s.BaseDomain, append([]rollout.Option{
		rollout.WithLogger(log),
		rollout.WithRouterAddr(routerLn.Addr().String()),
		rollout.WithDrainGrace(s.DrainGrace),
		rollout.WithSourceLimits(source.DefaultLimits)}, engOpts...)...)
	if err := eng.Recover(env.Ctx); err != nil {
		return err
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	gb, secrets, err := s.githubBot(eng, db, log)
	if err != nil {
		return err
	}
	apiOpts := []api.Option{api.WithMaxUpload(int64(s.MaxUpload)), api.WithLogger(log), api.WithSecrets(secrets...),
		api.WithTrustedProxies(trustedProxies)}
	if s.Token != "" {
		// --token is the admin token; repository tokens and OIDC tokens act
		// for one repository. Without --token the API stays open (loopback).
		authn := auth.New(db, auth.WithAdminToken(s.Token), auth.WithOIDC(s.OIDCIssuer, s.PublicURL, allow))
		if iss, aud, ok := authn.OIDC(); ok {
			log.Info("api accepts OIDC tokens", "issuer", iss, "audience", aud)
		}
		apiOpts = append(apiOpts, api.WithAuthenticator(authn))
	}
	api.Register(e, eng, apiOpts...)
	// The dashboard and /metrics name services, repositories and who
	// deployed: with an admin token they are the admin's unless the
	// operator publishes them, and then the dashboard is anonymous.
	var guard []echo.MiddlewareFunc
	dashOpts := []dashboard.Option{dashboard.WithSecrets(secrets...)}
	switch {
	case s.PublicDashboard:
		dashOpts = append(dashOpts, dashboard.Anonymous())
	case s.Token != "":
		guard = append(guard, adminOnly(s.Token))
		dashOpts = append(dashOpts, dashboard.WithMiddleware(guard...))
	}
	dashboard.Register(e, eng, dashOpts...)
	reg := prometheus.NewRegistry()
	panics := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_panics_total",
		Help: "Panics contained in units of background work (deliveries, reports, builds, cron rounds)."},
		func() float64 { return float64(contain.Panics()) })
	reg.MustRegister(rtr.Collector(), panics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), guard...)
	botCtx, stopBot := context.WithCancel(context.Background())
	defer stopBot()
	botDone := make(chan struct{})
	if gb != nil {
		gb.Register(e)
	}

	// Past its cap the API accepts no more connections (they wait in the
	// kernel's queue, holding no descriptor of ours); a connection that
	// sends nothing is closed after ReadHeaderTimeout, an idle one after
	// IdleTimeout.
	apiSrv := &http.Server{Handler: e, ReadHeaderTimeout: apiHeaderTimeout, ReadTimeout: s.APITimeout,
		WriteTimeout: s.APITimeout, IdleTimeout: apiIdleTimeout, MaxHeaderBytes: apiMaxHeaderBytes}
	errc := make(chan error, 2)
	go func() { errc <- apiSrv.Serve(netutil.LimitListener(apiLn, budget.API)) }()
	go func() { errc <- rtr.Serve(routerLn) }()
	// The bot starts once the webhook listens: its missed-webhook recovery
	// asks GitHub for redeliveries at once.
	if gb != nil {
		go func() { defer close(botDone); gb.Run(botCtx) }()
	} else {
		close(botDone)
	}

	// Each cron round is a unit of work (package contain): a round that
	// panics is logged and counted, and the next round runs.
	c := cron.New()
	if s.RetireAfter > 0 {
		_, _ = c.AddFunc("@every 1m", func() {
			err := contain.Do(log, "retire round", func() error {
				_, err := eng.Retire(env.Ctx, "", s.RetireAfter, rollout.Origin{Via: rollout.ViaSluice, Actor: "retire", Principal: rollout.AdminPrincipal})
				return err
			})
			if err != nil {
				log.Error("retire idle versions", "err", err)
			}
		})
	}
	if gb != nil {
		// The inbox's records of deliveries past the replay horizon go;
		// Prune contains its own panics.
		_, _ = c.AddFunc("@every "+pruneEvery.String(), func() {
			if _, err := gb.Prune(env.Ctx); err != nil {
				log.Error("prune the webhook inbox", "err", err)
			}
		})
	}
	_, _ = c.AddFunc("@every 5s", func() {
		if err := contain.Do(log, "canary round", func() error { return eng.AdvanceCanaries(env.Ctx) }); err != nil {
			log.Error("advance canaries", "err", err)
		}
	})
	c.Start()
	log.Info("sluice serving", "api", apiLn.Addr().String(), "router", routerLn.Addr().String(), "data", data)

	select {
	case <-env.Ctx.Done():
	case err := <-errc:
		log.Error("server stopped", "err", err)
	}
	log.Info("shutting down")
	<-c.Stop().Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The router drains first: in-flight requests finish, then instances stop.
	if err := rtr.Shutdown(sctx); err != nil {
		log.Warn("router shutdown", "err", err)
	}
	if err := apiSrv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("api shutdown", "err", err)
	}
	stopBot()
	<-botDone
	release()
	if err := eng.Close(sctx); err != nil {
		log.Warn("stop instances", "err", err)
	}
	log.Info("stopped")
	return nil
}
