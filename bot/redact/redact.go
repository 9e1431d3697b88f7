package redact

import (
	"regexp"
	"slices"
	"strings"
)

// String masks the credentials of URLs in s (URLCredentials) and replaces
// every occurrence of each secret by "***". Secrets
// shorter than 4 bytes are ignored (they would hide ordinary text). A
// secret spanning several lines (a private key) is also hidden line by
// line, so a log that shows part of it is covered. Overlapping occurrences
// are replaced as one. String is pure and safe for concurrent use.
func String(s string, secrets []string) string {
	return URLCredentials(replaceSecrets(s, secrets))
}

func replaceSecrets(s string, secrets []string) string {
	var pats []string
	for _, sec := range secrets {
		pats = appendSecret(pats, sec)
		if strings.ContainsAny(sec, "\r\n") {
			for line := range strings.FieldsFuncSeq(sec, func(r rune) bool { return r == '\n' || r == '\r' }) {
				pats = appendSecret(pats, strings.TrimSpace(line))
			}
		}
	}
	if len(pats) == 0 {
		return s
	}
	// Mark every byte that belongs to an occurrence, then replace each
	// maximal marked run: no fragment of any secret survives.
	type span struct{ from, to int }
	var spans []span
	for _, p := range pats {
		for off := 0; off < len(s); {
			i := strings.Index(s[off:], p)
			if i < 0 {
				break
			}
			spans = append(spans, span{off + i, off + i + len(p)})
			off += i + 1
		}
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	var b strings.Builder
	last := 0
	for i := 0; i < len(spans); {
		from, to := spans[i].from, spans[i].to
		for i++; i < len(spans) && spans[i].from <= to; i++ {
			to = max(to, spans[i].to)
		}
		b.WriteString(s[last:from])
		b.WriteString("***")
		last = to
	}
	b.WriteString(s[last:])
	return b.String()
}

func appendSecret(pats []string, s string) []string {
	if len(s) < 4 || slices.Contains(pats, s) {
		return pats
	}
	return append(pats, s)
}

// userinfoRE finds the userinfo of a URL: scheme "://" user [":" password] "@".
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s:]*)(:[^/?#@\s]*)?@`)

// URLCredentials masks the credentials inside URLs in s:
// "https://user:pass@host" becomes "https://user:***@host", and a URL with
// a user but no password ("https://TOKEN@host", as tokens are often
// written) becomes "https://***@host". Pure.
func URLCredentials(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		if sub[3] == "" {
			return sub[1] + "***@"
		}
		return sub[1] + sub[2] + ":***@"
	})
}

// MinSecretLength is the shortest env value LooksSecret takes for a secret.
const MinSecretLength = 8

var (
	plainWordRE   = regexp.MustCompile(`^[A-Za-z]+([-_. ][A-Za-z]+)*$`)
	plainNumberRE = regexp.MustCompile(`^[-+]?[0-9]+([.,_][0-9]+)*$`)
)

// LooksSecret reports whether an env value is hidden whatever its
// variable's name: at least MinSecretLength bytes and not a plain word
// ("production", "us-east") or number ("31536000", "0.25"). Paths, URLs
// and anything mixing letters with digits or symbols count as secrets:
// hiding a harmless value costs less than showing a key. Pure.
func LooksSecret(v string) bool {
	v = strings.TrimSpace(v)
	return len(v) >= MinSecretLength && !plainWordRE.MatchString(v) && !plainNumberRE.MatchString(v)
}

// secretNames are parts of env variable names that say the value is
// secret, whatever it looks like.
var secretNames = []string{"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"}

// Env lists the values of env that must be hidden: those whose name says
// they are secret, and those that LooksSecret. Pure; order unspecified.
func Env(env map[string]string) []string {
	var out []string
	for k, v := range env {
		if LooksSecret(v) {
			out = append(out, v)
			continue
		}
		u := strings.ToUpper(k)
		for _, w := range secretNames {
			if strings.Contains(u, w) {
				out = append(out, v)
				break
			}
		}
	}
	return out
}
