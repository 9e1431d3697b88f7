package policy

import (
	"fmt"
	"slices"
	"strings"
)

// ParseMatch parses the textual form of a rule's conditions,
// "key=glob&key=glob" (e.g. "env=beta*&region=eu"), into a Rule.Match map.
//
// The text is taken literally, not percent-decoded: the key is everything
// before the first '=', the glob everything after it (it may contain '=' but
// not '&'; it may be empty, which matches only an empty value). It is an
// error, matching ErrInvalidPolicy, for s to be empty, for a condition to be
// empty or lack '=', for a key to be empty or repeated, and for a glob not to
// compile. ParseMatch is pure and safe for concurrent use.
func ParseMatch(s string) (map[string]string, error) {
	if s == "" {
		return nil, invalidf("empty match; want key=glob, several joined by '&'")
	}
	m := make(map[string]string)
	for cond := range strings.SplitSeq(s, "&") {
		if cond == "" {
			return nil, invalidf("empty condition in %q; want key=glob, several joined by '&'", s)
		}
		key, pattern, ok := strings.Cut(cond, "=")
		if !ok {
			return nil, invalidf("condition %q has no '='; want key=glob", cond)
		}
		if key == "" {
			return nil, invalidf("condition %q has an empty key", cond)
		}
		if _, dup := m[key]; dup {
			return nil, invalidf("key %q appears more than once; a rule's conditions all must match, so use one glob per key", key)
		}
		if _, err := compileGlob(pattern); err != nil {
			return nil, &invalidError{msg: fmt.Sprintf("invalid glob %q for key %q: %s", pattern, key, globReason(err)), err: err}
		}
		m[key] = pattern
	}
	return m, nil
}

// FormatMatch renders a Rule.Match map as "key=glob&key=glob", keys sorted.
// For any map ParseMatch returned, ParseMatch(FormatMatch(m)) gives m back.
func FormatMatch(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	return b.String()
}
