package ghapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
)

func response(status int, headers ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	cases := []struct {
		name   string
		resp   *http.Response
		want   time.Duration
		wantOK bool
	}{
		{"nil response", nil, 0, false},
		{"no hint", response(502), 0, false},
		{"Retry-After seconds", response(429, "Retry-After", "7"), 7 * time.Second, true},
		{"Retry-After zero", response(429, "Retry-After", "0"), 0, true},
		{"Retry-After date", response(503, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), 90 * time.Second, true},
		{"Retry-After date passed", response(503, "Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)), 0, true},
		{"rate limit reset", response(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(42*time.Second)), 42 * time.Second, true},
		{"rate limit reset passed", response(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(-time.Minute)), 0, true},
		{"reset while requests remain", response(200, "X-RateLimit-Remaining", "12", "X-RateLimit-Reset", unix(time.Hour)), 0, false},
		{"Retry-After wins over reset", response(403, "Retry-After", "3", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(time.Hour)), 3 * time.Second, true},
		{"garbage Retry-After falls back to reset", response(403, "Retry-After", "soon", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", unix(5*time.Second)), 5 * time.Second, true},
		{"garbage reset", response(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "later"), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ghapp.RetryAfter(tc.resp, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestErrorRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	ten := 10 * time.Second
	cases := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"primary limit known before sending", &github.RateLimitError{
			Rate: github.Rate{Reset: github.Timestamp{Time: now.Add(time.Minute)}}, Response: response(403)}, time.Minute, true},
		{"primary limit from headers", &github.RateLimitError{Response: response(403,
			"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(now.Add(ten).Unix(), 10))}, ten, true},
		{"secondary limit with Retry-After", &github.AbuseRateLimitError{RetryAfter: &ten, Response: response(403)}, ten, true},
		{"secondary limit naming no time", &github.AbuseRateLimitError{Response: response(403)}, time.Minute, true},
		{"wrapped 503 with Retry-After", fmt.Errorf("create comment: %w", &github.ErrorResponse{Response: response(503, "Retry-After", "2")}), 2 * time.Second, true},
		{"422", &github.ErrorResponse{Response: response(422)}, 0, false},
		{"token mint throttled", &ghinstallation.HTTPError{Response: response(429, "Retry-After", "4")}, 4 * time.Second, true},
		{"plain error", errors.New("boom"), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ghapp.ErrorRetryAfter(tc.err, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("ErrorRetryAfter = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	errResp := func(status int, headers ...string) error {
		return &github.ErrorResponse{Response: response(status, headers...), Message: http.StatusText(status)}
	}
	dialErr := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	var v any
	syntaxErr := json.Unmarshal([]byte("{"), &v)
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"primary rate limit", &github.RateLimitError{Response: response(403)}, true},
		{"secondary rate limit", &github.AbuseRateLimitError{Response: response(403)}, true},
		{"202 accepted", &github.AcceptedError{}, true},
		{"500", errResp(500), true},
		{"502 wrapped", fmt.Errorf("update check run: %w", errResp(502)), true},
		{"503", errResp(503), true},
		{"501 not implemented", errResp(501), false},
		{"429", errResp(429), true},
		{"403 with Retry-After", errResp(403, "Retry-After", "60"), true},
		{"403 forbidden", errResp(403), false},
		{"401", errResp(401), false},
		{"404", errResp(404), false},
		{"409 conflict", errResp(409), false},
		{"422 validation", errResp(422), false},
		{"token mint 502", &ghinstallation.HTTPError{Response: response(502)}, true},
		{"token mint 401", &ghinstallation.HTTPError{Response: response(401)}, false},
		{"token mint unreachable", &ghinstallation.HTTPError{RootCause: dialErr}, true},
		{"connection refused", dialErr, true},
		{"attempt timeout", &url.Error{Op: "Get", URL: "u", Err: ghapp.ErrAttemptTimeout}, true},
		{"deadline", fmt.Errorf("get pull: %w", context.DeadlineExceeded), true},
		{"cancelled", &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, false},
		{"undecodable body", fmt.Errorf("decode pull: %w", syntaxErr), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ghapp.Retryable(tc.err); got != tc.want {
				t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// The inbox and the outbox share one rule: GitHub's own 4xx answers (but
// 408, 429 and rate limits) are final; everything that is not an answer
// from GitHub is for the caller to retry.
func TestPermanent(t *testing.T) {
	errResp := func(status int, headers ...string) error {
		return &github.ErrorResponse{Response: response(status, headers...), Message: http.StatusText(status)}
	}
	dialErr := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"404 wrapped", fmt.Errorf("read permission: %w", errResp(404)), true},
		{"403 forbidden", errResp(403), true},
		{"422 validation", errResp(422), true},
		{"401", errResp(401), true},
		{"token mint 404", &ghinstallation.HTTPError{Response: response(404)}, true},
		{"408", errResp(408), false},
		{"429", errResp(429), false},
		{"403 rate limited", errResp(403, "X-RateLimit-Remaining", "0"), false},
		{"primary rate limit", &github.RateLimitError{Response: response(403)}, false},
		{"secondary rate limit", &github.AbuseRateLimitError{Response: response(403)}, false},
		{"502", errResp(502), false},
		{"connection refused", dialErr, false},
		{"cancelled", &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, false},
		{"not GitHub's", errors.New("disk full"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ghapp.Permanent(tc.err); got != tc.want {
				t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestDescribeNamesRequestAndStatusOnly(t *testing.T) {
	req, _ := http.NewRequest("GET", "https://api.github.com/repos/o/r/collaborators/x/permission?token=hunter2", nil)
	resp := response(404)
	resp.Request = req
	err := fmt.Errorf("read permission: %w", &github.ErrorResponse{Response: resp, Message: "Not Found"})
	if got, want := ghapp.Describe(err), "GitHub answered 404 Not Found to GET /repos/o/r/collaborators/x/permission"; got != want {
		t.Fatalf("Describe = %q, want %q", got, want)
	}
	if got := ghapp.Describe(errors.New("disk full")); got != "" {
		t.Fatalf("Describe of a local error = %q", got)
	}
}
