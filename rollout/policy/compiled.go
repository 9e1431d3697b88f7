package policy

import (
	"math/rand/v2"
	"net/url"
	"strings"

	"github.com/gobwas/glob"
)

// Compiled is a validated policy in the form the data path evaluates: globs
// compiled, conditions sorted, the split turned into cumulative ranges. It is
// immutable once built, so one value may serve any number of goroutines and
// outlive the Policy it came from.
type Compiled struct {
	rules []rule
	index ruleIndex // the rules by anchor key and prefix (index.go)
	split []Weight  // sorted by version name, zero weights included
	// ranges is the split without its zero weights, as cumulative upper
	// bounds over [0, 100): a draw n picks the first range with n < upTo.
	ranges []splitRange
}

type rule struct {
	version string
	conds   []condition // sorted by key
}

type condition struct {
	key     string
	pattern string
	glob    *glob.Pattern
}

type splitRange struct {
	version string
	upTo    int
}

// Weight is one version's share of the split, in whole percent.
type Weight struct {
	Version string
	Percent int
}

// Decision is where one request goes and why.
type Decision struct {
	// Version is the chosen version; "" when the policy has no rule that
	// matched and an empty split (a service before its first version).
	Version string
	// Rule is the index (from 0) of the rule that matched, or -1 when the
	// split chose.
	Rule int
}

// Compile validates p (see Policy.Validate) and compiles it. The result
// shares nothing with p.
func Compile(p Policy) (*Compiled, error) {
	split, err := compileSplit(p)
	if err != nil {
		return nil, err
	}
	rules, err := compileRules(p)
	if err != nil {
		return nil, err
	}
	c := &Compiled{rules: rules, split: split, index: buildIndex(rules)}
	upTo := 0
	for _, w := range split {
		if w.Percent == 0 {
			continue
		}
		upTo += w.Percent
		c.ranges = append(c.ranges, splitRange{version: w.Version, upTo: upTo})
	}
	return c, nil
}

// Split returns a copy of the split, sorted by version name, zero weights
// included.
func (c *Compiled) Split() []Weight {
	if c == nil {
		return nil
	}
	return append([]Weight(nil), c.split...)
}

// Decide is the one decision function: the proxy calls it for every request
// to a service's default URL and predict calls it to explain one, so the two
// cannot disagree. rawQuery is the request URL's raw (still escaped) query,
// without the '?'.
//
// Rules are tried in order and the first whose conditions all match wins;
// otherwise the split draws a version at random, each with its weight's
// probability. Decide allocates nothing when rawQuery is "", nor when the
// query has at most 16 pairs and no value a rule looks at needs unescaping.
// A nil *Compiled decides Decision{Rule: -1}. Safe for concurrent use.
func (c *Compiled) Decide(rawQuery string) Decision {
	if c == nil {
		return Decision{Rule: -1}
	}
	// Every rule has a condition and an absent key never matches, so an
	// empty query can only fall through to the split.
	if rawQuery != "" && len(c.rules) > 0 {
		if i := c.matchRule(rawQuery); i >= 0 {
			return Decision{Version: c.rules[i].version, Rule: i}
		}
	}
	return Decision{Version: c.draw(), Rule: -1}
}

// Holds reports whether the policy can send a request to version: the
// version has a weight above zero or a rule points at it. A sticky cookie
// pins a client only to a version the policy holds. A nil *Compiled holds
// nothing.
func (c *Compiled) Holds(version string) bool {
	if c == nil {
		return false
	}
	for _, r := range c.ranges {
		if r.version == version {
			return true
		}
	}
	for _, r := range c.rules {
		if r.version == version {
			return true
		}
	}
	return false
}

// draw picks a split version at random.
func (c *Compiled) draw() string {
	switch len(c.ranges) {
	case 0:
		return ""
	case 1:
		return c.ranges[0].version
	}
	n := rand.IntN(100)
	for _, r := range c.ranges {
		if n < r.upTo {
			return r.version
		}
	}
	return c.ranges[len(c.ranges)-1].version // unreachable: the weights sum to 100
}

