package githubtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FixturesDir returns the GitHub fixtures directory kept in the repository,
// bot/githubtest/testdata/github under the module root (the nearest directory
// above the working directory that holds go.mod), so a fresh clone tests with
// nothing beside it. It fails the test if there is none.
func FixturesDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("githubtest: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("githubtest: no go.mod above the working directory")
		}
		dir = parent
	}
	fx := filepath.Join(dir, "bot", "githubtest", "testdata", "github")
	if _, err := os.Stat(filepath.Join(fx, "README.md")); err != nil {
		t.Fatalf("githubtest: GitHub fixtures not found in the repository: %v", err)
	}
	return fx
}

// Fixture returns webhook payload name (for example
// "issue_comment.created.pull_request.json"; ".json" may be left off) from
// the fixtures' webhooks directory, dated today: every timestamp in it
// (RFC 3339 strings, and the Unix seconds of a push's repository) is moved
// forward by the same amount, so that the payload's events, recorded
// upstream in May 2019, happened when the test binary first read a
// fixture. A receiver ignores events older than its replay horizon; the
// rest of the bytes are the file's own.
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	if !strings.HasSuffix(name, ".json") {
		name += ".json"
	}
	b, err := os.ReadFile(filepath.Join(FixturesDir(t), "webhooks", filepath.Base(name)))
	if err != nil {
		t.Fatalf("githubtest: read fixture: %v", err)
	}
	return shiftTimes(b, fixtureShift())
}

// fixtureShift is the amount every fixture's times move by: fixed at the
// first call, so that a fixture read twice is the same body (a replay is
// byte for byte the original).
var fixtureShift = sync.OnceValue(func() time.Duration {
	return time.Now().UTC().Truncate(time.Second).Sub(fixtureEpoch)
})

// fixtureEpoch is when the webhook fixtures' events happened upstream (the
// newest event time among them: check_run.rerequested's completed_at).
// Fixture moves it to the present.
var fixtureEpoch = time.Date(2019, 5, 15, 15, 21, 45, 0, time.UTC)

var (
	rfc3339Field = regexp.MustCompile(`"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)"`)
	unixField    = regexp.MustCompile(`("(?:created|updated|pushed)_at":\s*)(\d{9,10})\b`)
)

// shiftTimes moves every timestamp in a JSON payload by d, keeping every
// other byte.
func shiftTimes(body []byte, d time.Duration) []byte {
	body = rfc3339Field.ReplaceAllFunc(body, func(m []byte) []byte {
		at, err := time.Parse(time.RFC3339, string(m[1:len(m)-1]))
		if err != nil {
			return m
		}
		return []byte(`"` + at.Add(d).Format(time.RFC3339) + `"`)
	})
	return unixField.ReplaceAllFunc(body, func(m []byte) []byte {
		sub := unixField.FindSubmatch(m)
		secs, err := strconv.ParseInt(string(sub[2]), 10, 64)
		if err != nil {
			return m
		}
		return append(append([]byte{}, sub[1]...), strconv.FormatInt(time.Unix(secs, 0).Add(d).Unix(), 10)...)
	})
}

// Sign returns the X-Hub-Signature-256 value of body: "sha256=<hex>".
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DeliveryOption changes a delivery built by Delivery.
type DeliveryOption func(*http.Request)

// WithDeliveryID sets X-GitHub-Delivery (default: a random UUID), to
// replay a delivery.
func WithDeliveryID(id string) DeliveryOption {
	return func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", id) }
}

// WithHeader sets (or, with an empty value, removes) a header after
// signing, for example to drop or corrupt the signature.
func WithHeader(name, value string) DeliveryOption {
	return func(r *http.Request) {
		if value == "" {
			r.Header.Del(name)
			return
		}
		r.Header.Set(name, value)
	}
}

// Delivery builds a webhook delivery of event ("issue_comment", "push",
// ...) with body, POSTed to url and signed with secret as GitHub does:
// X-Hub-Signature-256, X-GitHub-Event, X-GitHub-Delivery, Content-Type,
// the hook target headers of an App webhook and GitHub's User-Agent.
func Delivery(t testing.TB, url, event string, body, secret []byte, opts ...DeliveryOption) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("githubtest: build delivery: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/githubtest")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", newUUID())
	req.Header.Set("X-GitHub-Hook-ID", "1")
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
	for _, opt := range opts {
		opt(req)
	}
	return req
}

func newUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("githubtest: read random bytes: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// GenerateKey makes an RSA key for an App and returns it with its PEM
// (PKCS#1, "RSA PRIVATE KEY", as GitHub hands them out).
func GenerateKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("githubtest: generate key: %v", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

var (
	sharedOnce sync.Once
	sharedKey  *rsa.PrivateKey
	sharedPEM  []byte
)

// SharedKey is GenerateKey done once per test binary: every caller gets
// the same key. Generating an RSA key takes up to a second on a loaded
// machine, and tests that each start a fake GitHub of their own need no
// key unlike another test's; a test about a foreign key uses GenerateKey.
// Safe for concurrent use.
func SharedKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	sharedOnce.Do(func() { sharedKey, sharedPEM = GenerateKey(t) })
	return sharedKey, sharedPEM
}
