package wire

import (
	"time"

	"github.com/sluicehq/sluice/rollout"
)

// VersionView is a version with its URL, as deploy and redeploy answer.
type VersionView struct {
	rollout.Version
	URL string `json:"url"`
}

// ServiceList is the answer of ListServices.
type ServiceList struct {
	Services []rollout.ServiceStatus `json:"services"`
}

// EventList is a page of the history log, oldest first.
type EventList struct {
	Events []rollout.Event `json:"events"`
}

// Stopped names the version StopVersion stopped.
type Stopped struct {
	Stopped string `json:"stopped"`
}

// Deleted names the version DeleteVersion deleted.
type Deleted struct {
	Deleted string `json:"deleted"`
}

// Retired lists the versions Retire stopped; never null.
type Retired struct {
	Stopped []string `json:"stopped"`
}

// TokenView is a token as the API shows it: never its hash, and its text
// only in the answer to the request that created it. Zero Expires: never
// expires; zero Revoked: not revoked.
type TokenView struct {
	ID      string    `json:"id"`
	Repo    string    `json:"repo"`
	Service string    `json:"service,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	Token   string    `json:"token,omitempty"`
}

// TokenList is the answer of ListTokens.
type TokenList struct {
	Tokens []TokenView `json:"tokens"`
}

// Error is the body of every refusal: {"error": {...}}.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says why a request was refused. Code is a stable machine code
// (rollout's codes, "invalid_json", "unauthorized", ...); Message is for a
// person; Problems point at manifest lines when there are any.
type ErrorBody struct {
	Code     string            `json:"code"`
	Message  string            `json:"message"`
	Problems []rollout.Problem `json:"problems,omitempty"`
}
