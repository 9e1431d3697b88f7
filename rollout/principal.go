package rollout

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/names"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/rollout/policy"
)

// GitHub's rules: owners are alphanumerics and single inner hyphens (at
// most 39), repository names alphanumerics, '.', '_' and '-'.
var repoRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}$`)

// ValidRepo reports whether repo has the GitHub "owner/name" shape.
func ValidRepo(repo string) bool {
	if !repoRE.MatchString(repo) {
		return false
	}
	_, name, _ := strings.Cut(repo, "/")
	return name != "." && name != ".."
}

// Principal is who an operation acts for. Front doors set it on the
// Origin from what they verified (the API from the bearer token, the
// GitHub App from the webhook's repository); it is never read from what a
// client says about itself, and it is not persisted. The engine checks it
// before every operation that changes a service and refuses with a
// KindForbidden *Error, changing nothing. The zero Principal may change
// nothing at all.
type Principal struct {
	// Admin acts on every service, creates services and assigns them to
	// repositories (the admin token; sluice's own background work).
	Admin bool
	// Repo is the repository ("owner/name") a scoped caller acts for: it
	// may change only services that belong to Repo.
	Repo string
	// Service, when set, narrows a scoped caller to that one service.
	Service string
	// MayCreate lets a scoped caller create a service that does not exist
	// yet; the service then belongs to Repo. Only the GitHub App sets it,
	// for a repository it is installed on, and the engine creates the
	// service only when the deployed sluice.yaml declares it. Repository
	// tokens and OIDC tokens never create services.
	MayCreate bool
}

// AdminPrincipal acts on everything: the admin token, an API without
// credentials on loopback, and sluice's own background work.
var AdminPrincipal = Principal{Admin: true}

// ServicePrincipal is the principal that acts for a repository's own
// GitHub App delivery: it may change repo's services and create services
// its sluice.yaml declares.
func ServicePrincipal(repo string) Principal { return Principal{Repo: repo, MayCreate: true} }

// String names the principal in refusals.
func (p Principal) String() string {
	switch {
	case p.Admin:
		return "the admin"
	case p.Repo == "":
		return "an unidentified caller"
	case p.Service != "":
		return p.Repo + " (service " + p.Service + ")"
	}
	return p.Repo
}

// authorize decides whether p may run op on svc; exists is false when
// svc is about to be created. It returns nil or a KindForbidden *Error.
func authorize(p Principal, svc *Service, exists bool, op Operation) error {
	switch {
	case p.Admin:
		return nil
	case p.Repo == "":
		return forbidden("%s of %s refused: the caller acts for no repository", op, svc.Name)
	case p.Service != "" && p.Service != svc.Name:
		return forbidden("%s of %s refused: %s may act only on service %s", op, svc.Name, p, p.Service)
	case !exists && !p.MayCreate:
		return forbidden("service %s does not exist, and %s may not create services: the admin creates it "+
			"(a first deploy, or `sluice service set-repo %s %s`), or the GitHub App does for an installed repository whose sluice.yaml declares it",
			svc.Name, p, svc.Name, p.Repo)
	case !exists:
		return nil
	case svc.Repo == "":
		return forbidden("%s of %s refused: the service belongs to no repository, so only the admin may change it "+
			"(the admin can assign it: `sluice service set-repo %s OWNER/NAME`)", op, svc.Name, svc.Name)
	case svc.Repo != p.Repo:
		return forbidden("%s of %s refused: the service belongs to %s, not %s", op, svc.Name, svc.Repo, p.Repo)
	}
	return nil
}

// authorizeExisting loads service and authorizes op on it. A service that
// does not exist is not found, whoever asks.
func (e *Engine) authorizeExisting(service string, p Principal, op Operation) error {
	svc, err := e.store.Service(service)
	if isNotFound(err) {
		return notFound(ErrCodeUnknownService, "unknown service %q", service)
	}
	if err != nil {
		return fmt.Errorf("load service %s: %w", service, err)
	}
	return authorize(p, &svc, true, op)
}

// SetRepo assigns service to repo ("owner/name"), or to no repository
// when repo is "": from then on only the admin and principals of repo may
// change it. Only the admin may call it. A service that does not exist yet
// is created without versions, so that repo's tokens and workflows can
// deploy it. Assigning the repository it already has changes nothing.
func (e *Engine) SetRepo(ctx context.Context, service, repo string, origin Origin) (ServiceStatus, error) {
	if !origin.Principal.Admin {
		return ServiceStatus{}, forbidden("assigning %s to a repository needs the admin token; %s may not", service, origin.Principal)
	}
	if !names.ValidService(service) {
		return ServiceStatus{}, invalid(ErrCodeInvalidConfig, "%q is not a service name (lowercase letters, digits and inner hyphens)", service)
	}
	if repo != "" && !ValidRepo(repo) {
		return ServiceStatus{}, invalid(ErrCodeInvalidConfig, "repository must be OWNER/NAME, got %q", repo)
	}
	unlock := e.lock(service)
	defer unlock()
	svc, err := e.store.Service(service)
	if err != nil && !isNotFound(err) {
		return ServiceStatus{}, fmt.Errorf("load service %s: %w", service, err)
	}
	now := e.now().UTC()
	if isNotFound(err) {
		svc = Service{Name: service, NextSeq: 1, Policy: policy.Policy{Split: map[string]int{}}, CreatedAt: now}
	} else if svc.Repo == repo {
		return e.status(service)
	}
	from := svc.Repo
	svc.Repo = repo
	msg := fmt.Sprintf("%s now belongs to %s", service, orNone(repo))
	if from != "" {
		msg += " (was " + from + ")"
	}
	ev := Event{Time: now, Kind: EventServiceRepo, Service: service, Origin: origin, Op: OpSetRepo, Message: msg}
	if err := e.store.Commit(&svc, nil, []Event{ev}); err != nil {
		return ServiceStatus{}, fmt.Errorf("record repository of %s: %w", service, err)
	}
	if err := e.publish(); err != nil {
		e.log.Error("publish after set-repo", "err", err)
	}
	return e.status(service)
}

func orNone(repo string) string {
	if repo == "" {
		return "no repository (the admin only)"
	}
	return repo
}
