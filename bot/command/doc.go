// Package command is the grammar of sluice's pull-request comments: it turns
// a comment body into the commands it contains, in order, each either a
// valid Command or a Reply that says what is wrong and shows the usage.
//
// It owns the command names, their usages and help text, and the markdown
// rules that decide which lines are commands: one command per line, a line
// that starts with '/' and a known name; lines in fenced or indented code, in
// block quotes or in HTML comments are not commands, nor is anything that
// does not start the line (inline code, prose). Unknown /words (/lgtm, /cc,
// paths) are not sluice's and produce nothing.
//
// The package is pure: no I/O, no clock, no logging. It imports only the
// standard library and rollout/policy (for ParseMatch, so that /route
// accepts exactly the globs the router does); it must not import rollout,
// the store, go-github or any other front door. Running a command (checking
// permissions, calling the engine, replying) belongs to the caller.
package command
