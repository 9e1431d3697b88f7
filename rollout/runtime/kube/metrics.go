package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	neturl "net/url"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// GatewayKind names a Gateway API implementation whose metrics sluice
// knows how to read from Prometheus. Given on the command line.
type GatewayKind string

const (
	// GatewayEnvoyGateway is Envoy Gateway: Envoy's upstream cluster stats
	// (envoy_cluster_upstream_rq_*), which it names after the route rule.
	GatewayEnvoyGateway GatewayKind = "envoy-gateway"
	// GatewayIstio is Istio: istio_requests_total and
	// istio_request_duration_milliseconds, labelled with the destination
	// Service, which is the version's own.
	GatewayIstio GatewayKind = "istio"
)

// GatewayKinds lists the kinds with shipped queries.
var GatewayKinds = []GatewayKind{GatewayEnvoyGateway, GatewayIstio}

// Queries are the PromQL templates that read what one version served
// during a window. Each is a Go text/template over QueryData and must
// answer one sample (several are added up):
//
//   - Requests: the requests the version answered in the window. No
//     series at all means Prometheus has no figures: the canary holds.
//   - Errors: how many of them were 5xx; no series means none.
//   - P99Ms: the 99th percentile latency in milliseconds; no series (or
//     NaN) means unknown.
type Queries struct {
	Requests string `yaml:"requests"`
	Errors   string `yaml:"errors"`
	P99Ms    string `yaml:"p99_ms"`
}

// QueryData is what a query template may use. Every value is safe inside
// a PromQL double-quoted string.
type QueryData struct {
	// Namespace of the version's Deployment, Service and the service's routes.
	Namespace string
	// Service is the sluice service, which is also the name of its HTTPRoute.
	Service string
	// Version is the version, the name of its Deployment, Service and own HTTPRoute.
	Version string
	// Window is the PromQL duration from the step's start to now, e.g. "600s".
	Window string
}

// shippedQueries are the queries of each kind.
//
// Istio: its gateways and sidecars report each request as the source
// (reporter="source") with the destination Service's name, which is the
// version's own Service, so the gateway's traffic counts even when the
// version's pods run no sidecar.
//
// Envoy Gateway: Envoy's stats are per cluster, and Envoy Gateway builds
// one cluster per HTTPRoute rule, named httproute/<ns>/<route>/rule/<n>;
// the weighted backendRefs of one rule share it (per-backendRef stats are
// envoyproxy/gateway#6742). The one cluster whose only backend is the
// version is the rule of its own HTTPRoute (its version URL), so these
// queries judge a canary on the traffic sent to its version URL; without
// any, the canary holds (see the README for templates over your own
// metrics).
var shippedQueries = map[GatewayKind]Queries{
	GatewayIstio: {
		Requests: `sum(increase(istio_requests_total{reporter="source",destination_service_namespace="{{.Namespace}}",destination_service_name="{{.Version}}"}[{{.Window}}]))`,
		Errors:   `sum(increase(istio_requests_total{reporter="source",destination_service_namespace="{{.Namespace}}",destination_service_name="{{.Version}}",response_code=~"5.."}[{{.Window}}]))`,
		P99Ms:    `histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket{reporter="source",destination_service_namespace="{{.Namespace}}",destination_service_name="{{.Version}}"}[{{.Window}}])))`,
	},
	GatewayEnvoyGateway: {
		Requests: `sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="httproute/{{.Namespace}}/{{.Version}}/rule/0"}[{{.Window}}]))`,
		Errors:   `sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name="httproute/{{.Namespace}}/{{.Version}}/rule/0",envoy_response_code_class="5"}[{{.Window}}]))`,
		P99Ms:    `histogram_quantile(0.99, sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="httproute/{{.Namespace}}/{{.Version}}/rule/0"}[{{.Window}}])))`,
	},
}

// ShippedQueries returns the queries sluice ships for kind, or an error
// naming the kinds it knows.
func ShippedQueries(kind GatewayKind) (Queries, error) {
	q, ok := shippedQueries[kind]
	if !ok {
		names := make([]string, len(GatewayKinds))
		for i, k := range GatewayKinds {
			names[i] = string(k)
		}
		return Queries{}, fmt.Errorf("unknown gateway kind %q: sluice ships queries for %s; give your own with a query file", kind, strings.Join(names, ", "))
	}
	return q, nil
}

// LoadQueries reads a query file: YAML with the keys requests, errors and
// p99_ms (see Queries), each a template over QueryData. Unknown keys,
// missing ones and templates that do not execute are errors naming the
// file and the key.
func LoadQueries(path string) (Queries, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Queries{}, fmt.Errorf("read query file: %w", err)
	}
	var q Queries
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&q); err != nil {
		return Queries{}, fmt.Errorf("query file %s: %w (it holds the keys requests, errors and p99_ms)", path, err)
	}
	if _, err := q.compile(); err != nil {
		return Queries{}, fmt.Errorf("query file %s: %w", path, err)
	}
	return q, nil
}

type compiled struct{ requests, errors, p99 *template.Template }

// compile parses each template and executes it once on sample data, so a
// misspelt field fails at start-up rather than at the first canary step.
func (q Queries) compile() (compiled, error) {
	var c compiled
	for _, f := range []struct {
		key, text string
		dst       **template.Template
	}{{"requests", q.Requests, &c.requests}, {"errors", q.Errors, &c.errors}, {"p99_ms", q.P99Ms, &c.p99}} {
		if strings.TrimSpace(f.text) == "" {
			return compiled{}, fmt.Errorf("%s: no query given", f.key)
		}
		t, err := template.New(f.key).Option("missingkey=error").Parse(f.text)
		if err != nil {
			return compiled{}, fmt.Errorf("%s: %w", f.key, err)
		}
		if err := t.Execute(new(bytes.Buffer), QueryData{Namespace: "ns", Service: "svc", Version: "svc-001", Window: "60s"}); err != nil {
			return compiled{}, fmt.Errorf("%s: %w (the fields are .Namespace, .Service, .Version and .Window)", f.key, err)
		}
		*f.dst = t
	}
	return c, nil
}