// stackPairs is how many query pairs are parsed without a heap allocation;
// longer queries still work, with one allocation.
const stackPairs = 16

// matchRule returns the index of the first rule the query matches, or -1:
// among the rules the index says could match when it can say, else among
// all.
func (c *Compiled) matchRule(rawQuery string) int {
	var buf [stackPairs]queryPair
	q := parseQuery(rawQuery, buf[:0])
	var lists [maxCandidateLists][]int32
	if n, ok := c.index.candidates(q, &lists); ok {
		return c.firstMatch(q, lists[:n])
	}
	return c.scan(q)
}

// scan returns the index of the first rule the query matches, trying every
// rule in order, or -1.
func (c *Compiled) scan(q query) int {
	for i := range c.rules {
		if q.matchAll(c.rules[i].conds) {
			return i
		}
	}
	return -1
}

// queryPair is one key=value of a raw query. The key stays escaped (it is
// compared escape-aware, see keyIs); the value is unescaped on first use and
// the result kept for the other conditions of the same request.
type queryPair struct {
	key    string
	value  string
	keyEsc bool // key contains '%' or '+'
	valEsc bool // value contains '%' or '+' and has not been unescaped yet
}

type query []queryPair

// parseQuery splits a raw query on '&' the way url.ParseQuery does (empty
// segments skipped, "key" alone meaning key=""), but without unescaping, so
// that it does not allocate. ';' is not a separator, as in net/http.
func parseQuery(raw string, pairs []queryPair) query {
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		if seg == "" {
			continue
		}
		k, v, _ := strings.Cut(seg, "=")
		pairs = append(pairs, queryPair{
			key:    k,
			value:  v,
			keyEsc: needsUnescape(k),
			valEsc: needsUnescape(v),
		})
	}
	return pairs
}

// matchAll reports whether every condition matches.
func (q query) matchAll(conds []condition) bool {
	for i := range conds {
		if !q.match(&conds[i]) {
			return false
		}
	}
	return true
}

// match reports whether any value of the condition's key matches its glob;
// an absent key never matches.
func (q query) match(c *condition) bool {
	for i := range q {
		p := &q[i]
		if !p.keyIs(c.key) {
			continue
		}
		if p.valEsc {
			p.value = queryUnescape(p.value)
			p.valEsc = false
		}
		if c.glob.Match(p.value) {
			return true
		}
	}
	return false
}

// keyIs reports whether the pair's key, unescaped, is key.
func (p *queryPair) keyIs(key string) bool {
	if !p.keyEsc {
		return p.key == key
	}
	return unescapedEqual(p.key, key)
}

func needsUnescape(s string) bool {
	return strings.IndexByte(s, '%') >= 0 || strings.IndexByte(s, '+') >= 0
}

// queryUnescape is url.QueryUnescape that falls back to the raw text when
// the escapes are invalid ("%zz", a trailing '%').
func queryUnescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// validEscapes reports whether every '%' in s starts a "%XX" escape, which
// is what url.QueryUnescape accepts.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

// unescapedEqual reports whether queryUnescape(raw) == want, without
// allocating.
func unescapedEqual(raw, want string) bool {
	if !validEscapes(raw) {
		return raw == want
	}
	j := 0
	for i := 0; i < len(raw); {
		var c byte
		c, i = unescapedAt(raw, i)
		if j >= len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}

// unescapedAt returns the byte queryUnescape makes of raw at i, raw's
// escapes being valid, and the index after what it took.
func unescapedAt(raw string, i int) (byte, int) {
	switch c := raw[i]; c {
	case '+':
		return ' ', i + 1
	case '%':
		return unhex(raw[i+1])<<4 | unhex(raw[i+2]), i + 3
	default:
		return c, i + 1
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
