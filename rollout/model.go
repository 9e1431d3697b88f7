package rollout

import (
	"github.com/sluicehq/sluice/rollout/reason"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// Status is a version's lifecycle state. Persisted and shown to users.
type Status string

const (
	// StatusCreating: the version's source is being built and its instances
	// started for the first time.
	StatusCreating Status = "creating"
	// StatusNormal: the version's instances are healthy and it may take traffic.
	StatusNormal Status = "normal"
	// StatusFailed: the first deploy failed; Reason says why. Nothing runs.
	StatusFailed Status = "failed"
	// StatusUpdating: an in-place redeploy is starting new instances beside
	// the old ones, which keep serving the recorded configuration.
	StatusUpdating Status = "updating"
	// StatusDeployFailed: the last in-place redeploy failed; Reason says why.
	// The old instances keep serving the recorded (old) configuration.
	StatusDeployFailed Status = "deploy-failed"
	// StatusStopped: retired; nothing runs, the configuration is kept so the
	// version can be started again (rollback does so).
	StatusStopped Status = "stopped"
)

// Serving reports whether a version in this status has healthy instances
// running its recorded configuration. Only serving versions may appear in a
// traffic policy: an in-place redeploy that is running or failed leaves the
// version serving exactly what it served before, so it counts as normal.
func (s Status) Serving() bool {
	return s == StatusNormal || s == StatusUpdating || s == StatusDeployFailed
}

// Reason explains a failure status: a stable machine code, what happened
// (with the relevant log tail) and what the user should do next. The zero
// Reason means no failure. Codes are package reason's.
type Reason struct {
	Code       reason.Code `json:"code"`
	Detail     string      `json:"detail"`
	Suggestion string      `json:"suggestion"`
}

// Config is the recorded, immutable configuration of one generation of a
// version: what runs and how it is checked.
type Config struct {
	Build        string            `json:"build,omitempty"`
	Run          string            `json:"run"`
	Health       string            `json:"health"`
	Env          map[string]string `json:"env"`
	Instances    int               `json:"instances"`
	BuildTimeout Duration          `json:"build_timeout,omitempty"`
	StartTimeout Duration          `json:"start_timeout,omitempty"`
	OnMerge      string            `json:"on_merge,omitempty"`
	// Sticky and MaxBodyBytes are the service's router settings; the
	// stable version's apply (see Engine.publish).
	Sticky       bool  `json:"sticky,omitempty"`
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// Canary is the automatic canary plan from sluice.yaml; nil when none.
	Canary *CanaryPlan `json:"canary,omitempty"`
	// Kubernetes is the placement on the kubernetes runtime (sluice.yaml's
	// kubernetes block); nil when none.
	Kubernetes *KubePlacement `json:"kubernetes,omitempty"`
	// Commit is the commit SHA the generation's source came from ("" for an
	// upload); runtimes that run images name the image after it.
	Commit string `json:"commit,omitempty"`
}

// KubePlacement is where and from which image a version runs on the
// kubernetes runtime.
type KubePlacement struct {
	// Image is a template executed with {{.SHA}}, {{.Version}}, {{.Service}}.
	Image string `json:"image"`
	// Namespace is "" for the runtime's default.
	Namespace string `json:"namespace,omitempty"`
}

// CanaryPlan moves traffic to a new version in steps (percentages, the
// last 100), one step per Interval while the version's 5xx rate and p99
// latency stay within bounds (0: not checked); otherwise the canary is
// aborted and the stable version gets all traffic back.
type CanaryPlan struct {
	Steps        []int    `json:"steps"`
	Interval     Duration `json:"interval"`
	MaxErrorRate float64  `json:"max_error_rate,omitempty"`
	MaxP99       Duration `json:"max_p99,omitempty"`
}

// Origin says who or what asked for a change, and from where. It is
// recorded with every version and event.
type Origin struct {
	// Via is the front door (one of the Via constants).
	Via Via `json:"via"`
	// Actor is the person or system, e.g. a GitHub login or a local user name.
	Actor string `json:"actor,omitempty"`
	// URL points at the comment, commit or workflow run, when there is one.
	URL string `json:"url,omitempty"`
	// Ref is the source reference: a commit SHA or "upload".
	Ref string `json:"ref,omitempty"`
	// PR is the pull request number, when the change came from one.
	PR int `json:"pr,omitempty"`
	// Repo is the GitHub repository ("owner/name") the change came from.
	Repo string `json:"repo,omitempty"`
	// Installation is the GitHub App installation that delivered it.
	Installation int64 `json:"installation,omitempty"`
	// Principal is who the change acts for, checked by the engine before
	// it changes anything; set by the front door that verified it, never
	// persisted (see Principal).
	Principal Principal `json:"-"`
}

// Via names the front door a change came through. Persisted and shown to
// users (history, check runs). A client of the API may name its own
// front door (the CLI sends ViaCLI, the GitHub Action ViaAction); the
// values below are the ones sluice's own front doors write.
type Via string

const (
	// ViaCLI: the sluice command-line client.
	ViaCLI Via = "cli"
	// ViaAPI: the HTTP API, called without naming a front door.
	ViaAPI Via = "api"
	// ViaComment: a command in a pull request comment.
	ViaComment Via = "comment"
	// ViaMerge: a push to the default branch.
	ViaMerge Via = "merge"
	// ViaAction: the GitHub Action (a deploy step or its event mode).
	ViaAction Via = "action"
	// ViaPullRequest: a pull request event (closing a PR aborts its
	// versions).
	ViaPullRequest Via = "pull_request"
	// ViaCheckRun: "Re-run" on a sluice check run (check_run.rerequested).
	ViaCheckRun Via = "check_run"
	// ViaSluice: sluice itself (recovery after a restart, retirement,
	// automatic canary steps).
	ViaSluice Via = "sluice"
)

// Version is one immutable deployment of a service. Name is
// "<service>-NNN", increasing and never reused.
type Version struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	Seq     int    `json:"seq"`
	Status  Status `json:"status"`
	Reason  Reason `json:"reason"`
	// Config is the configuration the running instances serve. An in-place
	// redeploy replaces it only once the new instances are healthy.
	Config Config `json:"config"`
	// Generation numbers Config: 1 for the first deploy, +1 per successful
	// or attempted in-place redeploy.
	Generation int `json:"generation"`
	// Pending is the configuration an in-place redeploy is trying (status
	// updating), kept so a restart can report it; nil otherwise.
	Pending  *Config  `json:"pending,omitempty"`
	Strategy Strategy `json:"strategy"`
	// AutoCanary: the version follows its Config.Canary plan once normal
	// (set by a deploy that asks for it, e.g. on_merge: canary); cleared
	// when the plan ends, by promotion or abort.
	AutoCanary bool `json:"auto_canary,omitempty"`
	// Digest identifies the source tree (see source.Digest), so a merge
	// whose tree a version already serves need not be built again.
	Digest    string    `json:"digest,omitempty"`
	CreatedBy Origin    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// IdleSince is when the version last left the policy (no weight, no
	// rule); zero while it is in the policy or has never been in one.
	IdleSince time.Time `json:"idle_since,omitzero"`
}

