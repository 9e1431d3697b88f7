package wire

// Headers a client sets to say who asks and from where; the server
// records them in the history log with every change (which of them it
// honours depends on the credential; see bot/api).
const (
	// HeaderVia is the front door: "cli", "action", "api".
	HeaderVia = "X-Sluice-Via"
	// HeaderActor is the person or system asking, e.g. a GitHub login.
	HeaderActor = "X-Sluice-Actor"
	// HeaderURL points at the comment, commit or workflow run.
	HeaderURL = "X-Sluice-Url"
	// HeaderRef is the commit SHA a change is for.
	HeaderRef = "X-Sluice-Ref"
	// HeaderRepo is the repository ("owner/name") a change comes from.
	HeaderRepo = "X-Sluice-Repo"
	// HeaderPR is the pull request number a change is for, in decimal.
	HeaderPR = "X-Sluice-Pr"
)

// Content types the API reads and writes.
const (
	// ContentJSON is every JSON body and answer.
	ContentJSON = "application/json"
	// ContentArchive is an uploaded source tree: a gzip-compressed tar.
	ContentArchive = "application/gzip"
)
