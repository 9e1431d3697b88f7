package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/bot/api"
	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/internal/enginetest"
	"github.com/sluicehq/sluice/rollout"
)

// newAPI serves the API over a real engine (bbolt, local runtime, router).
func newAPI(t *testing.T, opts ...api.Option) (*httptest.Server, *rollout.Engine) {
	t.Helper()
	eng := enginetest.New(t, t.TempDir()).Engine
	e := echo.New()
	api.Register(e, eng, opts...)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, eng
}

// tgz builds a tar.gz from name → content.
func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

type errBody struct {
	Error struct {
		Code     string            `json:"code"`
		Message  string            `json:"message"`
		Problems []rollout.Problem `json:"problems"`
	} `json:"error"`
}

func call(t *testing.T, srv *httptest.Server, method, path, ctype string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const goodManifest = "services:\n  web:\n    run: sleep 60\n    timeouts: {start: 1s}\n"

func TestBadInputGetsA4xxWithACodeAndMessage(t *testing.T) {
	t.Parallel()
	srv, eng := newAPI(t, api.WithMaxUpload(4096))
	// A service exists (its deploy fails: nothing listens), so the
	// service-level calls reach validation.
	code, b := call(t, srv, "POST", "/api/v1/services/web/versions", "application/gzip", tgz(t, map[string]string{"sluice.yaml": goodManifest}))
	if code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", code, b)
	}
	eng.Wait()
	big := bytes.Repeat([]byte("x"), 5000)
	for _, tc := range []struct {
		name, method, path, ctype string
		body                      []byte
		status                    int
		code, inMessage           string
	}{
		{"not gzip", "POST", "/api/v1/services/web/versions", "application/gzip", []byte("plain text"), 400, "invalid_source", ""},
		{"too large", "POST", "/api/v1/services/web/versions", "application/gzip", big, 413, "source_too_large", "4096"},
		{"empty upload", "POST", "/api/v1/services/web/versions", "application/gzip", nil, 400, "invalid_source", "empty"},
		{"escaping path", "POST", "/api/v1/services/web/versions", "application/gzip",
			tgz(t, map[string]string{"sluice.yaml": goodManifest, "../evil": "x"}), 400, "invalid_source", "evil"},
		{"no manifest", "POST", "/api/v1/services/web/versions", "application/gzip",
			tgz(t, map[string]string{"main.go": "package main"}), 400, "invalid_source", "sluice.yaml"},
		{"manifest unknown field", "POST", "/api/v1/services/web/versions", "application/gzip",
			tgz(t, map[string]string{"sluice.yaml": "services:\n  web:\n    run: x\n    replicas: 2\n"}), 400, "invalid_manifest", "sluice.yaml:4:5"},
		{"bad strategy", "POST", "/api/v1/services/web/versions?strategy=yolo", "application/gzip",
			tgz(t, map[string]string{"sluice.yaml": goodManifest}), 400, "invalid_config", "yolo"},
		{"split sum", "PUT", "/api/v1/services/web/policy", "application/json", []byte(`{"split":{"web-001":50}}`), 400, "invalid_policy", "sum"},
		{"split non-numeric", "PUT", "/api/v1/services/web/policy", "application/json", []byte(`{"split":{"web-001":"ten"}}`), 400, "invalid_json", ""},
		{"unknown json field", "PUT", "/api/v1/services/web/policy", "application/json", []byte(`{"splitt":{}}`), 400, "invalid_json", "splitt"},
		{"failed version", "PUT", "/api/v1/services/web/policy", "application/json", []byte(`{"split":{"web-001":100}}`), 409, "version_not_normal", "web-001"},
		{"unknown version", "PUT", "/api/v1/services/web/policy", "application/json", []byte(`{"split":{"web-404":100}}`), 404, "unknown_version", "web-404"},
		{"unknown service", "GET", "/api/v1/services/nope", "", nil, 404, "unknown_service", "nope"},
		{"empty rule", "POST", "/api/v1/services/web/rules", "application/json", []byte(`{"version":"web-001","query":"env"}`), 400, "invalid_rule", ""},
		{"bad glob", "POST", "/api/v1/services/web/rules", "application/json", []byte(`{"version":"web-001","match":{"env":"[x"}}`), 400, "invalid_rule", "glob"},
		{"promote without version", "POST", "/api/v1/services/web/promote", "application/json", []byte(`{}`), 400, "invalid_parameter", "version"},
		{"rollback nowhere", "POST", "/api/v1/services/web/rollback", "", nil, 409, "no_stable_version", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := eng.Status(context.Background(), "web")
			status, b := call(t, srv, tc.method, tc.path, tc.ctype, tc.body)
			var eb errBody
			if err := json.Unmarshal(b, &eb); err != nil {
				t.Fatalf("body is not a JSON error: %s", b)
			}
			if status != tc.status || eb.Error.Code != tc.code || eb.Error.Message == "" || !strings.Contains(eb.Error.Message, tc.inMessage) {
				t.Fatalf("got %d %+v, want %d %s mentioning %q", status, eb.Error, tc.status, tc.code, tc.inMessage)
			}
			eng.Wait()
			after, _ := eng.Status(context.Background(), "web")
			if len(after.Versions) != len(before.Versions) {
				t.Fatalf("versions changed: %d -> %d", len(before.Versions), len(after.Versions))
			}
		})
	}
}

func TestTokenGuardsTheAPIButNotHealthz(t *testing.T) {
	t.Parallel()
	srv, _ := newAPI(t, api.WithToken("s3cret"))
	if code, _ := call(t, srv, "GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret"}} {
		code, b := call(t, srv, "GET", "/api/v1/services", "", nil, h...)
		if code != 401 || !strings.Contains(string(b), "unauthorized") {
			t.Fatalf("%v: %d %s", h, code, b)
		}
	}
	if code, b := call(t, srv, "GET", "/api/v1/services", "", nil, "Authorization", "Bearer s3cret"); code != 200 {
		t.Fatalf("right token: %d %s", code, b)
	}
}

func TestOriginHeadersAreRecorded(t *testing.T) {
	t.Parallel()
	srv, eng := newAPI(t)
	code, b := call(t, srv, "POST", "/api/v1/services/web/versions", "application/gzip", tgz(t, map[string]string{"sluice.yaml": goodManifest}),
		wire.HeaderVia, "action", wire.HeaderActor, "octocat", wire.HeaderURL, "https://github.com/acme/web/actions/runs/1")
	if code != 202 {
		t.Fatalf("%d %s", code, b)
	}
	eng.Wait()
	evs, err := eng.Events(context.Background(), "web", 0, 10)
	if err != nil || len(evs) == 0 {
		t.Fatal(err)
	}
	if o := evs[0].Origin; o.Via != "action" || o.Actor != "octocat" || !strings.HasSuffix(o.URL, "/runs/1") {
		t.Fatalf("origin: %+v", o)
	}
}
