// Package redact hides secrets in text that leaves sluice: check runs,
// PR comments, the dashboard and the logs a scoped API token reads. It
// knows what a secret looks like (the configured ones, env values by name
// or by shape, credentials inside URLs) and nothing of where text goes.
//
// It imports nothing of sluice.
package redact
