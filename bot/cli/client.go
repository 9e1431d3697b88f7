package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bot/remote"
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

// do sends one request; see remote.Engine.Call. Errors a user can fix
// from the command line say how.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, ctype string, out any) error {
	if c.bad != nil {
		return c.bad
	}
	origin := &rollout.Origin{Via: "cli", Actor: os.Getenv("USER")}
	err := c.api.Call(ctx, method, path, query, body, ctype, origin, out)
	switch {
	case errors.Is(err, remote.ErrRouter):
		return &codedError{"router_port", fmt.Errorf("%s is sluice's router port, which serves the services, not the API: point --server (SLUICE_SERVER) at the address serve's --listen names (by default http://127.0.0.1:8080)", c.server)}
	case errors.Is(err, remote.ErrRefused) && !c.token:
		return &codedError{"token_required", fmt.Errorf("%w; the server at %s needs a token: pass --token TOKEN or set SLUICE_TOKEN (the admin token, or one from `sluice token create`)", err, c.server)}
	}
	return err
}

func pathf(format string, parts ...string) string {
	args := make([]any, len(parts))
	for i, p := range parts {
		args[i] = url.PathEscape(p)
	}
	return fmt.Sprintf(format, args...)
}

// waitVersion polls a version until its status is not one of busy, and
// returns its last state.
func (c *Client) waitVersion(ctx context.Context, service, version string, timeout time.Duration, busy ...string) (versionJSON, error) {
	deadline := time.Now().Add(timeout)
	for {
		var v versionJSON
		if err := c.do(ctx, http.MethodGet, pathf("/services/%s/versions/%s", service, version), nil, nil, "", &v); err != nil {
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

// versionJSON is the subset of a version the CLI reads.
type versionJSON struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	Status  string `json:"status"`
	URL     string `json:"url"`
	Traffic int    `json:"traffic"`
	Rules   []int  `json:"rules"`
	Reason  struct {
		Code       string `json:"code"`
		Detail     string `json:"detail"`
		Suggestion string `json:"suggestion"`
	} `json:"reason"`
}

type statusJSON struct {
	Name     string        `json:"name"`
	URL      string        `json:"url"`
	Stable   string        `json:"stable"`
	Versions []versionJSON `json:"versions"`
	Policy   struct {
		Rules []struct {
			Version string            `json:"version"`
			Match   map[string]string `json:"match"`
		} `json:"rules"`
		Split map[string]int `json:"split"`
	} `json:"policy"`
}
