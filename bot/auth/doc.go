// Package auth decides who calls the sluice API: the admin token, a
// repository-scoped sluice token, or a GitHub Actions OIDC ID token. It owns
// the token format ("sluice_" + 32 random bytes, base64url), token issuing
// and revocation, and the OIDC checks (issuer, audience = the server's
// public URL, signature, times, the repository claims against the
// operator's allow list), with the issuer's keys fetched at most once per
// JWKSRefetchInterval.
//
// What a Principal may then touch is the API's business, not this
// package's. auth imports rollout for the Token record its Store interface
// exchanges and for ErrNotFound (*store.DB satisfies the interface; cmd
// wires them, and a test there guards it); it must not import the store,
// echo, the API, the engine's drivers or go-github.
package auth
