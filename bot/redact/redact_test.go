package redact

import (
	"slices"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	key := "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1\nQ2xvdWRSdW5LZXkK\n-----END RSA PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name    string
		s       string
		secrets []string
		want    string
	}{
		{"none", "token ghs_abcdef", nil, "token ghs_abcdef"},
		{"one", "token ghs_abcdef in use", []string{"ghs_abcdef"}, "token *** in use"},
		{"every occurrence", "a=s3cret b=s3cret", []string{"s3cret"}, "a=*** b=***"},
		{"several", "user=admin pass=hunter22", []string{"hunter22", "admin"}, "user=*** pass=***"},
		{"short ignored", "id=abc", []string{"abc", ""}, "id=abc"},
		{"four is enough", "pin=1234", []string{"1234"}, "pin=***"},
		{"one inside another", "x=supersecret", []string{"secret", "supersecret"}, "x=***"},
		{"overlapping", "abcdef", []string{"abcd", "cdef"}, "***"},
		{"overlapping same", "aaaaa", []string{"aaaa"}, "***"},
		{"adjacent", "k1k1k2k2", []string{"k1k1", "k2k2"}, "***"},
		{"multi-line whole", "key:\n" + key, []string{key}, "key:\n***"},
		{"multi-line partial", "read: MIIEowIBAAKCAQEAx1 and more", []string{key}, "read: *** and more"},
		{"crlf key line", "Q2xvdWRSdW5LZXkK\r\n", []string{strings.ReplaceAll(key, "\n", "\r\n")}, "***\r\n"},
		{"utf-8", "héllo wörld", []string{"wörld"}, "héllo ***"},
		{"url password", "clone https://bob:hunter2@git.example.com/x.git failed", nil, "clone https://bob:***@git.example.com/x.git failed"},
		{"url token as user", "GET https://ghp_abc123@github.com/o/r", nil, "GET https://***@github.com/o/r"},
		{"url empty password", "redis://:s3cret@cache:6379/0", nil, "redis://:***@cache:6379/0"},
		{"several urls", "a=postgres://u:p@db/1 b=amqp://v:q@mq/", nil, "a=postgres://u:***@db/1 b=amqp://v:***@mq/"},
		{"url without credentials", "see https://example.com/a@b and mailto:x@y.z", nil, "see https://example.com/a@b and mailto:x@y.z"},
		{"url and secret", "https://u:pw@h uses pw12345678", []string{"pw12345678"}, "https://u:***@h uses ***"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.s, tc.secrets); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.s, got, tc.want)
			}
		})
	}
}

func TestLooksSecret(t *testing.T) {
	for v, want := range map[string]bool{
		"hunter2-very-secret": true, "ghp_16C7e42F292c6912E7710c838347Ae178B4a": true, "c2VjcmV0LXZhbHVlCg==": true,
		"/srv/app/bin": true, "Passw0rd": true,
		"short1!": false, "production": false, "us-east-one": false, "Hello World": false, "31536000": false,
		"1234567.89": false, "": false, "verbose": false,
	} {
		if got := LooksSecret(v); got != want {
			t.Errorf("LooksSecret(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestEnv(t *testing.T) {
	got := Env(map[string]string{
		"DATABASE_URL": "postgres://app:pw@db/app", // by value
		"API_KEY":      "abc",                      // by name
		"MODE":         "production",               // neither
		"WORKERS":      "16",
	})
	slices.Sort(got)
	if want := []string{"abc", "postgres://app:pw@db/app"}; !slices.Equal(got, want) {
		t.Fatalf("Env = %q, want %q", got, want)
	}
	if s := String("DATABASE_URL=postgres://app:pw@db/app", got); strings.Contains(s, "pw") || strings.Contains(s, "app:") {
		t.Fatalf("redacted: %q", s)
	}
}
