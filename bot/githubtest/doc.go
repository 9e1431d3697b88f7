// Package githubtest is test support for code that talks to GitHub: a
// strict, stateful fake of the GitHub REST API, signed webhook deliveries
// built from the fixtures in testdata/github, and RSA keys made at test time.
//
// The fake (NewServer) answers exactly the 22 operations of the OpenAPI
// subset in testdata/github/openapi (copied with its attribution README
// from GitHub's published description). Every request is validated against that description
// with kin-openapi; a request that does not conform, or that hits any
// other route or method, fails the test (t.Errorf) and gets 404 or 422.
// Authentication is checked as GitHub does — an App JWT on /app endpoints
// and the repository-installation lookup, an installation token (or the
// plain token given with WithToken) elsewhere — and a missing or wrong
// credential gets 401 without failing the test, because a client must
// cope with that answer.
//
// The fake keeps a small model the test sets up (repositories, commits
// with their files, branches, pull requests, permissions) and records what
// clients create (check runs, comments, reactions, deployments and their
// statuses) and every request, so tests assert on outcomes. Faults (an
// error status, rate-limit headers, a delay) are injected per request.
// Beyond the description, a check run create or update must carry a
// non-empty "name" (go-github always sends the field, so an update built
// without it would blank the run's name).
//
// Some GitHub rules are kept on purpose because production code must obey
// them: creating a deployment without "required_contexts" fails with 409
// while a check run on the commit is not successful; check run
// annotations are appended across updates; a successful deployment status
// marks older successful non-production deployments of the same
// environment inactive unless "auto_inactive" is false; a check run or
// deployment on an unknown commit gets 422; a reaction or comment edit on
// an unknown comment gets 404. A tarball request answers 302 to
// /_tarballs/... on the same server, which serves the commit's files under
// "Owner-Repo-<sha7>/" with a pax header naming the SHA, as GitHub does.
//
// It imports go-github only through its tests, kin-openapi, and nothing of
// sluice; production code must not import it.
package githubtest
