package ghapp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
)

const (
	repo    = "Codertocat/Hello-World"
	owner   = "Codertocat"
	name    = "Hello-World"
	appID   = 29310
	headSHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
)

// appKey is one App key for the test binary: RSA generation is slow.
func appKey(t *testing.T) (*rsa.PrivateKey, []byte) { return githubtest.SharedKey(t) }

// logBuffer collects slog JSON lines from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the decoded log records with message msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// fastRetry keeps retries quick; tests that measure waits set MaxWait.
var fastRetry = ghapp.RetryPolicy{BaseDelay: 5 * time.Millisecond, MaxWait: 100 * time.Millisecond, AttemptTimeout: 2 * time.Second}

type env struct {
	s    *githubtest.Server
	f    *ghapp.Factory
	logs *logBuffer
}

func setup(t *testing.T, retry ghapp.RetryPolicy) env {
	key, pemKey := appKey(t)
	s := githubtest.NewServer(t, githubtest.WithAppKey(&key.PublicKey, appID), githubtest.WithToken("workflow-token"))
	s.AddRepo(repo, githubtest.RepoOpts{DefaultBranch: "main", InstallationID: 1})
	s.AddRepo("octo/other", githubtest.RepoOpts{InstallationID: 2})
	s.SetCommit(repo, headSHA, map[string]string{"sluice.yaml": "services: {}\n"})
	s.SetBranch(repo, "main", headSHA)
	s.SetPR(repo, 1, headSHA, "changes")
	logs := &logBuffer{}
	f, err := ghapp.New(ghapp.Config{
		AppID:      appID,
		PrivateKey: pemKey,
		APIURL:     s.URL(),
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Retry:      retry,
	})
	if err != nil {
		t.Fatal(err)
	}
	return env{s: s, f: f, logs: logs}
}

// count returns how many recorded requests had operation op.
func count(s *githubtest.Server, op string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Operation == op {
			n++
		}
	}
	return n
}

func TestAppClientSendsJWT(t *testing.T) {
	e := setup(t, fastRetry)
	app, _, err := e.f.App().Apps.Get(context.Background(), "")
	if err != nil {
		t.Fatalf("GET /app: %v", err)
	}
	if app.GetSlug() != githubtest.DefaultAppSlug {
		t.Errorf("slug = %q", app.GetSlug())
	}
	inst, _, err := e.f.App().Apps.FindRepositoryInstallation(context.Background(), owner, name)
	if err != nil || inst.GetID() != 1 {
		t.Errorf("repository installation = %d, %v; want 1", inst.GetID(), err)
	}
	reqs := e.s.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/app" || !strings.HasPrefix(reqs[0].Authorization, "Bearer ey") {
		t.Errorf("requests = %+v, want GET /app with a JWT", reqs)
	}
}

