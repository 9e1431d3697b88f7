package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// idIssuer is a local GitHub-Actions-like OIDC issuer (discovery document
// and keys over real HTTP, an ES256 key made for the test) together with
// the runner's ID-token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL) that mints
// its tokens for the audience asked.
type idIssuer struct {
	t            *testing.T
	srv          *httptest.Server
	key          *ecdsa.PrivateKey
	repo         string
	requestToken string

	mu        sync.Mutex
	audiences []string // the audience of every token minted
}

func newIDIssuer(t *testing.T, repo string) *idIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &idIssuer{t: t, key: key, repo: repo, requestToken: "runner-request-token"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /idtoken", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+is.requestToken || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, `{"message":"bad request token"}`, http.StatusUnauthorized)
			return
		}
		aud := r.URL.Query().Get("audience")
		is.mu.Lock()
		is.audiences = append(is.audiences, aud)
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"value": is.mint(aud)})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// requestURL is ACTIONS_ID_TOKEN_REQUEST_URL: like the runner's, it already
// has a query, so the audience is appended with '&'.
func (is *idIssuer) requestURL() string { return is.srv.URL + "/idtoken?api-version=2.0" }

// env is what a runner sets for a job with `permissions: id-token: write`.
func (is *idIssuer) env() map[string]string {
	return map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": is.requestURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": is.requestToken}
}

func (is *idIssuer) minted() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]string(nil), is.audiences...)
}

func (is *idIssuer) mint(aud string) string {
	is.t.Helper()
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": is.srv.URL, "aud": aud, "sub": "repo:" + is.repo + ":ref:refs/heads/main",
		"repository": is.repo, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		is.t.Error(err)
		return ""
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		is.t.Error(err)
		return ""
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		is.t.Error(err)
	}
	return tok
}
