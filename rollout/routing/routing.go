package routing

import (
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// Table is everything a data path serves: the services, their compiled
// policies and the live instances of each version. Build a new one for
// every change and hand it over whole; a data path does not keep the
// slices.
type Table struct {
	Services []Service
}

// Service is one service in a Table. Name is its DNS label (matched
// case-insensitively); a nil Policy serves nothing on the service's default
// URL, like an empty split.
type Service struct {
	Name     string
	Policy   *policy.Compiled
	Versions []Version
	// Sticky pins each client of the service's default URL to the version
	// the split first gave it, with a cookie, for as long as the policy
	// holds that version (Compiled.Holds). A rule that matches still wins
	// over the cookie; version URLs ignore it.
	Sticky bool
	// MaxBodyBytes bounds a request body to the service (413 past it):
	// 0 takes the data path's own default, a negative value means no
	// limit.
	MaxBodyBytes int64
}

// Version is one version of a service and the host:port of each of its
// live instances; Addrs may be empty (the version is known, nothing serves
// it).
type Version struct {
	Name  string
	Addrs []string
	// Stopped says the version is retired: its URL answers 503 without
	// Retry-After (it comes back only when asked).
	Stopped bool
}

// Stats is a snapshot of one version's counters since the data path first
// served it; the zero Stats means nothing was served. Counters only grow,
// so rates over a window are differences of two snapshots.
type Stats struct {
	// Requests routed to the version, including those answered by the
	// data path itself (503 when no instance was live, 502, 504).
	Requests uint64
	// InFlight is how many of them are not finished yet.
	InFlight int64
	// Responses by status class. A request whose client went away before
	// its response began counts in none.
	Status1xx, Status2xx, Status3xx, Status4xx, Status5xx uint64
	// Latency quantiles from first byte in to last byte out, estimated from
	// a histogram (linear within a bucket); 0 before the first response.
	P50, P90, P99 time.Duration
	// LatencySum is the total latency of the finished requests.
	LatencySum time.Duration
}

// Responses is the number of responses of every class.
func (s Stats) Responses() uint64 {
	return s.Status1xx + s.Status2xx + s.Status3xx + s.Status4xx + s.Status5xx
}

// ErrorRate is the share of responses that were 5xx, 0 with no response.
func (s Stats) ErrorRate() float64 {
	n := s.Responses()
	if n == 0 {
		return 0
	}
	return float64(s.Status5xx) / float64(n)
}
