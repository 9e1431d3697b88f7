package ghapp_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/bot/ghapp"
	"github.com/sluicehq/sluice/bot/githubtest"
)

func TestVerifySignature(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(githubtest.FixturesDir(t), "signature-test-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vec struct {
		Secret    string `json:"secret"`
		Payload   string `json:"payload"`
		Signature string `json:"x_hub_signature_256"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	secret, body := []byte(vec.Secret), []byte(vec.Payload)
	digest := strings.TrimPrefix(vec.Signature, "sha256=")
	cases := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   error
	}{
		{"GitHub's test vector", secret, body, vec.Signature, nil},
		{"upper-case hex", secret, body, "sha256=" + strings.ToUpper(digest), nil},
		{"missing header", secret, body, "", ghapp.ErrSignatureMissing},
		{"SHA-1 form only", secret, body, "sha1=" + digest[:40], ghapp.ErrSignatureAlgorithm},
		{"no prefix", secret, body, digest, ghapp.ErrSignatureAlgorithm},
		{"bad hex", secret, body, "sha256=" + strings.Repeat("zz", 32), ghapp.ErrSignatureEncoding},
		{"short digest", secret, body, "sha256=" + digest[:62], ghapp.ErrSignatureEncoding},
		{"wrong secret", []byte("It's a Secret to Somebody"), body, vec.Signature, ghapp.ErrSignatureMismatch},
		{"body changed", secret, []byte(vec.Payload + " "), vec.Signature, ghapp.ErrSignatureMismatch},
		{"no secret configured", nil, body, vec.Signature, ghapp.ErrNoSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ghapp.VerifySignature(tc.secret, tc.body, tc.header)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifySignatureOfSignedFixture(t *testing.T) {
	body := githubtest.Fixture(t, "push.json")
	secret := []byte("webhook-secret")
	req := githubtest.Delivery(t, "http://127.0.0.1:1/webhooks/github", "push", body, secret)
	if err := ghapp.VerifySignature(secret, body, req.Header.Get(ghapp.SignatureHeader)); err != nil {
		t.Errorf("a delivery signed like GitHub's was refused: %v", err)
	}
}