func TestInstallationTokenMintedOnceAndShared(t *testing.T) {
	e := setup(t, fastRetry)
	if first, second := e.f.Installation(1), e.f.Installation(1); first != second {
		t.Error("Installation(1) built two clients")
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := e.f.Installation(1).PullRequests.Get(ctx, owner, name, 1)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.f.Installation(2).Repositories.GetPermissionLevel(ctx, "octo", "other", "alice"); err != nil {
		t.Fatal(err)
	}
	var mints []string
	auth := map[string]bool{}
	for _, r := range e.s.Requests() {
		switch r.Operation {
		case "apps/create-installation-access-token":
			mints = append(mints, r.Path)
			if !strings.HasPrefix(r.Authorization, "Bearer ey") {
				t.Errorf("token minted without a JWT: %q", r.Authorization)
			}
		case "pulls/get":
			auth[r.Authorization] = true
		}
	}
	want := []string{"/app/installations/1/access_tokens", "/app/installations/2/access_tokens"}
	if strings.Join(mints, " ") != strings.Join(want, " ") {
		t.Errorf("mints = %v, want one per installation %v", mints, want)
	}
	if len(auth) != 1 {
		t.Errorf("8 reads used %d credentials, want 1", len(auth))
	}
	for a := range auth {
		if !strings.HasPrefix(a, "token ghs_") {
			t.Errorf("reads sent %q, want an installation token", a)
		}
	}
}

func TestReadsAreRetried(t *testing.T) {
	cases := []struct {
		name     string
		fails    int
		status   int
		headers  map[string]string
		wantErr  bool
		attempts int
	}{
		{"502 twice", 2, 502, nil, false, 3},
		{"503 with Retry-After", 1, 503, map[string]string{"Retry-After": "0"}, false, 2},
		{"429 with Retry-After capped by MaxWait", 1, 429, map[string]string{"Retry-After": "30"}, false, 2},
		{"secondary limit 403", 1, 403, map[string]string{"Retry-After": "1"}, false, 2},
		{"502 until attempts run out", 5, 502, nil, true, 5},
		{"404 is final", 1, 404, nil, true, 1},
		{"501 is final", 1, 501, nil, true, 1},
		{"plain 403 is final", 1, 403, nil, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, fastRetry)
			c := e.f.Installation(1)
			ctx := context.Background()
			// Mint the token first so the faults hit the read.
			if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
				t.Fatal(err)
			}
			e.s.FailRoute("GET", "/repos/", tc.fails, tc.status, tc.headers)
			start := time.Now()
			pr, resp, err := c.PullRequests.Get(ctx, owner, name, 1)
			elapsed := time.Since(start)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && pr.GetHead().GetSHA() != headSHA {
				t.Errorf("head = %q", pr.GetHead().GetSHA())
			}
			if tc.wantErr && resp.StatusCode != tc.status {
				t.Errorf("final status = %d, want %d", resp.StatusCode, tc.status)
			}
			if got := count(e.s, "pulls/get") - 1; got != tc.attempts {
				t.Errorf("attempts = %d, want %d", got, tc.attempts)
			}
			if elapsed > time.Second {
				t.Errorf("took %v: waits not capped by MaxWait", elapsed)
			}
		})
	}
}

func TestRateLimitResetIsHonoured(t *testing.T) {
	e := setup(t, ghapp.RetryPolicy{BaseDelay: time.Millisecond, MaxWait: 3 * time.Second})
	c := e.f.Installation(1)
	ctx := context.Background()
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Fatal(err)
	}
	reset := time.Now().Add(1500 * time.Millisecond).Unix()
	e.s.FailNext(1, http.StatusForbidden, map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(reset),
	})
	minWait := time.Until(time.Unix(reset, 0))
	start := time.Now()
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Fatalf("read after the reset: %v", err)
	}
	if elapsed := time.Since(start); elapsed < minWait-50*time.Millisecond {
		t.Errorf("retried after %v, before the reset (%v away)", elapsed, minWait)
	}
	if got := count(e.s, "pulls/get"); got != 3 {
		t.Errorf("pulls/get sent %d times, want 3", got)
	}
}

func TestWritesAreNotRetried(t *testing.T) {
	reset := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name      string
		status    int
		headers   map[string]string
		retryable bool
		hint      bool
	}{
		{"502", 502, nil, true, false},
		{"rate limited", 403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(reset)}, true, true},
		{"secondary limit", 403, map[string]string{"Retry-After": "20"}, true, true},
		{"validation failed", 422, nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, fastRetry)
			e.s.AddComment(repo, 1, githubtest.Comment{ID: 492700400, User: owner, Body: "/canary 10%"})
			c := e.f.Installation(1)
			ctx := context.Background()
			e.s.FailRoute("POST", "/repos/", 1, tc.status, tc.headers)
			_, _, err := c.Reactions.CreateIssueCommentReaction(ctx, owner, name, 492700400, "eyes")
			if err == nil {
				t.Fatal("the write did not fail")
			}
			if got := count(e.s, "reactions/create-for-issue-comment"); got != 1 {
				t.Errorf("write sent %d times, want 1", got)
			}
			if got := ghapp.Retryable(err); got != tc.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.retryable)
			}
			if _, ok := ghapp.ErrorRetryAfter(err, time.Now()); ok != tc.hint {
				t.Errorf("ErrorRetryAfter ok = %v, want %v", ok, tc.hint)
			}
			if n := len(e.s.Reactions(492700400)); n != 0 {
				t.Errorf("%d reactions stored", n)
			}
		})
	}
}