// Render returns the three queries for d: requests, errors, p99.
func (q Queries) Render(d QueryData) (requests, errs, p99 string, err error) {
	c, err := q.compile()
	if err != nil {
		return "", "", "", err
	}
	return c.render(d)
}

func (c compiled) render(d QueryData) (requests, errs, p99 string, err error) {
	d = QueryData{Namespace: promQuote(d.Namespace), Service: promQuote(d.Service), Version: promQuote(d.Version), Window: d.Window}
	out := make([]string, 3)
	for i, t := range []*template.Template{c.requests, c.errors, c.p99} {
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return "", "", "", fmt.Errorf("render query %s: %w", t.Name(), err)
		}
		out[i] = b.String()
	}
	return out[0], out[1], out[2], nil
}

// promQuote escapes what would end a PromQL double-quoted string.
func promQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// DefaultPrometheusTimeout bounds one query.
const DefaultPrometheusTimeout = 10 * time.Second

// Prometheus reads what versions served from a Prometheus server's HTTP
// API (/api/v1/query) with one set of Queries. It implements the
// automatic canary's metrics source. Safe for concurrent use.
type Prometheus struct {
	api     promv1.API
	url     string
	queries compiled
	ns      func(service string) string
}

// NewPrometheus returns a reader of the Prometheus at url (its base URL,
// e.g. http://prometheus.monitoring:9090) using q. namespace tells the
// namespace of a service's versions (see Kube.Namespace).
func NewPrometheus(url string, q Queries, namespace func(service string) string) (*Prometheus, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("prometheus URL %q: want http:// or https:// and the server's base address", url)
	}
	c, err := q.compile()
	if err != nil {
		return nil, err
	}
	cl, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return &Prometheus{api: promv1.NewAPI(cl), url: redactURL(url), queries: c, ns: namespace}, nil
}

// redactURL is how a Prometheus base URL appears in what users read (hold
// reasons reach the history, status and pull request comments): without
// the password of its userinfo, if it has one.
func redactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		return "(the configured Prometheus)"
	}
	return u.Redacted()
}

// Window formats the time from since to until as a PromQL range in whole
// seconds, rounded up (at least 1s).
func Window(since, until time.Time) string {
	s := int64(math.Ceil(until.Sub(since).Seconds()))
	return fmt.Sprintf("%ds", max(s, 1))
}

// Served queries what version served from since to until, evaluated at
// until. When Prometheus does not answer, refuses a query, or has no
// series for the requests query, the error is a
// *runtime.MetricsUnavailable saying so and what to check.
func (p *Prometheus) Served(ctx context.Context, service, version string, since, until time.Time) (runtime.Served, error) {
	d := QueryData{Namespace: p.ns(service), Service: service, Version: version, Window: Window(since, until)}
	rq, eq, pq, err := p.queries.render(d)
	if err != nil {
		return runtime.Served{}, err
	}
	n, ok, err := p.scalar(ctx, rq, until)
	if err != nil {
		return runtime.Served{}, err
	}
	if !ok {
		slog.Default().Warn("no series for a canary", "service", service, "version", version, "query", rq)
		return runtime.Served{}, &runtime.MetricsUnavailable{
			Detail: fmt.Sprintf("Prometheus at %s has no series for %s", p.url, version),
			Suggestion: "Check that Prometheus scrapes the gateway's proxies and that --gateway-kind names your gateway " +
				"(or that your query file matches your metrics); sluice's log shows the query to try in Prometheus. Meanwhile decide by hand: promote or abort."}
	}
	s := runtime.Served{Requests: n}
	if e, ok, err := p.scalar(ctx, eq, until); err != nil {
		return runtime.Served{}, err
	} else if ok {
		s.Errors = e
	}
	if ms, ok, err := p.scalar(ctx, pq, until); err != nil {
		return runtime.Served{}, err
	} else if ok {
		s.P99, s.HasP99 = time.Duration(ms*float64(time.Millisecond)), true
	}
	return s, nil
}

// scalar runs one instant query and adds up the samples of its answer;
// ok is false when the answer holds no sample that is a number.
func (p *Prometheus) scalar(ctx context.Context, query string, at time.Time) (float64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultPrometheusTimeout)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, query, at)
	if err != nil {
		detail := fmt.Sprintf("Prometheus at %s did not answer: %v", p.url, err)
		suggestion := "Check --prometheus-url and that sluice can reach Prometheus. Meanwhile decide by hand: promote or abort."
		var perr *promv1.Error
		if errors.As(err, &perr) && perr.Type == promv1.ErrBadData {
			slog.Default().Warn("prometheus refused a canary query", "query", query, "err", perr.Msg)
			detail = fmt.Sprintf("Prometheus at %s refused a query: %s", p.url, perr.Msg)
			suggestion = "Fix the query (sluice serve --prometheus-queries) and restart sluice. Meanwhile decide by hand: promote or abort."
		}
		return 0, false, &runtime.MetricsUnavailable{Detail: detail, Suggestion: suggestion}
	}
	var sum float64
	found := false
	add := func(x model.SampleValue) {
		if f := float64(x); !math.IsNaN(f) && !math.IsInf(f, 0) {
			sum, found = sum+f, true
		}
	}
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			add(s.Value)
		}
	case *model.Scalar:
		add(v.Value)
	}
	return sum, found, nil
}
