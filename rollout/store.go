package rollout

import "errors"

// ErrNotFound is returned by a Store when a service or version does not exist.
var ErrNotFound = errors.New("not found")

// Store persists services, versions and the history log. The engine is its
// only writer. Implementations must be safe for concurrent use; each method
// is atomic (all or nothing) and durable when it returns.
type Store interface {
	// Services returns every service record, sorted by name.
	Services() ([]Service, error)
	// Service returns one service record, or ErrNotFound.
	Service(name string) (Service, error)
	// Versions returns a service's versions in creation order; empty (not an
	// error) for an unknown service.
	Versions(service string) ([]Version, error)
	// Version returns one version, or ErrNotFound.
	Version(service, name string) (Version, error)
	// Commit writes svc (when not nil), every version in versions, and
	// appends events (assigning their Seq) in one transaction.
	Commit(svc *Service, versions []Version, events []Event) error
	// Events returns up to limit events of service (all services when ""),
	// with Seq greater than after, oldest first.
	Events(service string, after uint64, limit int) ([]Event, error)
	// LatestEvents returns the newest limit events of service (all
	// services when "") with Seq less than before (any when 0), oldest
	// first.
	LatestEvents(service string, before uint64, limit int) ([]Event, error)
	// DeleteVersion removes one version's record and appends events in
	// one transaction; ErrNotFound when there is no such version. Its name
	// is never given to another version (Service.NextSeq moves on).
	DeleteVersion(service, name string, events []Event) error
}
