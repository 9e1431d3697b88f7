// Package reason names why a version failed: the stable machine codes a
// failure status carries (SPEC 1, "Version status"). The engine assigns
// some (Interrupted, InvalidManifest, InternalError), runtime drivers the
// others; front doors show them and users and scripts branch on them.
//
// It is a leaf: it imports nothing, so the engine, the runtime interface
// and its drivers, and the front doors share one vocabulary without
// depending on each other.
package reason

// Code is a stable machine code explaining a failure. Codes are persisted
// with versions and events and shown to users, so they are strings and
// never change meaning; the empty Code means no failure.
type Code string

// Codes the engine assigns.
const (
	// InvalidManifest: sluice.yaml is missing, malformed, or does not
	// declare the service.
	InvalidManifest Code = "InvalidManifest"
	// Interrupted: sluice stopped while the operation was in flight.
	Interrupted Code = "Interrupted"
	// InternalError: sluice itself failed (an unexpected error or a panic
	// in a driver), not the user's code or configuration.
	InternalError Code = "InternalError"
	// DataPlaneFailed: the version was healthy, but the data plane (a
	// gateway) refused or did not apply the policy that gives it its
	// traffic, so its deploy did not count.
	DataPlaneFailed Code = "DataPlaneFailed"
	// CanaryStopped: an automatic canary's figures broke its plan (5xx
	// rate or p99), so its traffic went back to the stable version; the
	// version itself stays normal, at 0%. Carried by the history event of
	// the stop, not by the version.
	CanaryStopped Code = "CanaryStopped"
	// Failed: a failure recorded without a code (an event that carried no
	// reason); front doors show it rather than an empty code.
	Failed Code = "Failed"
)

// Codes runtime drivers report (package runtime's Failure).
const (
	// SourceUnavailable: the source archive could not be unpacked into the
	// work directory, or a stored artifact has disappeared.
	SourceUnavailable Code = "SourceUnavailable"
	// BuildFailed: the build command exited non-zero.
	BuildFailed Code = "BuildFailed"
	// BuildTimeout: the build command ran past its timeout and was killed.
	BuildTimeout Code = "BuildTimeout"
	// ProcessExited: an instance exited before it became healthy.
	ProcessExited Code = "ProcessExited"
	// PortNotListening: an instance kept running but nothing accepted
	// connections on $PORT before the start timeout.
	PortNotListening Code = "PortNotListening"
	// PortNotAllowed: an instance listened on a port other than the $PORT
	// it was given (local runtime).
	PortNotAllowed Code = "PortNotAllowed"
	// HealthCheckFailed: the health path answered, but never with 2xx,
	// before the start timeout.
	HealthCheckFailed Code = "HealthCheckFailed"
	// HealthCheckTimeout: connections were accepted but the health path
	// never answered before the start timeout.
	HealthCheckTimeout Code = "HealthCheckTimeout"
	// StartFailed: the run command could not be started at all (for
	// example the shell is missing).
	StartFailed Code = "StartFailed"
	// ImagePullFailed: the container image could not be pulled (it does
	// not exist, or the cluster may not read it).
	ImagePullFailed Code = "ImagePullFailed"
	// Unschedulable: no node could take the version's pods (resources,
	// node selectors, taints).
	Unschedulable Code = "Unschedulable"
)
