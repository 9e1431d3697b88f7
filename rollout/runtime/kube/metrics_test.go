package kube

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// The queries sluice sends for each gateway kind, exactly.
func TestShippedQueriesRenderExactly(t *testing.T) {
	d := QueryData{Namespace: "web", Service: "hello", Version: "hello-002", Window: "61s"}
	for _, tc := range []struct {
		kind                  GatewayKind
		requests, errors, p99 string
	}{
		{GatewayIstio,
			`sum(increase(istio_requests_total{reporter="source",destination_service_namespace="web",destination_service_name="hello-002"}[61s]))`,
			`sum(increase(istio_requests_total{reporter="source",destination_service_namespace="web",destination_service_name="hello-002",response_code=~"5.."}[61s]))`,
			`histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket{reporter="source",destination_service_namespace="web",destination_service_name="hello-002"}[61s])))`},
		{GatewayEnvoyGateway,
			`sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="httproute/web/hello-002/rule/0"}[61s]))`,
			`sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name="httproute/web/hello-002/rule/0",envoy_response_code_class="5"}[61s]))`,
			`histogram_quantile(0.99, sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="httproute/web/hello-002/rule/0"}[61s])))`},
	} {
		q, err := ShippedQueries(tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		r, e, p, err := q.Render(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range []struct{ name, got, want string }{{"requests", r, tc.requests}, {"errors", e, tc.errors}, {"p99", p, tc.p99}} {
			if got.got != got.want {
				t.Errorf("%s %s:\n got %s\nwant %s", tc.kind, got.name, got.got, got.want)
			}
		}
	}
	if _, err := ShippedQueries("nginx"); err == nil || !strings.Contains(err.Error(), `unknown gateway kind "nginx"`) || !strings.Contains(err.Error(), "envoy-gateway, istio") {
		t.Errorf("unknown kind: %v", err)
	}
}

// A label value cannot end the PromQL string it is placed in.
func TestQueryValuesAreQuoted(t *testing.T) {
	q := Queries{Requests: `x{a="{{.Service}}"}`, Errors: `y`, P99Ms: `z`}
	r, _, _, err := q.Render(QueryData{Service: `a"} or vector(1) #`})
	if err != nil || r != `x{a="a\"} or vector(1) #"}` {
		t.Fatalf("rendered %s (%v)", r, err)
	}
}

func TestLoadQueries(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "requests: 'sum(increase(http_requests_total{pod=~\"{{.Version}}-.*\"}[{{.Window}}]))'\nerrors: 'sum(x)'\np99_ms: 'max(y)'\n")
	q, err := LoadQueries(good)
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _, _ := q.Render(QueryData{Version: "hello-003", Window: "30s"}); r != `sum(increase(http_requests_total{pod=~"hello-003-.*"}[30s]))` {
		t.Errorf("rendered %s", r)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown-key.yaml", "requests: a\nerrors: b\np99_ms: c\nlatency: d\n", "field latency not found"},
		{"missing.yaml", "requests: a\nerrors: b\n", "p99_ms: no query given"},
		{"syntax.yaml", "requests: 'a{{'\nerrors: b\np99_ms: c\n", "requests:"},
		{"field.yaml", "requests: a\nerrors: '{{.Pod}}'\np99_ms: c\n", "errors:"},
		{"not-yaml.yaml", "[", "query file"},
	} {
		p := write(tc.name, tc.body)
		_, err := LoadQueries(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v; want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadQueries(filepath.Join(dir, "absent.yaml")); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("absent file: %v", err)
	}
}

// promStandIn is a strict stand-in for Prometheus's HTTP API on loopback:
// it answers /api/v1/query for the queries it was given, in Prometheus's
// JSON format, evaluated at the time it expects; any other path, query or
// time fails the test.
type promStandIn struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	at      time.Time
	answers map[string]string // query → the "result" array of a vector answer
	asked   []string
}

func newPromStandIn(t *testing.T) *promStandIn {
	p := &promStandIn{t: t, answers: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// expect sets the answers to the next queries, all evaluated at at.
func (p *promStandIn) expect(at time.Time, answers map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at, p.answers, p.asked = at, answers, nil
}

func (p *promStandIn) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(format string, args ...any) {
		p.t.Errorf("prometheus stand-in: "+format, args...)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":%q}`, fmt.Sprintf(format, args...))
	}
	if r.URL.Path != "/api/v1/query" || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
		fail("unexpected %s %s", r.Method, r.URL.Path)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail("form: %v", err)
		return
	}
	q := r.Form.Get("query")
	result, ok := p.answers[q]
	if !ok {
		fail("unexpected query %s", q)
		return
	}
	at, err := strconv.ParseFloat(r.Form.Get("time"), 64)
	if want := float64(p.at.UnixNano()) / 1e9; err != nil || math.Abs(at-want) > 0.001 {
		fail("query %s at time %q; want %.3f", q, r.Form.Get("time"), want)
		return
	}
	p.asked = append(p.asked, q)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
}

// sample is a vector answer with one sample of value v at time at.
func sample(at time.Time, v string) string {
	return fmt.Sprintf(`[{"metric":{},"value":[%d.000,%q]}]`, at.Unix(), v)
}

func TestPrometheusServed(t *testing.T) {
	p := newPromStandIn(t)
	q, _ := ShippedQueries(GatewayIstio)
	src, err := NewPrometheus(p.srv.URL, q, func(string) string { return "web" })
	if err != nil {
		t.Fatal(err)
	}
	since := time.Unix(1_700_000_000, 0)
	until := since.Add(90 * time.Second)
	rq, eq, pq, _ := q.Render(QueryData{Namespace: "web", Service: "hello", Version: "hello-002", Window: "90s"})
	ctx := context.Background()

	p.expect(until, map[string]string{rq: sample(until, "200"), eq: sample(until, "3"), pq: sample(until, "120.5")})
	s, err := src.Served(ctx, "hello", "hello-002", since, until)
	if err != nil || s != (runtime.Served{Requests: 200, Errors: 3, P99: 120500 * time.Microsecond, HasP99: true}) {
		t.Fatalf("healthy: %+v %v", s, err)
	}
	// No 5xx series means no errors; no latency series means unknown.
	p.expect(until, map[string]string{rq: sample(until, "10"), eq: `[]`, pq: `[{"metric":{},"value":[1700000090,"NaN"]}]`})
	if s, err := src.Served(ctx, "hello", "hello-002", since, until); err != nil || s != (runtime.Served{Requests: 10}) {
		t.Fatalf("no errors, no latency: %+v %v", s, err)
	}
	// No requests series: the figures are unavailable, and the reason says so.
	p.expect(until, map[string]string{rq: `[]`})
	_, err = src.Served(ctx, "hello", "hello-002", since, until)
	var mu *runtime.MetricsUnavailable
	if !errors.As(err, &mu) || !strings.Contains(mu.Detail, "no series for hello-002") || !strings.Contains(mu.Suggestion, "--gateway-kind") {
		t.Fatalf("no series: %v", err)
	}
	// Prometheus gone.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	down, _ := NewPrometheus(gone.URL, q, func(string) string { return "web" })
	if _, err := down.Served(ctx, "hello", "hello-002", since, until); !errors.As(err, &mu) || !strings.Contains(mu.Detail, "did not answer") || !strings.Contains(mu.Suggestion, "--prometheus-url") {
		t.Fatalf("unreachable: %v", err)
	}
	// A password in the URL never reaches what users read (hold reasons
	// go to the history, status and pull request comments).
	withPass, _ := NewPrometheus(strings.Replace(gone.URL, "http://", "http://canary:s3cret-pass@", 1), q, func(string) string { return "web" })
	if _, err := withPass.Served(ctx, "hello", "hello-002", since, until); !errors.As(err, &mu) || strings.Contains(mu.Detail, "s3cret-pass") || !strings.Contains(mu.Detail, "canary:") {
		t.Fatalf("unreachable, with a password in the URL: %v", err)
	}
	if _, err := NewPrometheus("prometheus:9090", q, nil); err == nil || !strings.Contains(err.Error(), "http://") {
		t.Errorf("URL without scheme: %v", err)
	}
}