func TestTimeoutsAreRetriedThenReported(t *testing.T) {
	e := setup(t, ghapp.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, AttemptTimeout: 100 * time.Millisecond})
	c := e.f.Installation(1)
	ctx := context.Background()
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Fatal(err)
	}
	e.s.Delay(time.Second)
	start := time.Now()
	_, _, err := c.PullRequests.Get(ctx, owner, name, 1)
	if !errors.Is(err, ghapp.ErrAttemptTimeout) || !ghapp.Retryable(err) {
		t.Fatalf("err = %v, want a retryable attempt timeout", err)
	}
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond || elapsed > 900*time.Millisecond {
		t.Errorf("two attempts took %v, want about 200ms", elapsed)
	}
	e.s.Delay(0)
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Errorf("read after the delay: %v", err)
	}
}

func TestLogsNeverCarryTokens(t *testing.T) {
	e := setup(t, fastRetry)
	c := e.f.Installation(1)
	ctx := context.Background()
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Fatal(err)
	}
	loc, _, err := c.Repositories.GetArchiveLink(ctx, owner, name, github.Tarball, &github.RepositoryContentGetOptions{Ref: headSHA}, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Client().Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tarball download: %s", resp.Status)
	}
	if _, _, err := e.f.App().Apps.Get(ctx, ""); err != nil {
		t.Fatal(err)
	}
	e.s.FailNext(1, 502, nil)
	if _, _, err := c.PullRequests.Get(ctx, owner, name, 1); err != nil {
		t.Fatal(err)
	}

	logged := e.logs.String()
	reqs := e.s.Requests()
	secrets := []string{loc.Query().Get("token")}
	for _, r := range reqs {
		if _, cred, ok := strings.Cut(r.Authorization, " "); ok {
			secrets = append(secrets, cred)
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("found only %d credentials to look for", len(secrets))
	}
	for _, sec := range secrets {
		if sec == "" || strings.Contains(logged, sec) {
			t.Errorf("log carries a credential %.12q…", sec)
		}
	}
	if strings.Contains(strings.ToLower(logged), "authorization") {
		t.Error("log mentions the Authorization header")
	}
	lines := e.logs.lines(t, "github request")
	if len(lines) != len(reqs) {
		t.Errorf("%d log lines for %d HTTP exchanges, want one each", len(lines), len(reqs))
	}
	for i, l := range lines {
		if l["method"] == nil || l["path"] == nil || l["status"] == nil || l["duration"] == nil || l["rate_remaining"] == nil {
			t.Errorf("line %d lacks a field: %v", i, l)
		}
	}
	if len(e.logs.lines(t, "github retry")) != 1 {
		t.Errorf("want one retry line:\n%s", logged)
	}
}

func TestTokenClient(t *testing.T) {
	e := setup(t, fastRetry)
	logs := &logBuffer{}
	c := ghapp.TokenClient(e.s.URL(), "workflow-token",
		ghapp.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), ghapp.WithRetry(fastRetry))
	e.s.FailNext(1, 502, nil)
	perm, _, err := c.Repositories.GetPermissionLevel(context.Background(), owner, name, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if perm.GetPermission() != "read" {
		t.Errorf("permission = %q", perm.GetPermission())
	}
	reqs := e.s.Requests()
	if len(reqs) != 2 || reqs[1].Authorization != "Bearer workflow-token" {
		t.Errorf("requests = %+v, want a retried read with the workflow token", reqs)
	}
	if strings.Contains(logs.String(), "workflow-token") || len(logs.lines(t, "github request")) != 2 {
		t.Errorf("logs:\n%s", logs.String())
	}

	bad := ghapp.TokenClient("ftp://example.com", "t")
	if _, _, err := bad.Repositories.Get(context.Background(), owner, name); err == nil || !strings.Contains(err.Error(), "api url") {
		t.Errorf("client of a bad URL: %v, want the parse error", err)
	}
}