// Strategy is what a successful deploy does to traffic.
type Strategy string

const (
	// StrategyFull: on success the split becomes {new: 100}.
	StrategyFull Strategy = "full"
	// StrategyCanary: on success traffic is untouched; the user sets it.
	StrategyCanary Strategy = "canary"
)

// Service is the persisted record of one service.
type Service struct {
	Name string `json:"name"`
	// NextSeq is the sequence number the next version gets.
	NextSeq int           `json:"next_seq"`
	Policy  policy.Policy `json:"policy"`
	// Stables lists, oldest first, the versions that held 100% of the split;
	// the last one is the stable version. Rollback to the previous stable
	// truncates the list, so repeated rollbacks walk back in time.
	Stables []string `json:"stables"`
	Sticky  bool     `json:"sticky,omitempty"`
	// Repo is the GitHub repository ("owner/name") the service belongs to,
	// set by its first deploy that names one; "" for a service deployed only
	// from local sources. Scoped API tokens act only on their repo's services.
	Repo      string    `json:"repo,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Stable returns the stable version's name, or "" when no version has held
// 100% yet.
func (s *Service) Stable() string {
	if len(s.Stables) == 0 {
		return ""
	}
	return s.Stables[len(s.Stables)-1]
}

// EventKind names what an event records. Persisted.
type EventKind string

const (
	// EventVersionCreated: a deploy created a version (status creating).
	EventVersionCreated EventKind = "version.created"
	// EventVersionStatus: a version's status changed.
	EventVersionStatus EventKind = "version.status"
	// EventVersionConfig: an in-place redeploy replaced a version's config.
	EventVersionConfig EventKind = "version.config"
	// EventVersionStep: a deploy finished a step (Message: "built"); the
	// version itself is unchanged. Front doors show progress from it.
	EventVersionStep EventKind = "version.step"
	// EventPolicy: a service's traffic policy changed.
	EventPolicy EventKind = "policy.changed"
	// EventVersionDeleted: a failed version's record was deleted; its
	// events stay in the log.
	EventVersionDeleted EventKind = "version.deleted"
	// EventServiceRepo: the admin assigned the service to a repository
	// (or to none).
	EventServiceRepo EventKind = "service.repo"
)

// Operation names the operation that caused an event. Persisted and shown
// in the history.
type Operation string

const (
	// OpDeploy: a deploy created a version, built or started it.
	OpDeploy Operation = "deploy"
	// OpTraffic: the split (and/or rules) was replaced.
	OpTraffic Operation = "traffic"
	// OpRoute: a rule was added or removed.
	OpRoute Operation = "route"
	// OpUnroute: rules were cleared.
	OpUnroute Operation = "unroute"
	// OpPromote: a version took 100% and became stable.
	OpPromote Operation = "promote"
	// OpRollback: the split went back to a previous stable or named version.
	OpRollback Operation = "rollback"
	// OpRedeploy: an in-place redeploy of a version.
	OpRedeploy Operation = "redeploy"
	// OpAbort: a canary left the split and rules.
	OpAbort Operation = "abort"
	// OpCanary: an automatic canary moved a step, finished or was aborted.
	OpCanary Operation = "canary"
	// OpRetire: an idle version was stopped, keeping its configuration.
	OpRetire Operation = "retire"
	// OpStop: a version was stopped on request.
	OpStop Operation = "stop"
	// OpStart: a stopped version was started again.
	OpStart Operation = "start"
	// OpDelete: a failed version's record was deleted.
	OpDelete Operation = "delete"
	// OpRecover: a restart settled a version left mid-operation.
	OpRecover Operation = "recover"
	// OpSetRepo: the admin assigned a service to a repository.
	OpSetRepo Operation = "set-repo"
)

// Event is one entry of the append-only history log.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    EventKind `json:"kind"`
	Service string    `json:"service"`
	Version string    `json:"version,omitempty"`
	Origin  Origin    `json:"origin"`
	// Op is the operation that caused the event.
	Op      Operation      `json:"op"`
	Message string         `json:"message"`
	Status  Status         `json:"status,omitempty"`
	Reason  *Reason        `json:"reason,omitempty"`
	Policy  *policy.Policy `json:"policy,omitempty"`
}
