package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sluicehq/sluice/bot/auth"
	"github.com/sluicehq/sluice/store"
)

func openStore(t *testing.T) (*store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := store.Open(path, store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestSluiceTokens(t *testing.T) {
	db, _ := openStore(t)
	a := auth.New(db, auth.WithAdminToken("admin-s3cret"))
	ctx := context.Background()

	scoped, rec, err := a.Issue("acme/web", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	narrow, narrowRec, err := a.Issue("acme/web", "api", 0)
	if err != nil {
		t.Fatal(err)
	}
	revoked, revokedRec, err := a.Issue("acme/web", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(revokedRec.ID); err != nil {
		t.Fatal(err)
	}
	// An expired token, stored as Issue would have stored it a while ago.
	const expired = auth.TokenPrefix + "expired-token-text"
	past := time.Now().Add(-2 * time.Hour).UTC()
	if err := db.CreateToken(store.TokenRecord{ID: "old", Hash: auth.HashToken(expired), Repo: "acme/web",
		Created: past, Expires: past.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		bearer string
		want   auth.Principal
		err    error
		inErr  string
	}{
		{"admin", "admin-s3cret", auth.Principal{Admin: true, Via: auth.ViaAdmin, Subject: "admin"}, nil, ""},
		{"admin with spaces", " admin-s3cret ", auth.Principal{Admin: true, Via: auth.ViaAdmin, Subject: "admin"}, nil, ""},
		{"repo token", scoped, auth.Principal{Repo: "acme/web", Via: auth.ViaToken, Subject: rec.ID}, nil, ""},
		{"service token", narrow, auth.Principal{Repo: "acme/web", Service: "api", Via: auth.ViaToken, Subject: narrowRec.ID}, nil, ""},
		{"revoked", revoked, auth.Principal{}, auth.ErrTokenRevoked, "token revoked (id " + revokedRec.ID},
		{"expired", expired, auth.Principal{}, auth.ErrTokenExpired, "token expired (id old"},
		{"unknown sluice token", auth.TokenPrefix + "never-issued", auth.Principal{}, auth.ErrUnknownToken, "unknown token"},
		{"wrong admin token", "admin-s3creT", auth.Principal{}, auth.ErrUnknownToken, "unknown token"},
		{"empty", "", auth.Principal{}, auth.ErrNoToken, "missing API token"},
		{"JWT without OIDC", "e30.e30.sig", auth.Principal{}, auth.ErrOIDCDisabled, "--oidc-allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(ctx, tc.bearer)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.inErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Authenticate = %+v, %v; want one line wrapping %q with %q", p, err, tc.err, tc.inErr)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("Authenticate = %+v, %v; want %+v", p, err, tc.want)
			}
		})
	}
}

func TestIssueKeepsOnlyTheHash(t *testing.T) {
	db, path := openStore(t)
	a := auth.New(db)
	text, rec, err := a.Issue("acme/web", "", 720*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(text, auth.TokenPrefix)
	if !ok {
		t.Fatalf("token %q lacks the %s prefix", text, auth.TokenPrefix)
	}
	if b, err := base64.RawURLEncoding.DecodeString(raw); err != nil || len(b) != 32 {
		t.Errorf("token body decodes to %d bytes, %v; want 32 random bytes, base64url", len(b), err)
	}
	if rec.Hash != auth.HashToken(text) || !rec.Expires.Equal(rec.Created.Add(720*time.Hour)) {
		t.Errorf("record = %+v, want the token's hash and expiry created+720h", rec)
	}
	if again, _, _ := a.Issue("acme/web", "", time.Hour); again == text {
		t.Error("two issues gave the same token")
	}
	toks, err := a.Tokens()
	if err != nil || len(toks) != 2 || !slices.ContainsFunc(toks, func(r store.TokenRecord) bool { return r == rec }) {
		t.Fatalf("Tokens = %+v, %v; want 2, one of them %+v", toks, err, rec)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The whole file, every page of it: the hash is there, the text is not.
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, []byte(hex.EncodeToString(rec.Hash[:]))) {
		t.Fatal("the token's hash is not in the file; the search below proves nothing")
	}
	for _, s := range []string{text, raw} {
		if bytes.Contains(file, []byte(s)) {
			t.Errorf("the store file holds the token text %q", s)
		}
	}
}

func TestIssueRefuses(t *testing.T) {
	db, _ := openStore(t)
	a := auth.New(db)
	for _, tc := range []struct {
		name, repo, service string
		ttl                 time.Duration
		err                 error
	}{
		{"no owner", "web", "", time.Hour, auth.ErrInvalidRequest},
		{"three parts", "acme/web/x", "", time.Hour, auth.ErrInvalidRequest},
		{"dot name", "acme/..", "", time.Hour, auth.ErrInvalidRequest},
		{"owner hyphen first", "-acme/web", "", time.Hour, auth.ErrInvalidRequest},
		{"bad service", "acme/web", "Web_1", time.Hour, auth.ErrInvalidRequest},
		{"negative ttl", "acme/web", "", -time.Second, auth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if text, _, err := a.Issue(tc.repo, tc.service, tc.ttl); !errors.Is(err, tc.err) || text != "" {
				t.Errorf("Issue = %q, %v; want %v", text, err, tc.err)
			}
		})
	}
	if toks, _ := a.Tokens(); len(toks) != 0 {
		t.Errorf("refused issues stored %d tokens", len(toks))
	}
	if _, err := a.Revoke("nope"); !errors.Is(err, auth.ErrTokenNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrTokenNotFound", err)
	}
	if _, _, err := auth.New(nil).Issue("acme/web", "", 0); !errors.Is(err, auth.ErrNoTokenStore) {
		t.Errorf("Issue without a store = %v, want ErrNoTokenStore", err)
	}
}

func TestRevokeIsImmediateAndIdempotent(t *testing.T) {
	db, _ := openStore(t)
	a := auth.New(db)
	text, rec, err := a.Issue("acme/web", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), text); err != nil {
		t.Fatalf("before revoke: %v", err)
	}
	first, err := a.Revoke(rec.ID)
	if err != nil || first.Revoked.IsZero() {
		t.Fatalf("Revoke = %+v, %v", first, err)
	}
	if _, err := a.Authenticate(context.Background(), text); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("after revoke: %v, want ErrTokenRevoked", err)
	}
	second, err := a.Revoke(rec.ID)
	if err != nil || !second.Revoked.Equal(first.Revoked) {
		t.Errorf("second Revoke = %+v, %v; want the first revocation kept", second, err)
	}
}

