package auth

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// AllowEntry is one entry of the OIDC allow list: which repositories'
// workflows may call the API with an OIDC token. Owner and Repo are
// patterns in path.Match syntax, matched case-insensitively (GitHub names
// are); Repo "" means every repository of the owner. OwnerID and RepoID,
// when not zero, pin the numeric ids GitHub puts in the token
// (repository_owner_id, repository_id), so an owner or repository that is
// deleted and its name taken by someone else does not inherit access.
type AllowEntry struct {
	Owner   string
	OwnerID int64
	Repo    string
	RepoID  int64
}

// String renders the entry in the syntax ParseAllowEntry reads.
func (e AllowEntry) String() string {
	s := e.Owner
	if e.OwnerID != 0 {
		s += "@" + strconv.FormatInt(e.OwnerID, 10)
	}
	if e.Repo != "" {
		s += "/" + e.Repo
		if e.RepoID != 0 {
			s += "@" + strconv.FormatInt(e.RepoID, 10)
		}
	}
	return s
}

// ParseAllowEntry reads one --oidc-allow entry:
//
//	acme                 every repository owned by acme
//	acme/web             the repository acme/web
//	acme/web-*           acme's repositories whose name starts with "web-"
//	acme@1234            acme, and only while its repository_owner_id is 1234
//	acme@1234/web@5678   acme/web, pinned to both ids
//
// Patterns use path.Match syntax (*, ?, [...]); an owner pattern cannot
// be "*" alone, which would let every GitHub account in.
func ParseAllowEntry(s string) (AllowEntry, error) {
	s = strings.TrimSpace(s)
	owner, repo, hasRepo := strings.Cut(s, "/")
	var e AllowEntry
	var err error
	if e.Owner, e.OwnerID, err = allowPart(owner); err != nil {
		return AllowEntry{}, fmt.Errorf("--oidc-allow entry %q: owner: %w", s, err)
	}
	if strings.Trim(e.Owner, "*?") == "" {
		return AllowEntry{}, fmt.Errorf("--oidc-allow entry %q: the owner must be named: a bare wildcard would let every GitHub account in", s)
	}
	if hasRepo {
		if e.Repo, e.RepoID, err = allowPart(repo); err != nil {
			return AllowEntry{}, fmt.Errorf("--oidc-allow entry %q: repository: %w", s, err)
		}
	}
	return e, nil
}

// allowPart parses "pattern" or "pattern@id".
func allowPart(s string) (string, int64, error) {
	pat, id, hasID := strings.Cut(s, "@")
	if pat == "" || strings.ContainsAny(pat, "/ \t") {
		return "", 0, fmt.Errorf("want a name or a pattern, got %q", pat)
	}
	if _, err := path.Match(pat, ""); err != nil {
		return "", 0, fmt.Errorf("bad pattern %q: %w", pat, err)
	}
	if !hasID {
		return strings.ToLower(pat), 0, nil
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return "", 0, fmt.Errorf("the id after @ must be a positive number, got %q", id)
	}
	return strings.ToLower(pat), n, nil
}

// ParseAllowList reads --oidc-allow values; each may hold several entries
// separated by commas or spaces. Empty values are skipped.
func ParseAllowList(values []string) ([]AllowEntry, error) {
	var out []AllowEntry
	for _, v := range values {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
			e, err := ParseAllowEntry(f)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// repoClaims are the claims of an Actions ID token that say which
// repository's workflow minted it.
type repoClaims struct {
	Repository        string `json:"repository"`
	RepositoryID      string `json:"repository_id"`
	RepositoryOwner   string `json:"repository_owner"`
	RepositoryOwnerID string `json:"repository_owner_id"`
}

// allowed checks the token's repository claims against the allow list and
// returns nil, or an error wrapping ErrOIDCNotAllowed that names the
// claim that matched nothing.
func allowed(list []AllowEntry, c repoClaims) error {
	owner, name, _ := strings.Cut(strings.ToLower(c.Repository), "/")
	if claimOwner := strings.ToLower(c.RepositoryOwner); claimOwner != "" && claimOwner != owner {
		return fmt.Errorf("%w: repository_owner claim %q does not own repository claim %q", ErrOIDCNotAllowed, c.RepositoryOwner, c.Repository)
	}
	ownerSeen, repoSeen := false, false
	var pinned []string
	for _, e := range list {
		if ok, _ := path.Match(e.Owner, owner); !ok {
			continue
		}
		ownerSeen = true
		if e.Repo != "" {
			if ok, _ := path.Match(e.Repo, name); !ok {
				continue
			}
		}
		repoSeen = true
		if e.OwnerID != 0 && c.RepositoryOwnerID != strconv.FormatInt(e.OwnerID, 10) {
			pinned = append(pinned, fmt.Sprintf("repository_owner_id claim %q is not %d (entry %s)", c.RepositoryOwnerID, e.OwnerID, e))
			continue
		}
		if e.RepoID != 0 && c.RepositoryID != strconv.FormatInt(e.RepoID, 10) {
			pinned = append(pinned, fmt.Sprintf("repository_id claim %q is not %d (entry %s)", c.RepositoryID, e.RepoID, e))
			continue
		}
		return nil
	}
	switch {
	case !ownerSeen:
		return fmt.Errorf("%w: repository_owner claim %q matches no --oidc-allow entry", ErrOIDCNotAllowed, owner)
	case !repoSeen:
		return fmt.Errorf("%w: repository claim %q matches no --oidc-allow entry", ErrOIDCNotAllowed, c.Repository)
	}
	return fmt.Errorf("%w: %s", ErrOIDCNotAllowed, strings.Join(pinned, "; "))
}
