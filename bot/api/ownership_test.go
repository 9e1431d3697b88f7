package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout"
)

// TestScopedPrincipalsCreateNoService: neither a repository token nor an
// OIDC token creates a service, even one its sluice.yaml declares; the
// admin does, and then assigns it.
func TestScopedPrincipalsCreateNoService(t *testing.T) {
	iss, mint := oidcIssuer(t)
	srv, eng, authn := newScopedAPI(t, iss.URL)
	for name, token := range map[string]string{
		"repository token": issue(t, authn, "acme/web", ""),
		"OIDC token":       mint(publicURL, "acme/web", "alice"),
	} {
		code, b := deployAs(t, srv, eng, token, "web")
		var eb errBody
		_ = json.Unmarshal(b, &eb)
		if code != 403 || eb.Error.Code != "forbidden" || !strings.Contains(eb.Error.Message, "may not create services") {
			t.Errorf("%s creates web: %d %s, want 403 forbidden", name, code, b)
		}
		if names, _ := eng.Services(context.Background()); len(names) != 0 {
			t.Fatalf("%s: services %v after a refused create", name, names)
		}
	}
}

// TestSetRepo: only the admin assigns a service; a service the admin
// deployed with no repository belongs to nobody else until then, and no
// other repository's token can adopt it.
func TestSetRepo(t *testing.T) {
	srv, eng, authn := newScopedAPI(t, "")
	web, other := issue(t, authn, "acme/web", ""), issue(t, authn, "acme/api", "")
	if code, b := deployAs(t, srv, eng, adminToken, "web"); code != 202 {
		t.Fatalf("admin deploys web: %d %s", code, b)
	}
	for _, tok := range []string{web, other} {
		if code, b := deployAs(t, srv, eng, tok, "web"); code != 403 || !strings.Contains(string(b), "belongs to no repository") {
			t.Errorf("scoped deploy to the admin's unowned service: %d %s, want 403", code, b)
		}
	}
	for _, tc := range []struct {
		name, token, body string
		status            int
		inMsg             string
	}{
		{"scoped token", web, `{"repo":"acme/web"}`, 403, "forbidden"},
		{"bad repo", adminToken, `{"repo":"acme"}`, 400, "OWNER/NAME"},
		{"no repo field", adminToken, `{}`, 400, "name the repository"},
		{"bad service", adminToken, `{"repo":"acme/web"}`, 400, "not a service name"},
	} {
		path := "/api/v1/services/web/repo"
		if tc.name == "bad service" {
			path = "/api/v1/services/Web_1/repo"
		}
		if code, b := call(t, srv, "PUT", path, "application/json", []byte(tc.body), bearer(tc.token)...); code != tc.status || !strings.Contains(string(b), tc.inMsg) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, code, b, tc.status, tc.inMsg)
		}
	}
	if st, _ := eng.Status(context.Background(), "web"); st.Repo != "" || len(st.Versions) != 1 {
		t.Fatalf("refusals changed web: repo %q, %d versions", st.Repo, len(st.Versions))
	}
	assign(t, srv, "web", "acme/web")
	if code, b := deployAs(t, srv, eng, web, "web"); code != 202 {
		t.Fatalf("the assigned repository deploys: %d %s", code, b)
	}
	if code, b := deployAs(t, srv, eng, other, "web"); code != 403 {
		t.Errorf("another repository after the assignment: %d %s, want 403", code, b)
	}
	evs, _ := eng.Events(context.Background(), "web", 0, 100)
	found := false
	for _, e := range evs {
		found = found || (e.Kind == rollout.EventServiceRepo && strings.Contains(e.Message, "now belongs to acme/web"))
	}
	if !found {
		t.Errorf("no %s event in web's history: %+v", rollout.EventServiceRepo, evs)
	}
}

// TestAttributionHeaders: who asked is taken from the X-Sluice-* headers
// only for the admin; a repository token is recorded as itself, and an
// OIDC token by its own actor claim.
func TestAttributionHeaders(t *testing.T) {
	iss, mint := oidcIssuer(t)
	srv, eng, authn := newScopedAPI(t, iss.URL)
	assign(t, srv, "web", "acme/web")
	tok, rec, err := authn.Issue("acme/web", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	lie := []string{"X-Sluice-Via", "comment", "X-Sluice-Actor", "the-boss", "X-Sluice-Url", "https://example.test/forged",
		"X-Sluice-Repo", "acme/api", "X-Sluice-Pr", "7"}
	for _, tc := range []struct {
		name, token string
		want        rollout.Origin
	}{
		{"admin", adminToken, rollout.Origin{Via: "comment", Actor: "the-boss", URL: "https://example.test/forged", Repo: "acme/web", PR: 7}},
		{"repository token", tok, rollout.Origin{Via: "api", Actor: "token " + rec.ID, Repo: "acme/web", PR: 7}},
		{"OIDC token", mint(publicURL, "acme/web", "alice"), rollout.Origin{Via: "comment", Actor: "alice", URL: "https://example.test/forged", Repo: "acme/web", PR: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := append(bearer(tc.token), lie...)
			if tc.name == "admin" {
				hdr[len(hdr)-3] = "acme/web" // the admin speaks for web's own repository
			}
			code, b := call(t, srv, "POST", "/api/v1/services/web/versions", "application/gzip",
				tgz(t, map[string]string{"sluice.yaml": failFast}), hdr...)
			eng.Wait()
			var v rollout.Version
			if err := json.Unmarshal(b, &v); code != 202 || err != nil {
				t.Fatalf("deploy: %d %s", code, b)
			}
			if v.CreatedBy != tc.want {
				t.Errorf("recorded origin %+v, want %+v", v.CreatedBy, tc.want)
			}
		})
	}
}
