package action

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
)

func env(kv ...string) (func(string) string, []string) {
	m := map[string]string{}
	var environ []string
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
		environ = append(environ, kv[i]+"="+kv[i+1])
	}
	return func(k string) string { return m[k] }, environ
}

func TestParseInputs(t *testing.T) {
	base := []string{"INPUT_SERVER", "https://sluice.example.com/", "INPUT_TOKEN", "sluice_x"}
	for _, tc := range []struct {
		name string
		kv   []string
		want Inputs
		err  string // the whole message
	}{
		{"defaults", nil, Inputs{Server: "https://sluice.example.com", Token: "sluice_x", Source: ".", Strategy: rollout.StrategyFull,
			Traffic: -1, Wait: true, Timeout: DefaultTimeout, Mode: ModeDeploy}, ""},
		{"canary with traffic", []string{"INPUT_STRATEGY", "canary", "INPUT_TRAFFIC", " 10% ", "INPUT_TIMEOUT", "90s", "INPUT_SERVICE", "web", "INPUT_SOURCE", "app"},
			Inputs{Server: "https://sluice.example.com", Token: "sluice_x", Service: "web", Source: "app", Strategy: rollout.StrategyCanary,
				Traffic: 10, Wait: true, Timeout: 90 * time.Second, Mode: ModeDeploy}, ""},
		{"oidc", []string{"INPUT_TOKEN", "", "INPUT_OIDC", "TRUE", "INPUT_WAIT", "false"},
			Inputs{Server: "https://sluice.example.com", OIDC: true, Source: ".", Strategy: rollout.StrategyFull, Traffic: -1, Timeout: DefaultTimeout, Mode: ModeDeploy}, ""},
		{"event", []string{"INPUT_MODE", "event", "INPUT_GITHUB_TOKEN", "ghs_x"},
			Inputs{Server: "https://sluice.example.com", Token: "sluice_x", Wait: true, Timeout: DefaultTimeout, Mode: ModeEvent, GitHubToken: "ghs_x"}, ""},
		{"a runner that keeps '-' in INPUT_ names", []string{"INPUT_GITHUB-TOKEN", "ghs_x"},
			Inputs{Server: "https://sluice.example.com", Token: "sluice_x", Source: ".", Strategy: rollout.StrategyFull, Traffic: -1, Wait: true, Timeout: DefaultTimeout, Mode: ModeDeploy}, ""},
		{"unknown strategy", []string{"INPUT_STRATEGY", "blue"}, Inputs{}, `input "strategy" must be full or canary, got "blue"`},
		{"unknown input", []string{"INPUT_COLOUR", "blue"}, Inputs{}, `input "colour" is not an input of this action (it takes server, token, oidc, service, source, strategy, traffic, wait, timeout, mode, github-token)`},
		{"no server", []string{"INPUT_SERVER", ""}, Inputs{}, `input "server" is required: the URL of the sluice server, e.g. https://sluice.example.com`},
		{"server with a query", []string{"INPUT_SERVER", "https://s.example.com/?x=1"}, Inputs{}, `input "server" must be an http or https URL such as https://sluice.example.com, got "https://s.example.com/?x=1"`},
		{"ftp server", []string{"INPUT_SERVER", "ftp://s.example.com"}, Inputs{}, `input "server" must be an http or https URL such as https://sluice.example.com, got "ftp://s.example.com"`},
		{"no credential", []string{"INPUT_TOKEN", " "}, Inputs{}, `input "token" is required unless oidc is true`},
		{"two credentials", []string{"INPUT_OIDC", "true"}, Inputs{}, `input "token" must be empty when oidc is true (the ID token is the credential)`},
		{"bad oidc", []string{"INPUT_OIDC", "yes"}, Inputs{}, `input "oidc" must be true or false, got "yes"`},
		{"traffic over 100", []string{"INPUT_STRATEGY", "canary", "INPUT_TRAFFIC", "101"}, Inputs{}, `input "traffic" must be a whole percentage from 0 to 100, got "101"`},
		{"traffic on a full deploy", []string{"INPUT_TRAFFIC", "10"}, Inputs{}, `input "traffic" needs strategy canary (a full deploy takes 100% by itself)`},
		{"traffic without waiting", []string{"INPUT_STRATEGY", "canary", "INPUT_TRAFFIC", "10", "INPUT_WAIT", "false"}, Inputs{}, `input "traffic" needs wait true (the canary must be normal before it takes traffic)`},
		{"zero timeout", []string{"INPUT_TIMEOUT", "0s"}, Inputs{}, `input "timeout" must be a positive duration such as 10m or 90s, got "0s"`},
		{"event without a github token", []string{"INPUT_MODE", "event"}, Inputs{}, `input "github-token" is required in event mode (its default is the workflow's token)`},
		{"unknown mode", []string{"INPUT_MODE", "Deploy"}, Inputs{}, `input "mode" must be deploy or event, got "Deploy"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := append(append([]string{}, base...), tc.kv...)
			// Later values win, as in an environment.
			m := map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			var flat []string
			for k, v := range m {
				flat = append(flat, k, v)
			}
			getenv, environ := env(flat...)
			got, err := ParseInputs(getenv, environ)
			if tc.err != "" {
				var ie *InputError
				if !errors.As(err, &ie) || err.Error() != tc.err {
					t.Fatalf("err = %v, want InputError %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseInputs = %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestAnnotation(t *testing.T) {
	for _, tc := range []struct {
		a    Annotation
		want string
	}{
		{Annotation{Level: "error", Message: "sluice: plain"}, "::error::sluice: plain"},
		{Annotation{Level: "error", Title: "ProcessExited", Message: "exited 100% — fix it\nlog: a,b"},
			"::error title=ProcessExited::exited 100%25 — fix it%0Alog: a,b"},
		{Annotation{Level: "warning", Title: "a:b,c", File: "app/sluice.yaml", Line: 4, Col: 16, Message: "m\r"},
			"::warning title=a%3Ab%2Cc,file=app/sluice.yaml,line=4,col=16::m%0D"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%+v = %q, want %q", tc.a, got, tc.want)
		}
	}
}

func TestWriteOutputsAppendsDelimitedValues(t *testing.T) {
	file := filepath.Join(t.TempDir(), "output")
	if err := os.WriteFile(file, []byte("earlier=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteOutputs(file, Output{"version", "hello-001"}, Output{"note", "two\nlines"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 8 || lines[0] != "earlier=1" {
		t.Fatalf("output file:\n%s", data)
	}
	for _, blk := range [][]string{lines[1:4], lines[4:8]} {
		name, delim, ok := strings.Cut(blk[0], "<<")
		if !ok || !strings.HasPrefix(delim, "ghadelimiter_") || blk[len(blk)-1] != delim {
			t.Fatalf("block %q is not name<<DELIM … DELIM", blk)
		}
		if val := strings.Join(blk[1:len(blk)-1], "\n"); (name == "version" && val != "hello-001") || (name == "note" && val != "two\nlines") {
			t.Errorf("%s = %q", name, val)
		}
	}
	if err := WriteOutputs("", Output{"x", "y"}); err != nil {
		t.Errorf("no output file: %v", err)
	}
}

func TestRequestIDToken(t *testing.T) {
	var gotAuth, gotAudience, gotVersion string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAudience, gotVersion = r.Header.Get("Authorization"), r.URL.Query().Get("audience"), r.URL.Query().Get("api-version")
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"count": 1, "value": "header.claims.sig"}`))
		case "/empty":
			w.Write([]byte(`{"count": 1}`))
		default:
			http.Error(w, `{"message":"Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable"}`, http.StatusForbidden)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	r := Runner{IDTokenURL: srv.URL + "/ok?api-version=2.0", IDTokenToken: "req-token"}
	tok, err := RequestIDToken(ctx, srv.Client(), r, "https://sluice.example.com")
	if err != nil || tok != "header.claims.sig" {
		t.Fatalf("RequestIDToken = %q, %v", tok, err)
	}
	if gotAuth != "bearer req-token" || gotAudience != "https://sluice.example.com" || gotVersion != "2.0" {
		t.Errorf("request: Authorization %q, audience %q, api-version %q", gotAuth, gotAudience, gotVersion)
	}
	for _, tc := range []struct {
		name string
		r    Runner
		want string
	}{
		{"no permission", Runner{}, "permissions: id-token: write"},
		{"refused", Runner{IDTokenURL: srv.URL + "/no", IDTokenToken: "x"}, "the runner refused an ID token (403 Forbidden)"},
		{"no value", Runner{IDTokenURL: srv.URL + "/empty", IDTokenToken: "x"}, "has no value"},
	} {
		if _, err := RequestIDToken(ctx, srv.Client(), tc.r, "a"); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line with %q", tc.name, err, tc.want)
		}
	}
}

