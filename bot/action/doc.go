// Package action is the GitHub Action's step: `sluice action`, run by the
// composite action.yml at the repository root, reads its inputs from the
// INPUT_* variables the action maps and the runner's GITHUB_* variables,
// and works in one of two modes.
//
// Deploy mode packs the workflow's source directory, deploys it through the
// sluice API (with the run as the origin), waits for the outcome, moves a
// canary's share of the traffic, and reports through the runner's files:
// outputs (version, url, status), a step summary, and ::error lines with
// the failure reason.
//
// Event mode hands the workflow's event ($GITHUB_EVENT_NAME and the payload
// at $GITHUB_EVENT_PATH) to the very bot the GitHub App runs, over the
// engine of a remote sluice server (bot/remote) and GitHub clients built on
// the workflow's token: one code path, two transports.
//
// The package owns input validation, the runner's file and workflow-command
// formats, the ID-token request for OIDC, and the mapping of outcomes to an
// exit code. Its caller (cmd/sluice) opens the journal event mode needs. It
// imports bot, bot/ghapp, bot/remote and rollout; it must not import the
// store, the runtime drivers or the router's data path.
package action
