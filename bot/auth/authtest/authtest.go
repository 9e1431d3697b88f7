package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is a running OIDC issuer; it stops at the test's end.
type Issuer struct {
	// Server serves /.well-known/openid-configuration and /jwks; its URL
	// is the issuer (the tokens' "iss").
	Server *httptest.Server
	t      testing.TB
	key    *ecdsa.PrivateKey
}

// NewIssuer starts an issuer with a new ES256 key (key id "k").
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{t: t, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.Server.URL, "jwks_uri": is.Server.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Server.Close)
	return is
}

// Sign signs claims as they are (add "iss" and the times yourself) and
// returns the compact JWS.
func (is *Issuer) Sign(claims map[string]any) string {
	is.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.key, KeyID: "k"}}, nil)
	if err != nil {
		is.t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		is.t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		is.t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return s
}

// ActionsToken is an ID token, valid for five minutes from now, of a
// workflow of repo ("owner/name") on its main branch, run by actor, for
// audience aud.
func (is *Issuer) ActionsToken(aud, repo, actor string) string {
	now := time.Now()
	owner, _, _ := strings.Cut(repo, "/")
	return is.Sign(map[string]any{"iss": is.Server.URL, "aud": aud, "sub": "repo:" + repo + ":ref:refs/heads/main",
		"repository": repo, "repository_owner": owner, "actor": actor, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
}
