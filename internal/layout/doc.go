// Package layout has no code: its test keeps sluice's package arrows
// pointing one way (cmd → bot → rollout ← store; rollout → its leaf
// packages, the router and the runtime interface; drivers chosen by cmd
// only). It asks `go list -deps` what each package really links and fails
// on a forbidden import, so a change that wants an arrow backwards is
// stopped in review rather than found later. It must import nothing.
package layout
