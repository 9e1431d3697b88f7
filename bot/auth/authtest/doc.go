// Package authtest serves an OIDC issuer shaped like GitHub Actions' for
// tests: discovery and keys over real HTTP on loopback, signed with a key
// made for the test. Test support only: nothing but tests may import it.
// It imports no sluice package.
package authtest
