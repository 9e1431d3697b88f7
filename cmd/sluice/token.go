package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/cli"
)

// tokenCmd manages repository-scoped API tokens through the server's admin
// API, so it works while `serve` holds the store; --token is the admin token.
type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Create a token scoped to a repository; prints it once."`
	List   tokenListCmd   `cmd:"" help:"List tokens (never their text)."`
	Revoke tokenRevokeCmd `cmd:"" help:"Revoke a token by id, at once."`
}

type tokenCreateCmd struct {
	cli.ClientFlags
	Repo    string        `required:"" help:"GitHub repository OWNER/NAME the token may act on."`
	Service string        `help:"Narrow the token to this one service of the repository."`
	Expires time.Duration `default:"720h" help:"Lifetime of the token; 0 means it never expires."`
}

// Run creates the token and prints its text alone on stdout, so
// `$(sluice token create ...)` captures it; the details go to stderr.
func (c *tokenCreateCmd) Run(env *cli.Env) error {
	body := map[string]any{"repo": c.Repo, "expires": c.Expires.String()}
	if c.Service != "" {
		body["service"] = c.Service
	}
	var raw []byte
	if err := adminCall(env.Ctx, c.ClientFlags, http.MethodPost, "/tokens", body, &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var t api.TokenView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(os.Stderr, "token %s for %s, expires %s; it is shown only this once\n", t.ID, scopeOf(t), when(t.Expires, "never"))
	_, err := fmt.Fprintln(env.Stdout, t.Token)
	return err
}

type tokenListCmd struct {
	cli.ClientFlags
}

// Run prints one token per line: id, repo, service, created, expires, revoked.
func (c *tokenListCmd) Run(env *cli.Env) error {
	var raw []byte
	if err := adminCall(env.Ctx, c.ClientFlags, http.MethodGet, "/tokens", nil, &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var out struct {
		Tokens []api.TokenView `json:"tokens"`
	}
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

type tokenRevokeCmd struct {
	cli.ClientFlags
	ID string `arg:"" help:"Token id, as token list shows it."`
}

// Run revokes the token.
func (c *tokenRevokeCmd) Run(env *cli.Env) error {
	var raw []byte
	if err := adminCall(env.Ctx, c.ClientFlags, http.MethodDelete, "/tokens/"+url.PathEscape(c.ID), nil, &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := env.Stdout.Write(append(raw, '\n'))
		return err
	}
	var t api.TokenView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	_, err := fmt.Fprintf(env.Stdout, "revoked %s (%s) at %s\n", t.ID, scopeOf(t), when(t.Revoked, "-"))
	return err
}

func scopeOf(t api.TokenView) string {
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

// adminCall sends one JSON request to the server's /api/v1 with the admin
// token and puts the answer's body in out; an error answer becomes its
// one-line message.
func adminCall(ctx context.Context, f cli.ClientFlags, method, path string, body any, out *[]byte) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(f.Server, "/")+"/api/v1"+path, r)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.Token)
	}
	req.Header.Set(api.HeaderVia, "cli")
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the sluice server at %s: %v", f.Server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			return errors.New(eb.Error.Message)
		}
		return fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	*out = data
	return nil
}
