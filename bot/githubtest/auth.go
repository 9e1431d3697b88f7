package githubtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// identity is who a request authenticated as.
type identity struct {
	app          bool  // an App JWT
	installation int64 // an installation token's installation, else 0
	plain        bool  // the WithToken token
}

// instToken is a minted installation access token.
type instToken struct {
	installation int64
	expires      time.Time
	repos        map[string]bool // lower-case full names; nil means all of the installation's
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "bearer ", "token ", "Token "} {
		if v, ok := strings.CutPrefix(h, p); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// authenticate checks the credential for rt and resolves the repository;
// it answers 401 for a missing or wrong credential and 404 for an unknown
// repository. Called with s.mu held.
func (s *Server) authenticate(c *call, rt *route) (reply, bool) {
	tok, ok := bearer(c.r)
	if !ok {
		return errReply(http.StatusUnauthorized, "Requires authentication"), false
	}
	if owner, okO := c.params["owner"]; okO {
		c.repo = s.repos[strings.ToLower(owner+"/"+c.params["repo"])]
	}
	switch rt.auth {
	case authApp:
		if err := s.verifyJWT(tok, time.Now()); err != nil {
			return errReply(http.StatusUnauthorized, "A JSON web token could not be decoded"), false
		}
		c.who = identity{app: true}
	case authRepo:
		switch it := s.tokens[tok]; {
		case s.plainToken != "" && tok == s.plainToken:
			c.who = identity{plain: true}
		case it != nil && time.Now().Before(it.expires):
			if c.repo == nil || c.repo.opts.InstallationID != it.installation ||
				(it.repos != nil && !it.repos[c.repo.key()]) {
				return errReply(http.StatusUnauthorized, "Bad credentials"), false
			}
			c.who = identity{installation: it.installation}
		default:
			return errReply(http.StatusUnauthorized, "Bad credentials"), false
		}
	}
	if _, hasRepo := c.params["owner"]; hasRepo && c.repo == nil {
		return notFound(), false
	}
	return reply{}, true
}

// login is who writes as c.who.
func (s *Server) login(c *call) string {
	if c.who.plain {
		return ActionsBot
	}
	return s.BotLogin()
}

// verifyJWT checks an App JWT as GitHub does: RS256 with the App's key,
// iss = the App id, not expired, issued at most 60 s in the future, and
// living at most 10 minutes.
func (s *Server) verifyJWT(tok string, now time.Time) error {
	if s.appKey == nil {
		return errors.New("no app key configured")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return err
	}
	if hdr.Alg != "RS256" {
		return fmt.Errorf("alg %q is not RS256", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("decode signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.appKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("verify signature: %w", err)
	}
	var claims struct {
		Iss json.RawMessage `json:"iss"`
		Iat int64           `json:"iat"`
		Exp int64           `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return err
	}
	iss := strings.Trim(string(claims.Iss), `"`)
	if iss != strconv.FormatInt(s.appID, 10) {
		return fmt.Errorf("iss %s is not app %d", iss, s.appID)
	}
	switch {
	case claims.Exp <= now.Unix():
		return errors.New("expired")
	case claims.Iat > now.Add(60*time.Second).Unix():
		return errors.New("issued in the future")
	case claims.Exp-claims.Iat > int64((10 * time.Minute).Seconds()):
		return errors.New("lives longer than 10 minutes")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("decode jwt segment: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode jwt segment: %w", err)
	}
	return nil
}

// InstallationToken mints a token for installation id as the
// access_tokens endpoint would, for tests that call the fake directly. It
// fails the test if no repository has that installation.
func (s *Server) InstallationToken(id int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.installed(id) {
		s.t.Fatalf("githubtest: no repository has installation %d", id)
	}
	tok, _ := s.mint(id, nil)
	return tok
}

// installed reports whether a repository has installation id. s.mu held.
func (s *Server) installed(id int64) bool {
	for _, r := range s.repos {
		if r.opts.InstallationID == id {
			return true
		}
	}
	return false
}

// mint makes a token; s.mu held.
func (s *Server) mint(id int64, repos map[string]bool) (string, time.Time) {
	tok := "ghs_" + randomHex(18)
	exp := time.Now().Add(tokenTTL).UTC().Truncate(time.Second)
	s.tokens[tok] = &instToken{installation: id, expires: exp, repos: repos}
	return tok, exp
}
