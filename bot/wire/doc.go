// Package wire is the contract of sluice's JSON HTTP API under /api/v1,
// written once: the routes (method and path pattern), the X-Sluice-*
// headers a client sets to say who asks, the request bodies, the answers
// that are not plain rollout types, and the error body. The server
// (bot/api), the API client (bot/remote) and the CLI (bot/cli) all use it,
// so a field or a path changed here changes on both sides at once.
//
// Field names are snake_case, as the README documents them. Answers that
// are domain values (a service's status, a version, a prediction, an
// event) are the rollout types themselves.
//
// It imports rollout and the standard library only: no echo, no
// go-github, no store, no runtime driver, no router.
package wire
