package policy

import (
	"slices"
	"strings"
)

// The rule index: a request's query is matched against the few rules that
// could match it rather than against every rule in turn, so the decision
// stays well under a microsecond at a thousand rules.
//
// Each rule is filed under one of its conditions, its anchor: the key and
// the glob's literal prefix (the text before its first wildcard), taking
// the condition with the longest prefix. A rule can match only if the query
// has its anchor key with a value (unescaped) that starts with the anchor
// prefix, since its anchor condition must match. So the rules worth trying
// are those filed under a key of the query and a prefix of that key's
// value: the index finds them with one map lookup per query key and one per
// distinct prefix length filed under the key, and tries them in rule order,
// so the first that matches is the one a scan of every rule would find.

// maxCandidateLists bounds the candidate lists one query gathers without
// allocating; a query that finds more falls back to trying every rule.
const maxCandidateLists = 16

// maxIndexedKey bounds an escaped query key unescaped on the stack for the
// lookup; a longer one falls back to trying every rule.
const maxIndexedKey = 128

// ruleIndex files rules by their anchor key and prefix.
type ruleIndex struct {
	keys map[string]*keyRules
}

// keyRules are the rules anchored on one key.
type keyRules struct {
	any      []int32            // anchored with an empty prefix, in rule order
	lens     []int              // the distinct non-empty prefix lengths, ascending
	prefixes map[string][]int32 // by prefix, each in rule order
}

// literalPrefix returns the start of a glob that can only match itself: the
// text before the first character with a meaning in globs.
func literalPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, `*?\[]{},`); i >= 0 {
		return pattern[:i]
	}
	return pattern
}

// buildIndex files every rule under its anchor.
func buildIndex(rules []rule) ruleIndex {
	ix := ruleIndex{keys: make(map[string]*keyRules)}
	for i := range rules {
		conds := rules[i].conds
		anchor := 0
		for j := range conds {
			if len(literalPrefix(conds[j].pattern)) > len(literalPrefix(conds[anchor].pattern)) {
				anchor = j
			}
		}
		key, prefix := conds[anchor].key, literalPrefix(conds[anchor].pattern)
		kr := ix.keys[key]
		if kr == nil {
			kr = &keyRules{prefixes: make(map[string][]int32)}
			ix.keys[key] = kr
		}
		if prefix == "" {
			kr.any = append(kr.any, int32(i))
			continue
		}
		if _, ok := kr.prefixes[prefix]; !ok && !slices.Contains(kr.lens, len(prefix)) {
			kr.lens = append(kr.lens, len(prefix))
		}
		kr.prefixes[prefix] = append(kr.prefixes[prefix], int32(i))
	}
	for _, kr := range ix.keys {
		slices.Sort(kr.lens)
	}
	return ix
}

// candidates gathers the rule lists a query's pairs select into lists; it
// reports false when they do not fit (the caller then tries every rule).
func (ix *ruleIndex) candidates(q query, lists *[maxCandidateLists][]int32) (int, bool) {
	n := 0
	add := func(l []int32) bool {
		if len(l) == 0 {
			return true
		}
		if n == len(lists) {
			return false
		}
		lists[n] = l
		n++
		return true
	}
	var kb [maxIndexedKey]byte
	for i := range q {
		p := &q[i]
		var kr *keyRules
		if p.keyEsc {
			k, ok := unescapeKey(p.key, &kb)
			if !ok {
				return 0, false
			}
			kr = ix.keys[string(k)]
		} else {
			kr = ix.keys[p.key]
		}
		if kr == nil {
			continue
		}
		if !add(kr.any) {
			return 0, false
		}
		if len(kr.lens) == 0 {
			continue
		}
		if p.valEsc {
			p.value = queryUnescape(p.value)
			p.valEsc = false
		}
		for _, l := range kr.lens {
			if l > len(p.value) {
				break
			}
			if !add(kr.prefixes[p.value[:l]]) {
				return 0, false
			}
		}
	}
	return n, true
}

// unescapeKey unescapes a query key into buf as queryUnescape would; false
// when it does not fit.
func unescapeKey(raw string, buf *[maxIndexedKey]byte) ([]byte, bool) {
	if !validEscapes(raw) {
		if len(raw) > len(buf) {
			return nil, false
		}
		return buf[:copy(buf[:], raw)], true
	}
	j := 0
	for i := 0; i < len(raw); j++ {
		if j == len(buf) {
			return nil, false
		}
		buf[j], i = unescapedAt(raw, i)
	}
	return buf[:j], true
}

// firstMatch tries the candidates of lists (each in rule order) in rule
// order, each once, and returns the first rule whose conditions all match,
// or -1.
func (c *Compiled) firstMatch(q query, lists [][]int32) int {
	last := int32(-1)
	for {
		next, from := int32(-1), -1
		for i, l := range lists {
			for len(l) > 0 && l[0] <= last {
				l = l[1:]
			}
			lists[i] = l
			if len(l) > 0 && (next < 0 || l[0] < next) {
				next, from = l[0], i
			}
		}
		if from < 0 {
			return -1
		}
		if q.matchAll(c.rules[next].conds) {
			return int(next)
		}
		last = next
	}
}
