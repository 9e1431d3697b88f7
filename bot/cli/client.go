package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bot/remote"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
)

// Client calls a sluice server's /api/v1 through bot/remote, the one HTTP
// client of the API, as the CLI: changes are recorded with via "cli" and
// the local user name.
type Client struct {
	api    *remote.Engine
	server string
	token  bool
	bad    error // a --server that cannot work, said on the first call
}

func newClient(server, token string) *Client {
	return &Client{api: remote.New(server, token), server: server, token: token != "", bad: checkServer(server)}
}

// checkServer says what is wrong with a --server value, or nil.
func checkServer(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		guess := "http://" + strings.TrimPrefix(server, "//")
		return &codedError{"invalid_server", fmt.Errorf("--server %q is not a URL: give the scheme too, e.g. --server %s (or SLUICE_SERVER)", server, guess)}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &codedError{"invalid_server", fmt.Errorf("--server %q: the scheme must be http or https", server)}
	}
	return nil
}

// do sends one request for route r with its path parameters; see
// remote.Engine.Call. Errors a user can fix from the command line say how.
func (c *Client) do(ctx context.Context, r wire.Route, params []string, query url.Values, body any, ctype string, out any) error {
	if c.bad != nil {
		return c.bad
	}
	origin := &rollout.Origin{Via: rollout.ViaCLI, Actor: os.Getenv("USER")}
	err := c.api.Call(ctx, r, params, query, body, ctype, origin, out)
	switch {
	case errors.Is(err, remote.ErrRouter):
		return &codedError{"router_port", fmt.Errorf("%s is sluice's router port, which serves the services, not the API: point --server (SLUICE_SERVER) at the address serve's --listen names (by default http://127.0.0.1:8080)", c.server)}
	case errors.Is(err, remote.ErrRefused) && !c.token:
		return &codedError{"token_required", fmt.Errorf("%w; the server at %s needs a token: pass --token TOKEN or set SLUICE_TOKEN (the admin token, or one from `sluice token create`)", err, c.server)}
	}
	return err
}

// waitVersion polls a version until its status is not one of busy, and
// returns its last state.
func (c *Client) waitVersion(ctx context.Context, service, version string, timeout time.Duration, busy ...rollout.Status) (rollout.VersionStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		var v rollout.VersionStatus
		if err := c.do(ctx, wire.GetVersion, []string{service, version}, nil, nil, "", &v); err != nil {
			return v, err
		}
		done := true
		for _, b := range busy {
			if v.Status == b {
				done = false
			}
		}
		if done {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("%s is still %s after %s", version, v.Status, timeout)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
