// Package render writes what sluice says on GitHub: the sticky pull-request
// comment and its entries (command outcomes, refusals, problems, help),
// service status tables, predictions, failure reports and Check Run output.
//
// Every function is pure: it turns values into markdown strings, with no I/O,
// clock, logging or GitHub client. Text a user reads comes from named
// reasons and structured values, never from err.Error(). Output sizes stay
// under GitHub's limits (MaxSticky, MaxCheckText); bot/redact hides secrets:
// callers redact every string that carries logs before posting it.
//
// It imports rollout, rollout/policy and bot/command for their types; it
// must not import go-github, echo, the store or the runtime drivers.
package render
