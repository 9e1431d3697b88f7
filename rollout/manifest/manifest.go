package manifest

import (
	"time"
)

// FileName is the manifest's name at the root of a source tree.
const FileName = "sluice.yaml"

// Defaults applied by Parse to fields the file leaves out.
const (
	DefaultInstances    = 1
	DefaultOnMerge      = OnMergeFull
	DefaultCanaryPeriod = 10 * time.Minute
	MaxInstances        = 64
)

// DefaultCanarySteps are the traffic percentages of a canary block that
// names no steps.
var DefaultCanarySteps = []int{10, 50, 100}

// What a push to the default branch does to a service (Service.OnMerge).
// The values are written by users in sluice.yaml.
const (
	// OnMergeFull: deploy a new version and, once healthy, give it 100% of
	// the split.
	OnMergeFull = "full"
	// OnMergeCanary: deploy a new version at 0% and follow the service's
	// canary plan (Service.Canary: steps while its 5xx rate and p99 hold),
	// or leave traffic to the user when there is none.
	OnMergeCanary = "canary"
	// OnMergeRedeploy: apply the new source and configuration in place to
	// the stable version.
	OnMergeRedeploy = "redeploy"
	// OnMergeNone: do nothing on merge.
	OnMergeNone = "none"
)

// Who may have a pull request from a fork built (Manifest.Forks). The
// values are written by users in sluice.yaml.
const (
	// ForksDeny: a pull request whose head is in another repository is never
	// built. The default.
	ForksDeny = "deny"
	// ForksAllow: a fork's pull request is built when someone with write
	// permission asks, and only at the head commit they saw.
	ForksAllow = "allow"
)

// Manifest is a parsed sluice.yaml. It is a plain value: safe to share for
// reading, and nothing in it refers back to the file.
type Manifest struct {
	// Services in the order the file declares them; never empty after a
	// successful Parse.
	Services []Service
	// Forks is ForksDeny or ForksAllow (default ForksDeny). Only the
	// manifest of the base repository's default branch decides it: a fork's
	// own sluice.yaml cannot let itself in.
	Forks string
}

// Service returns the service called name and whether it exists.
func (m *Manifest) Service(name string) (Service, bool) {
	for _, s := range m.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Service is one entry under "services", with defaults applied.
type Service struct {
	// Name is the service's key: a lowercase DNS label of at most
	// names.MaxServiceLength characters.
	Name string
	// Line and Column locate the service's key in the file (1-based).
	Line, Column int
	// Build is a shell command run in the source tree before starting;
	// empty means nothing to build.
	Build string
	// Run is the shell command that starts one instance; it must listen on
	// $PORT. Never empty.
	Run string
	// Health is the HTTP path probed until it answers 2xx; starts with "/".
	Health string
	// Env is the instances' extra environment; never nil. Scalar values are
	// kept as written ("1.0", "true"); a null value becomes "".
	Env map[string]string
	// Instances is the number of processes (local) or replicas (kubernetes),
	// 1 to MaxInstances.
	Instances int
	// Sticky pins each client to the version the split first gave it, with
	// a cookie, while that version keeps traffic (a service setting: the
	// stable version's value applies).
	Sticky bool
	// MaxBodyBytes bounds a request body ("max_body: 10MiB"); 0 means the
	// router's default.
	MaxBodyBytes int64
	// Timeouts bound the build and the start (until healthy).
	Timeouts Timeouts
	// OnMerge is one of the OnMerge* values.
	OnMerge string
	// Canary is the automatic canary plan, nil when the file has none.
	Canary *Canary
	// Kubernetes holds the placement on the kubernetes runtime, nil when the
	// file has none.
	Kubernetes *Kubernetes
}

// Timeouts bound the phases of a deploy. Both are positive after Parse.
type Timeouts struct {
	Build time.Duration // default runtime.DefaultBuildTimeout
	Start time.Duration // default runtime.DefaultStartTimeout
}

// Canary is a plan for moving traffic to a new version in steps.
type Canary struct {
	// Steps are percentages of traffic for the new version, strictly
	// increasing within 1..100 and ending at 100. Default DefaultCanarySteps.
	Steps []int
	// Interval is how long each step lasts before the next; positive.
	// Default DefaultCanaryPeriod.
	Interval time.Duration
	// MaxErrorRate is the highest tolerated fraction of 5xx answers
	// ("1%" is 0.01); 0 when not set, meaning not checked.
	MaxErrorRate float64
	// MaxP99 is the highest tolerated 99th-percentile latency; 0 when not
	// set, meaning not checked.
	MaxP99 time.Duration
}

// Kubernetes places a service on the kubernetes runtime.
type Kubernetes struct {
	// Image is a text/template for the container image, executed with the
	// commit, e.g. "ghcr.io/acme/hello:{{.SHA}}". Never empty.
	Image string
	// Namespace is a DNS label; empty means the runtime's default.
	Namespace string
}
