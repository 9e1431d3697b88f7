// Package cli is the sluice command-line client: one command per API
// operation, each taking --server, --token and --json, printing a short
// human answer (or the API's JSON) and exiting non-zero with a one-line
// reason on failure (with --json, the API's error body; see ErrorJSON). It talks to a sluice server only over /api/v1; it
// must not import the store, the runtimes or the router's data path.
package cli
