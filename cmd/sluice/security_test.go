package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestServeOIDCFlags: --oidc-allow that cannot work, or that would let
// every GitHub account in, stops serve at once with the reason.
func TestServeOIDCFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no public URL", []string{"SLUICE_TOKEN=" + adminToken, "SLUICE_OIDC_ALLOW=acme"}, "--oidc-allow needs --public-url"},
		{"no admin token", []string{"SLUICE_PUBLIC_URL=https://sluice.example.com", "SLUICE_OIDC_ALLOW=acme"}, "--oidc-allow needs --token"},
		{"bare wildcard", []string{"SLUICE_TOKEN=" + adminToken, "SLUICE_PUBLIC_URL=https://sluice.example.com", "SLUICE_OIDC_ALLOW=acme/web,*"}, "bare wildcard"},
		{"bad id", []string{"SLUICE_TOKEN=" + adminToken, "SLUICE_PUBLIC_URL=https://sluice.example.com", "SLUICE_OIDC_ALLOW=acme@x"}, `--oidc-allow entry "acme@x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(sluiceBin, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0")
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("serve: %v %s; want a refusal naming %q", err, out, tc.want)
			}
		})
	}
}

// TestAppSetupRefusesAStrangersWorkflow: a server started as the README's
// App setup says (admin token and public URL, no --oidc-allow) refuses the
// OIDC token of a workflow in anyone's repository, even one minted for its
// own public URL, and changes nothing.
func TestAppSetupRefusesAStrangersWorkflow(t *testing.T) {
	t.Parallel()
	stranger := newIDIssuer(t, "mallory/anything")
	api := freePort(t)
	s := startServer(t, t.TempDir(), api, freePort(t), "SLUICE_TOKEN="+adminToken,
		"SLUICE_PUBLIC_URL=http://"+api, "SLUICE_OIDC_ISSUER="+stranger.srv.URL)
	before := snapshot(t, s)
	req, err := http.NewRequest(http.MethodPost, "http://"+api+"/api/v1/services/hello/versions",
		bytes.NewReader([]byte("not even read")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+stranger.mint("http://"+api))
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "oidc_disabled") {
		t.Fatalf("a stranger's OIDC deploy: %d %s; want 401 oidc_disabled", resp.StatusCode, body)
	}
	if snapshot(t, s) != before {
		t.Fatal("a stranger's token changed the server's state")
	}
}

// TestDashboardAndMetricsAreTheAdmins: with an admin token, an anonymous
// client reads neither /dashboard nor /metrics unless the operator
// published them with --public-dashboard.
func TestDashboardAndMetricsAreTheAdmins(t *testing.T) {
	t.Parallel()
	anon := func(s *server, path string) int {
		resp, err := http.Get("http://" + s.api + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	guarded := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN="+adminToken)
	public := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN="+adminToken, "SLUICE_PUBLIC_DASHBOARD=true")
	for _, path := range []string{"/dashboard", "/metrics"} {
		if code := anon(guarded, path); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d, want 401", path, code)
		}
		if code := anon(public, path); code != http.StatusOK {
			t.Errorf("anonymous %s with --public-dashboard: %d, want 200", path, code)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+guarded.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("admin %s: %d, want 200", path, resp.StatusCode)
		}
	}
}
