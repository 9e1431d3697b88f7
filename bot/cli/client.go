package cli

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
	"time"
)

// Client calls a sluice server's /api/v1.
type Client struct {
	Server string
	Token  string
	HTTP   *http.Client
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Problems are positioned manifest problems, when there are any.
	Problems []struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Column  int    `json:"column"`
		Field   string `json:"field"`
		Message string `json:"message"`
	}
}

func (e *APIError) Error() string { return e.Message }

// do sends one request; body may be nil, an io.Reader (sent as ctype) or a
// value sent as JSON. out, when not nil, receives the decoded JSON answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, ctype string, out any) error {
	u := strings.TrimRight(c.Server, "/") + "/api/v1" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r = b
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r, ctype = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("X-Sluice-Via", "cli")
	if u := os.Getenv("USER"); u != "" {
		req.Header.Set("X-Sluice-Actor", u)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the sluice server at %s: %v", c.Server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error APIError `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			eb.Error.Status = resp.StatusCode
			return &eb.Error
		}
		return &APIError{Status: resp.StatusCode, Code: "http_error",
			Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = data
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
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
