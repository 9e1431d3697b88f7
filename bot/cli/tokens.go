package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
)

// TokenCmd (sluice token create|list|revoke) manages repository-scoped API tokens through the server's admin
// API, so it works while `serve` holds the store; --token is the admin token.
type TokenCmd struct {
	Create TokenCreateCmd `cmd:"" help:"Create a token scoped to a repository; prints it once."`
	List   TokenListCmd   `cmd:"" help:"List tokens (never their text)."`
	Revoke TokenRevokeCmd `cmd:"" help:"Revoke a token by id, at once."`
}

// TokenCreateCmd: sluice token create --repo OWNER/NAME [--service S] [--expires D]
type TokenCreateCmd struct {
	ClientFlags
	Repo    string        `required:"" help:"GitHub repository OWNER/NAME the token may act on."`
	Service string        `help:"Narrow the token to this one service of the repository."`
	Expires time.Duration `default:"720h" help:"Lifetime of the token; 0 means it never expires."`
}

// Run creates the token and prints its text alone on stdout, so
// `$(sluice token create ...)` captures it; the details go to stderr.
func (c *TokenCreateCmd) Run(env *Env) error {
	expires := rollout.Duration(c.Expires)
	body := wire.TokenBody{Repo: c.Repo, Service: c.Service, Expires: &expires}
	var raw []byte
	if err := c.client().do(env.Ctx, wire.CreateToken, nil, nil, body, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var t wire.TokenView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if env.Stderr != nil {
		fmt.Fprintf(env.Stderr, "token %s for %s, expires %s; it is shown only this once\n", t.ID, scopeOf(t), when(t.Expires, "never"))
	}
	_, err := fmt.Fprintln(env.Stdout, t.Token)
	return err
}

// TokenListCmd: sluice token list
type TokenListCmd struct {
	ClientFlags
}

// Run prints one token per line: id, repo, service, created, expires, revoked.
func (c *TokenListCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.ListTokens, nil, nil, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var out wire.TokenList
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tREPO\tSERVICE\tCREATED\tEXPIRES\tREVOKED")
	for _, t := range out.Tokens {
		svc := t.Service
		if svc == "" {
			svc = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Repo, svc, when(t.Created, "-"), when(t.Expires, "never"), when(t.Revoked, "-"))
	}
	return w.Flush()
}

// TokenRevokeCmd: sluice token revoke ID
type TokenRevokeCmd struct {
	ClientFlags
	ID string `arg:"" help:"Token id, as token list shows it."`
}

// Run revokes the token.
func (c *TokenRevokeCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.RevokeToken, []string{c.ID}, nil, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var t wire.TokenView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	_, err := fmt.Fprintf(env.Stdout, "revoked %s (%s) at %s\n", t.ID, scopeOf(t), when(t.Revoked, "-"))
	return err
}

func scopeOf(t wire.TokenView) string {
	if t.Service != "" {
		return t.Repo + " service " + t.Service
	}
	return t.Repo
}

func when(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}