// issuer is a local OIDC issuer: discovery document and JWKS over real
// HTTP, an ES256 key generated for the test.
type issuer struct {
	srv   *httptest.Server
	key   *ecdsa.PrivateKey
	jwks  atomic.Int64 // key set fetches served
	disco atomic.Int64 // discovery documents served
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.disco.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.srv.URL,
			"jwks_uri":                              is.srv.URL + "/.well-known/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.jwks.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// sign makes a compact JWS of claims with key (the issuer's by default).
func (is *issuer) sign(t *testing.T, claims map[string]any, key *ecdsa.PrivateKey) string {
	t.Helper()
	return is.signKid(t, claims, key, "k1")
}

// signKid is sign with the key id kid in the header.
func (is *issuer) signKid(t *testing.T, claims map[string]any, key *ecdsa.PrivateKey, kid string) string {
	t.Helper()
	if key == nil {
		key = is.key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// githubClaims are the claims of an Actions ID token, as GitHub mints them.
func (is *issuer) githubClaims(aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.srv.URL, "aud": aud, "sub": "repo:acme/web:ref:refs/heads/main",
		"repository": "acme/web", "repository_owner": "acme", "repository_id": "5678", "repository_owner_id": "1234",
		"ref": "refs/heads/main", "actor": "alice",
		"iat": now.Unix(), "nbf": now.Add(-10 * time.Second).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

// allowAcme lets every repository of acme use OIDC.
var allowAcme = []auth.AllowEntry{{Owner: "acme"}}

func TestOIDCTokens(t *testing.T) {
	const publicURL = "https://sluice.example.com"
	is := newIssuer(t)
	a := auth.New(nil, auth.WithOIDC(is.srv.URL, publicURL, allowAcme))
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	with := func(change func(c map[string]any)) map[string]any {
		c := is.githubClaims(publicURL)
		change(c)
		return c
	}
	now := time.Now()
	good := auth.Principal{Repo: "acme/web", Via: auth.ViaOIDC, Subject: "repo:acme/web:ref:refs/heads/main", Actor: "alice"}
	for _, tc := range []struct {
		name  string
		token string
		err   error
		inErr string
	}{
		{"accepted", is.sign(t, is.githubClaims(publicURL), nil), nil, ""},
		{"audience with a trailing slash", is.sign(t, is.githubClaims(publicURL+"/"), nil), nil, ""},
		{"audience among several", is.sign(t, with(func(c map[string]any) { c["aud"] = []string{"x", publicURL} }), nil), nil, ""},
		{"ids as numbers", is.sign(t, with(func(c map[string]any) { c["repository_id"], c["repository_owner_id"] = 5678, 1234 }), nil), nil, ""},
		{"expired within the leeway", is.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-auth.ClockLeeway / 2).Unix() }), nil), nil, ""},
		{"issued a little ahead of our clock", is.sign(t, with(func(c map[string]any) { c["iat"] = now.Add(auth.ClockLeeway / 2).Unix() }), nil), nil, ""},
		{"wrong audience", is.sign(t, is.githubClaims("https://other.example.com"), nil), auth.ErrOIDCAudience, "other.example.com"},
		{"wrong issuer", is.sign(t, with(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), nil), auth.ErrOIDCIssuer, "evil.example.com"},
		{"wrong signature", is.sign(t, is.githubClaims(publicURL), other), auth.ErrOIDCSignature, ""},
		{"tampered payload", tamper(t, is.sign(t, is.githubClaims(publicURL), nil)), auth.ErrOIDCSignature, ""},
		{"expired", is.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-2 * auth.ClockLeeway).Unix() }), nil), auth.ErrOIDCExpired, "expired at"},
		{"no exp", is.sign(t, with(func(c map[string]any) { delete(c, "exp") }), nil), auth.ErrOIDCClaims, "no exp"},
		{"not valid yet", is.sign(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), nil), auth.ErrOIDCNotYetValid, "not before"},
		{"issued in the future", is.sign(t, with(func(c map[string]any) { c["iat"] = now.Add(2 * auth.ClockLeeway).Unix() }), nil), auth.ErrOIDCNotYetValid, "in the future"},
		{"no iat", is.sign(t, with(func(c map[string]any) { delete(c, "iat") }), nil), auth.ErrOIDCClaims, "no iat"},
		{"lives too long", is.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(auth.DefaultMaxTokenLifetime + time.Minute).Unix() }), nil), auth.ErrOIDCLifetime, "lives"},
		{"no repository", is.sign(t, with(func(c map[string]any) { delete(c, "repository") }), nil), auth.ErrOIDCClaims, "repository claim"},
		{"empty repository", is.sign(t, with(func(c map[string]any) { c["repository"] = "" }), nil), auth.ErrOIDCClaims, "repository claim"},
		{"blank repository", is.sign(t, with(func(c map[string]any) { c["repository"] = "  " }), nil), auth.ErrOIDCClaims, "repository claim"},
		{"another owner's repository", is.sign(t, with(func(c map[string]any) {
			c["repository"], c["repository_owner"], c["sub"] = "mallory/web", "mallory", "repo:mallory/web:ref:refs/heads/main"
		}), nil), auth.ErrOIDCNotAllowed, `repository_owner claim "mallory"`},
		{"owner claim disagrees with the repository", is.sign(t, with(func(c map[string]any) { c["repository_owner"] = "mallory" }), nil), auth.ErrOIDCNotAllowed, "repository_owner claim"},
		{"malformed", "not.a.jwt", auth.ErrOIDCMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tc.token)
			switch {
			case tc.err != nil:
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.inErr) || strings.Contains(err.Error(), "\n") {
					t.Errorf("Authenticate = %+v, %v; want one line wrapping %q with %q", p, err, tc.err, tc.inErr)
				}
			case err != nil || p != good:
				t.Errorf("Authenticate = %+v, %v; want %+v", p, err, good)
			}
		})
	}
}

