// Package api is the JSON HTTP API under /api/v1, a front door of the
// engine used by the sluice CLI and the GitHub Action. Handlers are
// adapters: decode, guard, call one engine method, encode. Its routes,
// headers, bodies and error body are bot/wire's, shared with the clients.
// Errors leave as {"error": {"code": "...", "message": "..."}} with a 4xx
// status for bad input and nothing changed. It imports rollout, bot/wire
// (and echo); it must not import the store, the runtime drivers, or the
// router.
package api
