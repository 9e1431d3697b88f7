package ghapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v60/github"
)

const (
	headerRetryAfter    = "Retry-After"
	headerRateRemaining = "X-RateLimit-Remaining"
	headerRateReset     = "X-RateLimit-Reset"
)

// secondaryLimitWait is GitHub's advice for a secondary rate limit that
// names no time: wait at least a minute.
const secondaryLimitWait = time.Minute

// RetryAfter reads how long GitHub asks the client to wait before trying
// again: Retry-After (seconds or an HTTP date) first, then, when
// X-RateLimit-Remaining is 0, the time until X-RateLimit-Reset (Unix
// seconds). A time already past gives 0. ok is false when resp is nil or
// carries no hint. It never reads the body.
func RetryAfter(resp *http.Response, now time.Time) (d time.Duration, ok bool) {
	if resp == nil {
		return 0, false
	}
	if v := strings.TrimSpace(resp.Header.Get(headerRetryAfter)); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if strings.TrimSpace(resp.Header.Get(headerRateRemaining)) == "0" {
		v := strings.TrimSpace(resp.Header.Get(headerRateReset))
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 {
			return max(time.Unix(secs, 0).Sub(now), 0), true
		}
	}
	return 0, false
}

// ErrorRetryAfter is RetryAfter for an error returned by a go-github call:
// it reads the hint from the error's response, from a *github.RateLimitError
// that go-github raised without a request (its Rate.Reset), or a secondary
// rate limit (*github.AbuseRateLimitError, at least a minute when GitHub
// names no time). ok is false when err carries no hint.
func ErrorRetryAfter(err error, now time.Time) (d time.Duration, ok bool) {
	var rle *github.RateLimitError
	if errors.As(err, &rle) {
		if d, ok := RetryAfter(rle.Response, now); ok {
			return d, true
		}
		if !rle.Rate.Reset.IsZero() {
			return max(rle.Rate.Reset.Sub(now), 0), true
		}
		return 0, false
	}
	var are *github.AbuseRateLimitError
	if errors.As(err, &are) {
		if are.RetryAfter != nil {
			return max(*are.RetryAfter, 0), true
		}
		if d, ok := RetryAfter(are.Response, now); ok {
			return d, true
		}
		return secondaryLimitWait, true
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) {
		return RetryAfter(er.Response, now)
	}
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) {
		return RetryAfter(he.Response, now)
	}
	return 0, false
}

// Retryable reports whether a failed GitHub call may succeed if sent again
// later: rate limits (*github.RateLimitError, *github.AbuseRateLimitError),
// 202 Accepted (*github.AcceptedError), 5xx (but 501), 429 and 408 answers,
// failed installation-token mints of those kinds, timeouts and network
// errors. Everything else — validation failures (422), 401, 403, 404, 409,
// a cancelled context, undecodable responses — is permanent. nil is not
// retryable.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var (
		rle *github.RateLimitError
		are *github.AbuseRateLimitError
		ae  *github.AcceptedError
	)
	if errors.As(err, &rle) || errors.As(err, &are) || errors.As(err, &ae) {
		return true
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return retryableStatus(er.Response)
	}
	var he *ghinstallation.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return retryableStatus(he.Response)
	}
	return retryableErr(err)
}

// retryableErr classifies transport-level errors.
func retryableErr(err error) bool {
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrAttemptTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// answer returns the HTTP response GitHub gave with err, or nil when err
// is not GitHub's answer (a network failure, an ended context, an error of
// sluice's own).
func answer(err error) *http.Response {
	var (
		er  *github.ErrorResponse
		he  *ghinstallation.HTTPError
		rle *github.RateLimitError
		are *github.AbuseRateLimitError
	)
	switch {
	case errors.As(err, &er):
		return er.Response
	case errors.As(err, &he):
		return he.Response
	case errors.As(err, &rle):
		return rle.Response
	case errors.As(err, &are):
		return are.Response
	}
	return nil
}

// Permanent reports whether err is an answer from GitHub that sending the
// request again will not change: a response Retryable rejects (4xx other
// than 408, 429 and rate limits; 501). Errors that carry no answer from
// GitHub — network failures, timeouts, an ended context, errors of
// sluice's own — are not permanent: the caller decides how long to retry
// them. It is the one rule the inbox and the outbox share.
func Permanent(err error) bool {
	return err != nil && answer(err) != nil && !Retryable(err)
}

// Describe says in one line, for a person, which request GitHub answered
// how ("GitHub answered 404 Not Found to GET /repos/o/r/pulls/1"), or ""
// when err is not an answer from GitHub. It names no credential: only the
// method, the URL path and the status.
func Describe(err error) string {
	resp := answer(err)
	if resp == nil {
		return ""
	}
	s := fmt.Sprintf("GitHub answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if req := resp.Request; req != nil && req.URL != nil {
		s += " to " + req.Method + " " + req.URL.Path
	}
	return s
}
