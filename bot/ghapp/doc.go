// Package ghapp owns every connection sluice makes to GitHub's REST API: it
// is the only place a *github.Client is built. It authenticates as the App
// (a JWT signed with the App's private key), as one of its installations
// (an installation access token, minted on demand and cached per
// installation), or with a plain token (a workflow's GITHUB_TOKEN).
//
// Every client it builds shares one transport chain: a retrying
// RoundTripper for idempotent reads (5xx, network errors, timeouts, 429
// and rate-limited 403s, honouring Retry-After and X-RateLimit-Reset), the
// authentication RoundTripper, and a logging RoundTripper that writes one
// slog line per HTTP exchange and never a header value or token. Writes are
// not retried here; RetryAfter, ErrorRetryAfter and Retryable give the
// caller's persisted outbox what it needs to retry them. VerifySignature
// checks webhook deliveries.
//
// The REST base URL is used exactly as given (no "api/v3/" is appended),
// so a fake server at http://127.0.0.1:PORT/ is called as
// http://127.0.0.1:PORT/repos/...
//
// It imports go-github and ghinstallation and nothing of sluice; it must
// not import the engine (rollout), the store, echo, or the test-support
// package githubtest.
package ghapp
