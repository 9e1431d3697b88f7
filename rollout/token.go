package rollout

import "time"

// Token is what is kept of one API access token: who it is for and
// when it lapses, and the SHA-256 of its text, never the text.
type Token struct {
	// ID names the token in listings and revocation; it is not secret.
	ID string `json:"id"`
	// Hash is the SHA-256 of the whole token text. It is stored beside the
	// record, not inside its JSON, so encoding a Token never shows it.
	Hash [32]byte `json:"-"`
	// Repo is the GitHub repository ("owner/name") the token may act on.
	Repo string `json:"repo"`
	// Service, when set, narrows the token to that one service of Repo.
	Service string    `json:"service,omitempty"`
	Created time.Time `json:"created"`
	// Expires is when the token stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Revoked is when the token was revoked; zero means it was not.
	Revoked time.Time `json:"revoked,omitzero"`
}
