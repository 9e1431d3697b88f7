package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gobwas/glob"
)

// ErrInvalidPolicy is matched (errors.Is) by every error Validate, Compile
// and ParseMatch return for a malformed policy or match expression. The
// error's own message names the problem for a person; the HTTP edge maps the
// sentinel to 400.
var ErrInvalidPolicy = errors.New("invalid traffic policy")

// invalidError is a validation failure: its message is meant to be read as
// is, without the sentinel's text in front of it.
type invalidError struct {
	msg string
	err error // the glob syntax error, if any
}

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Unwrap() error        { return e.err }
func (e *invalidError) Is(target error) bool { return target == ErrInvalidPolicy }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Validate checks a policy's shape, not the statuses of the versions it names
// (that is the caller's business): split weights are each 0..100 and sum to
// exactly 100 (an empty split is allowed only when there are no rules: a
// service before its first version); every version named is non-empty; each
// rule has a version and at least one condition; keys are non-empty; globs
// compile. Rules are numbered from 1 in messages, as a person counts them.
//
// The returned error, if any, names the first problem found (split first, in
// version-name order, then rules in order) and matches ErrInvalidPolicy.
func (p Policy) Validate() error {
	if _, err := compileSplit(p); err != nil {
		return err
	}
	_, err := compileRules(p)
	return err
}

// compileSplit validates the split and returns it sorted by version name.
func compileSplit(p Policy) ([]Weight, error) {
	split := make([]Weight, 0, len(p.Split))
	for v, pct := range p.Split {
		split = append(split, Weight{Version: v, Percent: pct})
	}
	slices.SortFunc(split, func(a, b Weight) int { return strings.Compare(a.Version, b.Version) })
	sum := 0
	for _, w := range split {
		if w.Version == "" {
			return nil, invalidf("split names a version with an empty name")
		}
		if w.Percent < 0 || w.Percent > 100 {
			return nil, invalidf("split weight of %q is %d; weights are whole percent from 0 to 100", w.Version, w.Percent)
		}
		sum += w.Percent
	}
	switch {
	case len(split) == 0 && len(p.Rules) == 0:
		// A service before its first version: nothing to route to yet.
	case len(split) == 0:
		return nil, invalidf("split is empty; a policy with rules needs a split summing to 100 for the requests no rule matches")
	case sum != 100:
		return nil, invalidf("split weights sum to %d; they must sum to 100", sum)
	}
	return split, nil
}

// compileRules validates the rules and compiles their globs.
func compileRules(p Policy) ([]rule, error) {
	rules := make([]rule, 0, len(p.Rules))
	for i, r := range p.Rules {
		n := i + 1
		if r.Version == "" {
			return nil, invalidf("rule %d: no version", n)
		}
		if len(r.Match) == 0 {
			return nil, invalidf("rule %d (to %s): no conditions; a rule needs at least one key=glob", n, r.Version)
		}
		conds, err := compileConditions(r.Match)
		if err != nil {
			var ie *invalidError
			if errors.As(err, &ie) {
				ie.msg = fmt.Sprintf("rule %d: %s", n, ie.msg)
			}
			return nil, err
		}
		rules = append(rules, rule{version: r.Version, conds: conds})
	}
	return rules, nil
}

// compileConditions compiles a match map into conditions sorted by key, so
// evaluation order (and the first error reported) never depends on map order.
func compileConditions(m map[string]string) ([]condition, error) {
	conds := make([]condition, 0, len(m))
	for k, g := range m {
		conds = append(conds, condition{key: k, pattern: g})
	}
	slices.SortFunc(conds, func(a, b condition) int { return strings.Compare(a.key, b.key) })
	for i := range conds {
		c := &conds[i]
		if c.key == "" {
			return nil, invalidf("empty key (with glob %q)", c.pattern)
		}
		g, err := compileGlob(c.pattern)
		if err != nil {
			return nil, &invalidError{msg: fmt.Sprintf("invalid glob %q for key %q: %s", c.pattern, c.key, globReason(err)), err: err}
		}
		c.glob = g
	}
	return conds, nil
}

// compileGlob compiles a glob with no separators: `*` matches any run of
// characters, `/` and `.` included.
func compileGlob(pattern string) (*glob.Pattern, error) {
	return glob.Compile(pattern)
}

// globReason renders a glob syntax error without the library's prefix.
func globReason(err error) string {
	var se *glob.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Reason, se.Offset)
	}
	return err.Error()
}