func TestRunRefusesBeforeSendingAnything(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	getenv, environ := env("INPUT_SERVER", srv.URL, "INPUT_TOKEN", "t", "INPUT_STRATEGY", "blue")
	var out strings.Builder
	if code := Run(context.Background(), Config{Getenv: getenv, Environ: environ, Stdout: &out}); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if want := "::error::sluice: input \"strategy\" must be full or canary, got \"blue\"\n"; out.String() != want || hits.Load() != 0 {
		t.Fatalf("stdout %q, %d requests; want %q and none", out.String(), hits.Load(), want)
	}
}

func TestVersionTable(t *testing.T) {
	v := func(name string, seq int, st rollout.Status, traffic int, rules ...int) rollout.VersionStatus {
		return rollout.VersionStatus{Version: rollout.Version{Name: name, Seq: seq, Status: st}, URL: "http://" + name + "/", Traffic: traffic, Rules: rules}
	}
	st := rollout.ServiceStatus{Name: "hello", Stable: "hello-001", Versions: []rollout.VersionStatus{
		v("hello-001", 1, rollout.StatusNormal, 90), v("hello-002", 2, rollout.StatusStopped, 0),
		v("hello-003", 3, rollout.StatusNormal, 10, 1), v("hello-004", 4, rollout.StatusStopped, 0),
	}}
	st.Versions[3].Reason = rollout.Reason{Code: "Interrupted"}
	got := versionTable(st, []string{"hello-004"})
	want := "| version | status | traffic | URL |\n|---|---|---:|---|\n" +
		"| **hello-004** | stopped (Interrupted) | 0% | http://hello-004/ |\n" +
		"| hello-003 | normal | 10% + rule 1 | http://hello-003/ |\n" +
		"| hello-001 (stable) | normal | 90% | http://hello-001/ |\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	md := reasonMarkdown(rollout.VersionStatus{Version: rollout.Version{Name: "x", Status: rollout.StatusFailed,
		Reason: rollout.Reason{Code: "BuildFailed", Detail: "build failed\n```\nlog\n```", Suggestion: "fix the build"}}})
	if !strings.Contains(md, "**BuildFailed**: build failed\n") || !strings.Contains(md, "````\nbuild failed") || !strings.Contains(md, "**Suggestion:** fix the build") {
		t.Errorf("reason markdown:\n%s", md)
	}
}
