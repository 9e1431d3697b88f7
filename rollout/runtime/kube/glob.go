package kube

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/gobwas/glob"
	"github.com/gobwas/glob/syntax"
)

// globMatch is a rule condition's glob in the two forms an HTTPRoute
// queryParams match can carry.
type globMatch struct {
	// Exact is set when the glob has no wildcard, class or alternative: the
	// literal it matches, escapes resolved. Empty when Regexp is used.
	Exact string
	// Regexp is the glob compiled to an anchored RE2 expression that matches
	// exactly the values the glob matches; empty when Exact is used.
	Regexp string
}

// translateGlob turns one of the router's globs into an Exact value or an
// anchored regular expression with the same semantics: `*` any run of
// characters (newlines included), `?` one character, `[...]`/`[!...]` a
// class or range, `{a,b}` alternatives, `\c` the literal c. The glob "" (which
// matches only the empty value) becomes the expression `^$`, since an Exact
// value cannot be empty. The dialect is the common subset of RE2 (Envoy,
// Istio, Go) and PCRE.
func translateGlob(pattern string) (globMatch, error) {
	if _, err := glob.Compile(pattern); err != nil {
		return globMatch{}, fmt.Errorf("compile glob %q: %w", pattern, err)
	}
	var b strings.Builder
	literal, text := true, ""
	lex := syntax.NewLexer(pattern)
	for {
		tok := lex.Next()
		switch tok.Type {
		case syntax.EOF:
			if literal && text != "" {
				return globMatch{Exact: text}, nil
			}
			re := `(?s)^` + b.String() + `$`
			if _, err := regexp.Compile(re); err != nil {
				return globMatch{}, fmt.Errorf("compile expression for glob %q: %w", pattern, err)
			}
			return globMatch{Regexp: re}, nil
		case syntax.Text:
			text += tok.Data
			b.WriteString(regexp.QuoteMeta(tok.Data))
			continue
		case syntax.Any, syntax.Super:
			b.WriteString(`.*`)
		case syntax.Single:
			b.WriteString(`.`)
		case syntax.TermsOpen:
			b.WriteString(`(?:`)
		case syntax.TermSeparator:
			b.WriteString(`|`)
		case syntax.TermsClose:
			b.WriteString(`)`)
		case syntax.RangeOpen:
			b.WriteString(`[`)
			if err := class(lex, &b); err != nil {
				return globMatch{}, fmt.Errorf("lex glob %q: %w", pattern, err)
			}
		default: // syntax.Error; Compile above has already refused it
			return globMatch{}, fmt.Errorf("lex glob %q: %s", pattern, tok.Data)
		}
		literal = false
	}
}

// class copies the tokens of one character class up to and including its
// closing bracket.
func class(lex *syntax.Lexer, b *strings.Builder) error {
	for {
		tok := lex.Next()
		switch tok.Type {
		case syntax.Not:
			b.WriteString(`^`)
		case syntax.Text, syntax.RangeLo, syntax.RangeHi:
			b.WriteString(classEscape(tok.Data))
		case syntax.RangeBetween:
			b.WriteString(`-`)
		case syntax.RangeClose:
			b.WriteString(`]`)
			return nil
		case syntax.Error:
			return fmt.Errorf("%s", tok.Data)
		default:
			return fmt.Errorf("unexpected %s in a character class", tok.Type)
		}
	}
}

// classEscape escapes the characters of s for use inside a bracket
// expression: every ASCII punctuation character gets a backslash (valid in
// both RE2 and PCRE), everything else stands for itself.
func classEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 && (r >= '!' && r <= '/' || r >= ':' && r <= '@' || r >= '[' && r <= '`' || r >= '{' && r <= '~') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
