package command

import "strings"

// Name is a command's name as written after the slash. Names are
// case-sensitive and lowercase; they appear in comments, replies and logs.
type Name string

const (
	// NameDeploy deploys the pull request's head as a new version at 0%.
	NameDeploy Name = "deploy"
	// NameCanary deploys the head if it has no version yet, then gives that
	// version Percent of the split and the stable version the rest.
	NameCanary Name = "canary"
	// NameRoute adds a rule sending requests whose query matches Match to the
	// pull request's version.
	NameRoute Name = "route"
	// NameUnroute removes the pull request's rules.
	NameUnroute Name = "unroute"
	// NamePromote gives the pull request's version 100% and makes it stable.
	NamePromote Name = "promote"
	// NameRollback returns to the previous stable version, or to Version.
	NameRollback Name = "rollback"
	// NameAbort takes the pull request's version out of the split and rules.
	NameAbort Name = "abort"
	// NameRedeploy applies the pull request's sluice.yaml configuration in place
	// to the stable version.
	NameRedeploy Name = "redeploy"
	// NameStatus shows versions, statuses, URLs and traffic.
	NameStatus Name = "status"
	// NamePredict says which version a request with Query would reach.
	NamePredict Name = "predict"
	// NameHelp shows the usage of every command.
	NameHelp Name = "help"
)

// Command is one valid command. Fields a command does not take are zero.
type Command struct {
	Name Name
	// Service is the service named by the command; "" when omitted (the
	// caller then uses the manifest's only service). For /rollback it is ""
	// when omitted even if Version names a version.
	Service string
	// Percent is the canary's share of the split, 0..100 (/canary only).
	Percent int
	// Match maps a query key to a glob, as policy.ParseMatch returns it
	// (/route only, where it has at least one key).
	Match map[string]string
	// Query is the query string as given, without a leading '?' (/predict
	// only, where it is never empty).
	Query string
	// Version is the version to roll back to; "" means the previous stable
	// version (/rollback only).
	Version string
}

// Reply answers a command line that names a known command but is
// malformed. Problem is a sentence for a person saying what is wrong; Usage
// is that command's usage line (see Usage).
type Reply struct {
	Name    string
	Problem string
	Usage   string
}

// Result is the outcome of one command line: exactly one of Command and
// Reply is non-nil.
type Result struct {
	// Line is the 1-based line number in the comment.
	Line int
	// Raw is the line as written, without its line ending.
	Raw     string
	Command *Command
	Reply   *Reply
}

// spec describes one command: its usage, what it does and how its
// arguments are read. parse returns a problem sentence when args are wrong.
type spec struct {
	usage   string
	summary string
	parse   func(args []string) (Command, string)
}

// order is the order in which Names and Help list the commands.
var order = []Name{NameDeploy, NameCanary, NameRoute, NameUnroute, NamePromote, NameRollback, NameAbort, NameRedeploy, NameStatus, NamePredict, NameHelp}

var specs = map[Name]spec{
	NameDeploy:   {"/deploy [service]", "deploy the PR head as a new version at 0% and reply with its URL", serviceOnly},
	NameCanary:   {"/canary N% [service]", "deploy the PR head if it has no version yet, then send it N% of the traffic and the stable version the rest", parseCanary},
	NameRoute:    {"/route key=glob[&key=glob] [service]", "send requests whose URL query matches to the PR's version", parseRoute},
	NameUnroute:  {"/unroute [service]", "remove the PR's rules", serviceOnly},
	NamePromote:  {"/promote [service]", "give the PR's version 100% and make it the stable version", serviceOnly},
	NameRollback: {"/rollback [version] [service]", "go back to the previous stable version, or to the named one", parseRollback},
	NameAbort:    {"/abort [service]", "take the PR's version out of the split and the rules", serviceOnly},
	NameRedeploy: {"/redeploy [service]", "apply this PR's sluice.yaml configuration in place to the stable version", serviceOnly},
	NameStatus:   {"/status [service]", "show versions, statuses, URLs and traffic", serviceOnly},
	NamePredict:  {"/predict key=value&… [service]", "say which version a request with that query would reach", parsePredict},
	NameHelp:     {"/help", "show this list", parseHelp},
}

// Names returns every command name, in the order Help lists them. The
// caller owns the returned slice.
func Names() []Name { return append([]Name(nil), order...) }

// Known reports whether n is a command name.
func (n Name) Known() bool {
	_, ok := specs[n]
	return ok
}

// Usage returns n's one-line usage, e.g. "/canary N% [service]", or "" for
// an unknown name.
func Usage(n Name) string { return specs[n].usage }

// Help returns the usage of every command as a markdown list, followed by
// a note on [service].
func Help() string {
	var b strings.Builder
	for _, n := range order {
		s := specs[n]
		b.WriteString("- `" + s.usage + "` — " + s.summary + "\n")
	}
	b.WriteString("\n`[service]` may be left out when `sluice.yaml` declares a single service. " +
		"Write one command per line; several lines run in order.\n")
	return b.String()
}
