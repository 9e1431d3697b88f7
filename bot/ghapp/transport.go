package ghapp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
)

// Defaults of RetryPolicy.
const (
	DefaultMaxAttempts    = 5
	DefaultMaxWait        = 60 * time.Second
	DefaultBaseDelay      = 500 * time.Millisecond
	DefaultAttemptTimeout = 30 * time.Second
)

// RetryPolicy bounds the retries of idempotent reads (GET and HEAD) and the
// wait for any response. A zero field takes its default.
type RetryPolicy struct {
	// MaxAttempts is the number of tries of a read, the first included
	// (default DefaultMaxAttempts). Writes are always tried once.
	MaxAttempts int
	// MaxWait caps one wait between tries, including a wait asked for by
	// Retry-After or X-RateLimit-Reset (default DefaultMaxWait): a longer
	// hint is shortened to MaxWait, not skipped.
	MaxWait time.Duration
	// BaseDelay is the first backoff when the response gives no hint; it
	// doubles per try, with jitter, up to MaxWait (default DefaultBaseDelay).
	BaseDelay time.Duration
	// AttemptTimeout bounds the wait for a response's headers, for every
	// method (default DefaultAttemptTimeout). Reading the body is bounded
	// only by the caller's context, so large archives are not cut off.
	AttemptTimeout time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.MaxWait <= 0 {
		p.MaxWait = DefaultMaxWait
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = DefaultAttemptTimeout
	}
	return p
}

// backoff is the wait before try attempt+1 when the server gave no hint:
// BaseDelay doubled per try, between half and all of it, capped by MaxWait.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.BaseDelay << (attempt - 1)
	if d <= 0 || d > p.MaxWait {
		d = p.MaxWait
	}
	half := d / 2
	return half + rand.N(half+1)
}

// ErrAttemptTimeout is returned (wrapped) when GitHub sent no response
// headers within RetryPolicy.AttemptTimeout. Retryable reports it as
// retryable.
var ErrAttemptTimeout = errors.New("github sent no response in time")

// retryTransport retries idempotent reads; see RetryPolicy.
type retryTransport struct {
	next   http.RoundTripper
	policy RetryPolicy
	log    *slog.Logger
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	attempts := 1
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		attempts = t.policy.MaxAttempts
	}
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := t.try(r)
		if attempt >= attempts || ctx.Err() != nil {
			return resp, err
		}
		wait, retry := t.decide(resp, err, attempt)
		if !retry {
			return resp, err
		}
		if resp != nil {
			drain(resp.Body)
		}
		t.log.LogAttrs(ctx, slog.LevelDebug, "github retry",
			slog.String("method", req.Method), slog.String("path", req.URL.Path),
			slog.Int("attempt", attempt), slog.Duration("wait", wait))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// try sends one attempt, giving up on the response headers after
// AttemptTimeout; the attempt's context lives until the body is closed.
func (t *retryTransport) try(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.policy.AttemptTimeout, func() { cancel(ErrAttemptTimeout) })
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrAttemptTimeout) {
			err = &url.Error{Op: req.Method, URL: req.URL.Redacted(), Err: ErrAttemptTimeout}
		}
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// decide says whether and how long to wait before the next try.
func (t *retryTransport) decide(resp *http.Response, err error, attempt int) (time.Duration, bool) {
	if err != nil {
		var he *ghinstallation.HTTPError
		if errors.As(err, &he) && he.Response != nil {
			// Minting the installation token failed: judge its response.
			resp = he.Response
			drain(resp.Body)
		} else {
			return t.policy.backoff(attempt), retryableErr(err)
		}
	}
	if !retryableStatus(resp) {
		return 0, false
	}
	if d, ok := RetryAfter(resp, time.Now()); ok && d > 0 {
		return min(d, t.policy.MaxWait), true
	}
	return t.policy.backoff(attempt), true
}

// retryableStatus: 5xx but 501, 429, 408, and 403 with a rate-limit sign.
func retryableStatus(resp *http.Response) bool {
	switch c := resp.StatusCode; {
	case c == http.StatusNotImplemented:
		return false
	case c >= 500, c == http.StatusTooManyRequests, c == http.StatusRequestTimeout:
		return true
	case c == http.StatusForbidden:
		return resp.Header.Get(headerRateRemaining) == "0" || resp.Header.Get(headerRetryAfter) != ""
	}
	return false
}

func drain(b io.ReadCloser) {
	if b == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, b, 64<<10)
	_ = b.Close()
}

type cancelBody struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// logTransport writes one line per HTTP exchange: method, path, status,
// duration, remaining rate limit and GitHub's request id. It never logs a
// header value other than those two, a query string, or a body, so tokens
// (Authorization, the token in an archive redirect's query) stay out.
type logTransport struct {
	next http.RoundTripper
	log  *slog.Logger
}

func (t *logTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	attrs := []slog.Attr{
		slog.String("method", req.Method),
		slog.String("path", req.URL.Path),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		shown := err
		var ue *url.Error
		if errors.As(err, &ue) {
			shown = ue.Err // its message carries the URL with its query
		}
		attrs = append(attrs, slog.String("error", shown.Error()))
		t.log.LogAttrs(req.Context(), slog.LevelWarn, "github request failed", attrs...)
		return nil, err
	}
	attrs = append(attrs, slog.Int("status", resp.StatusCode))
	if v := resp.Header.Get(headerRateRemaining); v != "" {
		attrs = append(attrs, slog.String("rate_remaining", v))
	}
	if v := resp.Header.Get("X-GitHub-Request-Id"); v != "" {
		attrs = append(attrs, slog.String("request_id", v))
	}
	level := slog.LevelInfo
	if retryableStatus(resp) {
		level = slog.LevelWarn
	}
	t.log.LogAttrs(req.Context(), level, "github request", attrs...)
	return resp, nil
}
