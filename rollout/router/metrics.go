package router

import (
	"github.com/sluicehq/sluice/rollout/routing"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBounds are the upper bounds of the latency histogram's buckets
// (a last bucket holds everything slower). Instances are near, so the
// scale starts well below a millisecond.
var latencyBounds = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond,
	1 * time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// versionStats are one version's counters. The request path reaches them
// through its versionRoute (resolved when the table is built) and only adds
// to atomics; they outlive tables as long as the version is in one.
type versionStats struct {
	service, version string

	requests atomic.Uint64
	inflight atomic.Int64
	classes  [5]atomic.Uint64 // responses by status class, 1xx at 0
	buckets  [len(latencyBounds) + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

// begin counts a request routed to the version.
func (s *versionStats) begin() {
	s.requests.Add(1)
	s.inflight.Add(1)
}

// cancel takes back a begin (the request is routed again).
func (s *versionStats) cancel() {
	s.requests.Add(^uint64(0))
	s.inflight.Add(-1)
}

// end counts its response (status 0 when none was sent: the client went
// away or the instance broke off) and its latency.
func (s *versionStats) end(status int, d time.Duration) {
	s.inflight.Add(-1)
	if c := status/100 - 1; c >= 0 && c < len(s.classes) {
		s.classes[c].Add(1)
	}
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumNanos.Add(uint64(d))
}

func (s *versionStats) snapshot() routing.Stats {
	st := routing.Stats{
		Requests:   s.requests.Load(),
		InFlight:   s.inflight.Load(),
		Status1xx:  s.classes[0].Load(),
		Status2xx:  s.classes[1].Load(),
		Status3xx:  s.classes[2].Load(),
		Status4xx:  s.classes[3].Load(),
		Status5xx:  s.classes[4].Load(),
		LatencySum: time.Duration(s.sumNanos.Load()),
	}
	var counts [len(latencyBounds) + 1]uint64
	var total uint64
	for i := range counts {
		counts[i] = s.buckets[i].Load()
		total += counts[i]
	}
	st.P50 = quantile(counts[:], total, 0.50)
	st.P90 = quantile(counts[:], total, 0.90)
	st.P99 = quantile(counts[:], total, 0.99)
	return st
}

// quantile estimates the q-quantile from bucket counts, interpolating
// linearly within the bucket it falls in (as Prometheus'
// histogram_quantile does); the last, unbounded bucket answers its lower
// bound.
func quantile(counts []uint64, total uint64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range counts {
		if c == 0 || seen+float64(c) < rank {
			seen += float64(c)
			continue
		}
		if i == len(latencyBounds) {
			return latencyBounds[len(latencyBounds)-1]
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = latencyBounds[i-1]
		}
		hi := latencyBounds[i]
		return lo + time.Duration(float64(hi-lo)*(rank-seen)/float64(c))
	}
	return latencyBounds[len(latencyBounds)-1]
}

// Stats returns the counters of a version (by its exact name) in the
// current table; the zero Stats when the table has no such version.
// Versions keep their counters across Updates for as long as they stay in
// the table. Safe for concurrent use; it takes no lock.
func (r *Router) Stats(version string) routing.Stats {
	s := r.table.Load().stats[version]
	if s == nil {
		return routing.Stats{}
	}
	return s.snapshot()
}

// Metric names and help texts of the Collector.
var (
	descRequests = prometheus.NewDesc("sluice_router_requests_total",
		"Requests routed to a version.", []string{"service", "version"}, nil)
	descResponses = prometheus.NewDesc("sluice_router_responses_total",
		"Responses sent for a version, by status class (1xx..5xx).", []string{"service", "version", "code"}, nil)
	descDuration = prometheus.NewDesc("sluice_router_request_duration_seconds",
		"Time from a request's first byte to its response's last byte.", []string{"service", "version"}, nil)
	descInFlight = prometheus.NewDesc("sluice_router_in_flight_requests",
		"Requests to a version not finished yet.", []string{"service", "version"}, nil)
)

var classLabels = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// collector exports the current table's version counters.
type collector struct{ r *Router }

// Collector returns a prometheus.Collector of the per-version metrics:
// sluice_router_requests_total, sluice_router_responses_total{code},
// sluice_router_request_duration_seconds (histogram) and
// sluice_router_in_flight_requests, each labelled with service and version.
// Register it once (e.g. on the API listener's /metrics). Collecting reads
// atomics and takes no lock the request path takes.
func (r *Router) Collector() prometheus.Collector { return collector{r} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descResponses
	ch <- descDuration
	ch <- descInFlight
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.r.table.Load().stats {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue,
			float64(s.requests.Load()), s.service, s.version)
		for i := range s.classes {
			ch <- prometheus.MustNewConstMetric(descResponses, prometheus.CounterValue,
				float64(s.classes[i].Load()), s.service, s.version, classLabels[i])
		}
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue,
			float64(s.inflight.Load()), s.service, s.version)
		buckets := make(map[float64]uint64, len(latencyBounds))
		var cum uint64
		for i, b := range latencyBounds {
			cum += s.buckets[i].Load()
			buckets[b.Seconds()] = cum
		}
		count := cum + s.buckets[len(latencyBounds)].Load()
		ch <- prometheus.MustNewConstHistogram(descDuration, count,
			time.Duration(s.sumNanos.Load()).Seconds(), buckets, s.service, s.version)
	}
}
