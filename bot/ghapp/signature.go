package ghapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// SignatureHeader is the header GitHub signs webhook deliveries in.
const SignatureHeader = "X-Hub-Signature-256"

const signaturePrefix = "sha256="

// Errors VerifySignature returns; each means the delivery must be refused.
var (
	// ErrNoSecret means no webhook secret is configured, so nothing can be verified.
	ErrNoSecret = errors.New("no webhook secret configured")
	// ErrSignatureMissing means the X-Hub-Signature-256 header is absent or empty.
	ErrSignatureMissing = errors.New("missing " + SignatureHeader + " signature")
	// ErrSignatureAlgorithm means the header does not start with "sha256="
	// (for example the SHA-1 "sha1=" form of X-Hub-Signature).
	ErrSignatureAlgorithm = errors.New("signature is not of the form sha256=<hex>")
	// ErrSignatureEncoding means the digest is not 64 hex digits.
	ErrSignatureEncoding = errors.New("signature digest is not 64 hex digits")
	// ErrSignatureMismatch means the digest does not match the body.
	ErrSignatureMismatch = errors.New("signature does not match the body")
)

// VerifySignature checks header, the value of X-Hub-Signature-256
// ("sha256=<hex>"), against HMAC-SHA256(secret, body), comparing in
// constant time. body must be the raw bytes as received. It returns nil
// or one of the Err* values of this package.
func VerifySignature(secret, body []byte, header string) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	if header == "" {
		return ErrSignatureMissing
	}
	digest, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return ErrSignatureAlgorithm
	}
	got, err := hex.DecodeString(digest)
	if err != nil || len(got) != sha256.Size {
		return ErrSignatureEncoding
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignatureMismatch
	}
	return nil
}