// TestOIDCAllowList: which repositories' workflows each --oidc-allow entry
// lets in, and that a refusal names the claim that matched nothing.
func TestOIDCAllowList(t *testing.T) {
	const publicURL = "https://sluice.example.com"
	is := newIssuer(t)
	token := func(repo, repoID, ownerID string) string {
		owner, _, _ := strings.Cut(repo, "/")
		c := is.githubClaims(publicURL)
		c["repository"], c["repository_owner"], c["repository_id"], c["repository_owner_id"] = repo, owner, repoID, ownerID
		return is.sign(t, c, nil)
	}
	for _, tc := range []struct {
		allow string
		token string
		inErr string // "" means accepted
	}{
		{"acme", token("acme/web", "1", "2"), ""},
		{"ACME", token("acme/web", "1", "2"), ""},
		{"acme", token("Acme/Web", "1", "2"), ""},
		{"acme/web", token("acme/web", "1", "2"), ""},
		{"acme/web", token("acme/api", "1", "2"), `repository claim "acme/api" matches no --oidc-allow entry`},
		{"acme/web-*", token("acme/web-eu", "1", "2"), ""},
		{"acme/web-*", token("acme/webx", "1", "2"), `repository claim "acme/webx"`},
		{"acme-*", token("acme-labs/x", "1", "2"), ""},
		{"acme", token("acmex/web", "1", "2"), `repository_owner claim "acmex" matches no --oidc-allow entry`},
		{"acme, other/web", token("other/web", "1", "2"), ""},
		{"acme@2", token("acme/web", "1", "2"), ""},
		{"acme@2", token("acme/web", "1", "3"), `repository_owner_id claim "3" is not 2`},
		{"acme/web@1", token("acme/web", "1", "2"), ""},
		{"acme/web@1", token("acme/web", "9", "2"), `repository_id claim "9" is not 1`},
		{"acme/web@1", token("acme/web", "", "2"), `repository_id claim "" is not 1`},
		{"acme@2/web@1", token("acme/web", "1", "2"), ""},
	} {
		t.Run(tc.allow+" "+tc.inErr, func(t *testing.T) {
			list, err := auth.ParseAllowList([]string{tc.allow})
			if err != nil {
				t.Fatal(err)
			}
			p, err := auth.New(nil, auth.WithOIDC(is.srv.URL, publicURL, list)).Authenticate(context.Background(), tc.token)
			if tc.inErr == "" {
				if err != nil {
					t.Fatalf("Authenticate = %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, auth.ErrOIDCNotAllowed) || !strings.Contains(err.Error(), tc.inErr) || p != (auth.Principal{}) {
				t.Fatalf("Authenticate = %+v, %v; want ErrOIDCNotAllowed with %q", p, err, tc.inErr)
			}
		})
	}
}

func TestParseAllowEntryRefuses(t *testing.T) {
	for _, in := range []string{"*", "?*", "*/web", "acme@", "acme@x", "acme@-1", "acme/", "acme/web/x", "acme/[", "/web", "acme/web@0"} {
		if e, err := auth.ParseAllowEntry(in); err == nil || !strings.Contains(err.Error(), "--oidc-allow entry") {
			t.Errorf("ParseAllowEntry(%q) = %+v, %v; want an error naming the entry", in, e, err)
		}
	}
	e, err := auth.ParseAllowEntry("Acme@1234/Web-*@5678")
	if want := (auth.AllowEntry{Owner: "acme", OwnerID: 1234, Repo: "web-*", RepoID: 5678}); err != nil || e != want {
		t.Errorf("ParseAllowEntry = %+v, %v; want %+v", e, err, want)
	}
}

// TestOIDCForgedTokensDoNotFloodTheIssuer: however many forged tokens
// arrive (unknown key ids, wrong signatures), the issuer's key set is
// fetched at most once per JWKSRefetchInterval; a real token still passes.
func TestOIDCForgedTokensDoNotFloodTheIssuer(t *testing.T) {
	const publicURL = "https://sluice.example.com"
	is := newIssuer(t)
	now := time.Now()
	clock := func() time.Time { return now }
	a := auth.New(nil, auth.WithOIDC(is.srv.URL, publicURL, allowAcme), auth.WithClock(clock))
	mallory, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := is.githubClaims(publicURL)
	for i := range 200 {
		forged := is.signKid(t, claims, mallory, fmt.Sprintf("kid-%d", i))
		if _, err := a.Authenticate(context.Background(), forged); !errors.Is(err, auth.ErrOIDCSignature) {
			t.Fatalf("forged token %d: %v, want ErrOIDCSignature", i, err)
		}
		if _, err := a.Authenticate(context.Background(), is.sign(t, claims, mallory)); !errors.Is(err, auth.ErrOIDCSignature) {
			t.Fatalf("forged token with the real key id %d: %v, want ErrOIDCSignature", i, err)
		}
	}
	if n := is.jwks.Load(); n != 1 {
		t.Fatalf("key set fetched %d times for 400 forged tokens, want 1", n)
	}
	if _, err := a.Authenticate(context.Background(), is.sign(t, claims, nil)); err != nil {
		t.Fatalf("a real token after the flood: %v", err)
	}
	// Once the interval has passed, an unknown key id may fetch again
	// (a key rotation is picked up), once.
	now = now.Add(auth.JWKSRefetchInterval + time.Second)
	for i := range 50 {
		_, _ = a.Authenticate(context.Background(), is.signKid(t, claims, mallory, fmt.Sprintf("late-%d", i)))
	}
	if n := is.jwks.Load(); n != 2 {
		t.Fatalf("key set fetched %d times after the interval, want 2", n)
	}
	if n := is.disco.Load(); n != 1 {
		t.Errorf("discovery fetched %d times, want 1", n)
	}
}

// tamper changes the repository claim of a signed token, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.Replace(payload, []byte("acme/web"), []byte("acme/api"), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestOIDCIssuerUnreachable(t *testing.T) {
	is := newIssuer(t)
	token := is.sign(t, is.githubClaims("https://sluice.example.com"), nil)
	is.srv.Close() // the issuer is gone; its URL is still the trusted one
	a := auth.New(nil, auth.WithOIDC(is.srv.URL, "https://sluice.example.com", allowAcme))
	if _, err := a.Authenticate(context.Background(), token); !errors.Is(err, auth.ErrOIDCUnavailable) {
		t.Errorf("Authenticate = %v, want ErrOIDCUnavailable", err)
	}
}

func TestOIDCDefaults(t *testing.T) {
	iss, aud, ok := auth.New(nil, auth.WithOIDC("", "https://sluice.example.com", allowAcme)).OIDC()
	if iss != auth.DefaultIssuer || aud != "https://sluice.example.com" || !ok {
		t.Errorf("OIDC() = %q, %q, %v; want the GitHub issuer, on", iss, aud, ok)
	}
	if _, _, ok := auth.New(nil).OIDC(); ok {
		t.Error("OIDC is on without a public URL")
	}
}

// TestOIDCOffWithoutAllowList: a public URL alone (the App setup sets one)
// does not let any workflow in the world call the API with its token.
func TestOIDCOffWithoutAllowList(t *testing.T) {
	const publicURL = "https://sluice.example.com"
	is := newIssuer(t)
	a := auth.New(nil, auth.WithOIDC(is.srv.URL, publicURL, nil))
	if _, _, ok := a.OIDC(); ok {
		t.Error("OIDC() reports on with an empty allow list")
	}
	_, err := a.Authenticate(context.Background(), is.sign(t, is.githubClaims(publicURL), nil))
	if !errors.Is(err, auth.ErrOIDCDisabled) || !strings.Contains(err.Error(), "--oidc-allow") {
		t.Errorf("Authenticate = %v, want ErrOIDCDisabled naming --oidc-allow", err)
	}
	if n := is.disco.Load() + is.jwks.Load(); n != 0 {
		t.Errorf("the issuer was contacted %d times by a server with OIDC off", n)
	}
}
