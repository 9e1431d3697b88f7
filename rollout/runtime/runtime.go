package runtime

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"time"
)

// Failure is the error a runtime returns when a version cannot be built or
// started for a reason the user can act on (Code: one of package
// reason's driver codes). Detail says what happened and
// includes the relevant log tail; Suggestion says what to do next. Both are
// shown verbatim to users, so they must not contain secrets.
type Failure struct {
	Code       reason.Code
	Detail     string
	Suggestion string
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %s", f.Code, f.Detail) }

// Defaults of a version's configuration: what sluice.yaml means when it
// leaves health or timeouts out, and what a Spec's zero timeouts mean to a
// driver. Defined once here, the contract every side shares.
const (
	DefaultHealth       = "/"
	DefaultBuildTimeout = 10 * time.Minute
	DefaultStartTimeout = 60 * time.Second
)

// Spec is everything a runtime needs to build and run one configuration
// (generation) of one version. A version's first deploy is generation 1;
// each in-place redeploy increments it, so the old and the new generation
// can run side by side.
type Spec struct {
	Service    string
	Version    string
	Generation int
	// Archive is a validated tar.gz of the source (see package source). When
	// nil, the generation reuses the built work directory of
	// BaseGeneration without rebuilding.
	Archive        []byte
	BaseGeneration int

	Build        string // shell command run in the source tree; empty: no build
	Run          string // shell command that must listen on $PORT
	Health       string // HTTP path probed until 2xx; never empty (DefaultHealth)
	Env          map[string]string
	Instances    int
	BuildTimeout time.Duration
	StartTimeout time.Duration

	// Where the source came from and where to place it, for runtimes that
	// run images rather than build commands (kubernetes); local ignores
	// them. SHA is the commit ("" for an upload), PR the pull request (0:
	// none), Image the image template of sluice.yaml's kubernetes block and
	// Namespace its namespace ("" : the runtime's default).
	SHA       string
	PR        int
	Image     string
	Namespace string
}

// Runtime builds and runs versions. Implementations must be safe for
// concurrent use; calls for different versions run concurrently.
type Runtime interface {
	// Build prepares the work directory of spec's generation: unpacks
	// spec.Archive and runs spec.Build, or, with no archive, reuses the
	// BaseGeneration's directory. It returns a *Failure for user-caused
	// problems. Build is idempotent for the same generation.
	Build(ctx context.Context, spec Spec) error
	// Start starts spec.Instances instances of a built generation and
	// returns once all of them pass the health check, or returns a *Failure
	// and leaves nothing running. notify is called (from any goroutine) when
	// an instance's liveness changes after Start has returned, e.g. when it
	// crashed and is restarting with backoff.
	Start(ctx context.Context, spec Spec, notify func()) (Group, error)
	// Logs returns up to max bytes of the end of the version's build and
	// run logs, for display; waiting ends with ctx.
	Logs(ctx context.Context, version string, max int) (string, error)
	// Cleanup stops every process a previous run of sluice left behind with
	// the same data directory. It is called once at start-up, before any
	// Start.
	Cleanup(ctx context.Context) error
}

// Adopter is implemented by runtimes whose versions outlive sluice (the
// kubernetes runtime: Deployments keep running while sluice is away). At
// start-up the engine calls Adopt once for every stored version, holding
// that version's service lock, so that the runtime learns where the
// version lives and converges what runs on what the store says: run false
// (a version interrupted while creating, stopped or failed) means nothing of
// spec's version may keep running; run true means the engine will Start it
// again. Idempotent.
type Adopter interface {
	Adopt(ctx context.Context, spec Spec, run bool) error
}

// Group is the set of running instances of one generation of a version.
type Group interface {
	// Instances reports the instances' addresses (host:port) and whether
	// each is currently up. Safe for concurrent use.
	Instances() []Instance
	// Stop stops every instance: SIGTERM to its process group, then SIGKILL
	// after grace. It stops restarting crashed instances. Idempotent.
	Stop(ctx context.Context, grace time.Duration) error
}

// Instance is one running process of a version.
type Instance struct {
	Addr     string `json:"addr"` // host:port the instance listens on
	Up       bool   `json:"up"`   // false while crashed and waiting to restart
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
}
