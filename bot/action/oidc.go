package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrNoIDToken: the runner offers no ID token, because the job lacks
// `permissions: id-token: write`.
var ErrNoIDToken = errors.New("oidc is true but the runner offers no ID token (ACTIONS_ID_TOKEN_REQUEST_URL is not set): give the job `permissions: id-token: write`")

// maxIDTokenAnswer bounds the runner's answer.
const maxIDTokenAnswer = 1 << 20

// RequestIDToken asks the runner for a GitHub Actions OIDC ID token whose
// audience is audience (the sluice server's URL): GET the request URL with
// &audience=..., bearer the request token, answer {"value": "<JWT>"}.
func RequestIDToken(ctx context.Context, hc *http.Client, r Runner, audience string) (string, error) {
	if r.IDTokenURL == "" || r.IDTokenToken == "" {
		return "", ErrNoIDToken
	}
	u, err := url.Parse(r.IDTokenURL)
	if err != nil {
		return "", fmt.Errorf("parse ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("build ID token request: %w", err)
	}
	req.Header.Set("Authorization", "bearer "+r.IDTokenToken)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("request an ID token from the runner: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIDTokenAnswer))
	if err != nil {
		return "", fmt.Errorf("read the runner's ID token answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the runner refused an ID token (%s): %s", resp.Status, firstLine(string(data)))
	}
	var body struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(data, &body); err != nil || strings.TrimSpace(body.Value) == "" {
		return "", fmt.Errorf("the runner's ID token answer has no value")
	}
	return strings.TrimSpace(body.Value), nil
}
