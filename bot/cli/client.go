package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/sluicehq/sluice/bot/remote"
	"github.com/sluicehq/sluice/rollout"
)

// Client calls a sluice server's /api/v1 through bot/remote, the one HTTP
// client of the API, as the CLI: changes are recorded with via "cli" and
// the local user name.
type Client struct {
	api *remote.Engine
}

func newClient(server, token string) *Client { return &Client{api: remote.New(server, token)} }

// do sends one request; see remote.Engine.Call.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, ctype string, out any) error {
	origin := &rollout.Origin{Via: "cli", Actor: os.Getenv("USER")}
	return c.api.Call(ctx, method, path, query, body, ctype, origin, out)
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
