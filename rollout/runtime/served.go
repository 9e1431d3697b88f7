package runtime

import "time"

// Served is what one version served during a window of time, as a data
// plane measured it: sluice's router on the local runtime, the gateway's
// metrics in Prometheus on the kubernetes runtime. The automatic canary
// judges a step on it, the same way whichever source it came from.
type Served struct {
	// Requests answered during the window (any status).
	Requests float64
	// Errors is how many of them were 5xx.
	Errors float64
	// P99 is the 99th percentile latency; meaningful only when HasP99.
	P99    time.Duration
	HasP99 bool
}

// MetricsUnavailable is the error a metrics source returns when it cannot
// say what a version served: the source did not answer, or had no figures
// for the version. Detail says what happened and Suggestion what to do;
// both are shown to users (history, status), so they must hold no secret.
type MetricsUnavailable struct {
	Detail     string
	Suggestion string
}

func (e *MetricsUnavailable) Error() string { return "metrics unavailable: " + e.Detail }