func TestParseAPIURL(t *testing.T) {
	cases := []struct {
		in, want string
		wantErr  bool
	}{
		{"", "https://api.github.com/", false},
		{"https://api.github.com", "https://api.github.com/", false},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/", false},
		{"https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3/", false},
		{"https://ghe.example.com/", "https://ghe.example.com/", false}, // no api/v3 appended
		{"ftp://example.com/", "", true},
		{"/relative/", "", true},
		{"http://%zz", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ghapp.ParseAPIURL(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && u.String() != tc.want {
				t.Errorf("= %s, want %s", u, tc.want)
			}
		})
	}
}

func TestClientURLs(t *testing.T) {
	_, pemKey := appKey(t)
	cases := []struct{ api, base, upload string }{
		{"", "https://api.github.com/", "https://uploads.github.com/"},
		{"https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3/", "https://ghe.example.com/api/uploads/"},
		{"http://127.0.0.1:9/", "http://127.0.0.1:9/", "http://127.0.0.1:9/"},
	}
	for _, tc := range cases {
		f, err := ghapp.New(ghapp.Config{AppID: appID, PrivateKey: pemKey, APIURL: tc.api})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*github.Client{f.App(), f.Installation(1), ghapp.TokenClient(tc.api, "t")} {
			if c.BaseURL.String() != tc.base || c.UploadURL.String() != tc.upload {
				t.Errorf("%q: base %s upload %s, want %s %s", tc.api, c.BaseURL, c.UploadURL, tc.base, tc.upload)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, pemKey := appKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	rsaKey, _ := appKey(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	cases := []struct {
		name string
		cfg  ghapp.Config
		want error
		ok   bool
	}{
		{"valid PKCS#1", ghapp.Config{AppID: 1, PrivateKey: pemKey}, nil, true},
		{"valid PKCS#8", ghapp.Config{AppID: 1, PrivateKey: pkcs8PEM}, nil, true},
		{"no app id", ghapp.Config{PrivateKey: pemKey}, ghapp.ErrNoAppID, false},
		{"no key", ghapp.Config{AppID: 1}, ghapp.ErrBadPrivateKey, false},
		{"not PEM", ghapp.Config{AppID: 1, PrivateKey: []byte("ssh-rsa AAAA")}, ghapp.ErrBadPrivateKey, false},
		{"EC key", ghapp.Config{AppID: 1, PrivateKey: ecPEM}, ghapp.ErrBadPrivateKey, false},
		{"bad URL", ghapp.Config{AppID: 1, PrivateKey: pemKey, APIURL: "ftp://x/"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ghapp.New(tc.cfg)
			if tc.ok != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("New = %v, %v; want ok %v, error %v", f, err, tc.ok, tc.want)
			}
		})
	}
}

func TestLoggedErrorsHideQueryStrings(t *testing.T) {
	logs := &logBuffer{}
	// Port 1 on loopback refuses connections.
	c := ghapp.TokenClient("http://127.0.0.1:1/", "secret-token",
		ghapp.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))),
		ghapp.WithRetry(ghapp.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}))
	u, _ := url.Parse("http://127.0.0.1:1/_tarballs/x?token=archive-secret")
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client().Do(req)
	if err == nil || !ghapp.Retryable(err) {
		t.Fatalf("err = %v, want a retryable connection error", err)
	}
	if got := len(logs.lines(t, "github request failed")); got != 2 {
		t.Errorf("%d failure lines, want 2 (one per attempt)", got)
	}
	if s := logs.String(); strings.Contains(s, "archive-secret") || strings.Contains(s, "secret-token") {
		t.Errorf("log leaks a secret:\n%s", s)
	}
}
