package command

import (
	"strings"
	"unicode"
)

// Parse reads a pull-request comment body and returns one Result per
// command line, in the order the lines appear; nil when there is none.
//
// A command line starts, after at most three spaces, with '/' and a known
// name followed by whitespace or the end of the line; the rest of the line
// holds its arguments, separated by whitespace. Lines are not commands when
// they are inside a fenced code block (``` or ~~~, fences indented up to
// three spaces, also directly after a list marker), indented by four columns
// or more (indented code; a tab counts to the next multiple of four), inside
// a block quote (including a line that continues a quoted paragraph with no
// '>'), or inside an HTML comment block (<!-- … -->). Unknown names (/lgtm,
// /cc, /usr/bin) produce no Result, and so does text that only contains a
// command (inline code, prose). Line endings may be \n or \r\n.
//
// Parse is pure and safe for concurrent use.
func Parse(body string) []Result {
	var out []Result
	var sc scanner
	for i, line := range strings.Split(body, "\n") {
		line = strings.TrimSuffix(line, "\r")
		rest, ok := sc.next(line)
		if !ok {
			continue
		}
		if r, ok := parseLine(rest); ok {
			r.Line, r.Raw = i+1, line
			out = append(out, r)
		}
	}
	return out
}

// parseLine reads a line that starts with '/' (indentation removed). It
// reports false when the word after the slash is not a command name.
func parseLine(s string) (Result, bool) {
	s = s[1:]
	end := strings.IndexFunc(s, unicode.IsSpace)
	if end < 0 {
		end = len(s)
	}
	name := Name(s[:end])
	sp, ok := specs[name]
	if !ok {
		return Result{}, false
	}
	c, problem := sp.parse(strings.Fields(s[end:]))
	if problem != "" {
		return Result{Reply: &Reply{Name: string(name), Problem: problem, Usage: sp.usage}}, true
	}
	c.Name = name
	return Result{Command: &c}, true
}

// scanner follows just enough of the block structure of CommonMark (as
// GitHub renders comments) to tell which lines are plain paragraph text.
type scanner struct {
	fence *fence // the open fenced code block, if any
	html  bool   // inside an HTML comment block
	// quote is set while the previous line belonged to a block quote;
	// quoteFence and quotePara describe the quote's content so that a line
	// without '>' can be told to be a lazy continuation (CommonMark §5.1).
	quote      bool
	quoteFence *fence
	quotePara  bool
}

// fence is an open fenced code block: the fence character, its length, and
// how far a closing fence may be indented.
type fence struct {
	char   byte
	n      int
	indent int
}

// next consumes one line and returns the line with its indentation removed
// when it is a candidate command line: plain text outside code, quotes and
// HTML comments that starts with '/'.
func (sc *scanner) next(line string) (string, bool) {
	if sc.fence != nil {
		if sc.fence.closes(line) {
			sc.fence = nil
		}
		return "", false
	}
	if sc.html {
		if strings.Contains(line, "-->") {
			sc.html = false
		}
		return "", false
	}
	col, rest := indent(line)
	if strings.TrimSpace(rest) == "" {
		sc.endQuote()
		return "", false
	}
	if col >= 4 {
		// Indented code, or a lazy continuation of a quote: ignored either way.
		if !sc.quotePara {
			sc.endQuote()
		}
		return "", false
	}
	if rest[0] == '>' {
		sc.quoteLine(rest)
		return "", false
	}
	if sc.quote && sc.quotePara && !opensBlock(rest) {
		return "", false // lazy continuation of the quoted paragraph
	}
	sc.endQuote()
	if f := openFence(line); f != nil {
		sc.fence = f
		return "", false
	}
	if strings.HasPrefix(rest, "<!--") {
		sc.html = !strings.Contains(rest[4:], "-->")
		return "", false
	}
	if rest[0] != '/' {
		return "", false
	}
	return rest, true
}

func (sc *scanner) endQuote() {
	sc.quote, sc.quoteFence, sc.quotePara = false, nil, false
}

// quoteLine records a line that starts with '>' (after indentation).
func (sc *scanner) quoteLine(rest string) {
	sc.quote = true
	inner := rest
	for strings.HasPrefix(inner, ">") {
		inner = inner[1:]
		inner = strings.TrimPrefix(inner, " ")
		_, r := indent(inner)
		if !strings.HasPrefix(r, ">") {
			break
		}
		inner = r
	}
	switch {
	case sc.quoteFence != nil:
		if sc.quoteFence.closes(inner) {
			sc.quoteFence = nil
		}
		sc.quotePara = false
	case strings.TrimSpace(inner) == "":
		sc.quotePara = false
	default:
		if f := openFence(inner); f != nil {
			sc.quoteFence, sc.quotePara = f, false
			return
		}
		col, r := indent(inner)
		if col >= 4 {
			// Indented code inside the quote only when it does not continue
			// a paragraph.
			return
		}
		// A list item's text is a paragraph too; headings, breaks and HTML
		// blocks are not.
		sc.quotePara = !isHeadingOrBreak(r) && !strings.HasPrefix(r, "<!--")
	}
}

// indent returns the column of the first non-blank character of line (a
// tab advances to the next multiple of four) and the line from there.
func indent(line string) (int, string) {
	col := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ' ':
			col++
		case '\t':
			col += 4 - col%4
		default:
			return col, line[i:]
		}
	}
	return col, ""
}

// openFence reports the fenced code block line opens, if any. A fence may
// follow a list marker ("- ```", "1. ~~~"); its closing fence may then be
// indented as deep as the item's content plus three.
func openFence(line string) *fence {
	col, rest := indent(line)
	if col >= 4 {
		return nil
	}
	closeIndent := 3
	if n := listMarker(rest); n > 0 {
		c2, r2 := indent(rest[n:])
		if c2 >= 1 && c2 <= 4 {
			closeIndent = col + n + c2 + 3
			rest = r2
		}
	}
	if len(rest) < 3 || (rest[0] != '`' && rest[0] != '~') {
		return nil
	}
	ch := rest[0]
	n := 0
	for n < len(rest) && rest[n] == ch {
		n++
	}
	if n < 3 {
		return nil
	}
	if ch == '`' && strings.IndexByte(rest[n:], '`') >= 0 {
		return nil // "```x```" is inline code, not a fence
	}
	return &fence{char: ch, n: n, indent: closeIndent}
}

// closes reports whether line closes the fence.
func (f *fence) closes(line string) bool {
	col, rest := indent(line)
	if col > f.indent {
		return false
	}
	n := 0
	for n < len(rest) && rest[n] == f.char {
		n++
	}
	return n >= f.n && strings.TrimSpace(rest[n:]) == ""
}

// listMarker returns the length of a list marker ("-", "*", "+", "1." or
// "1)") at the start of s when one is followed by whitespace, else 0.
func listMarker(s string) int {
	if len(s) >= 2 && strings.IndexByte("-*+", s[0]) >= 0 && (s[1] == ' ' || s[1] == '\t') {
		return 1
	}
	i := 0
	for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 0 && i+1 < len(s) && (s[i] == '.' || s[i] == ')') && (s[i+1] == ' ' || s[i+1] == '\t') {
		return i + 1
	}
	return 0
}

// opensBlock reports whether a line (indentation removed) starts a block
// that can interrupt a paragraph, ending a lazy quote continuation.
func opensBlock(rest string) bool {
	return openFence(rest) != nil || strings.HasPrefix(rest, "<!--") ||
		listMarker(rest) > 0 || isHeadingOrBreak(rest)
}

// isHeadingOrBreak reports an ATX heading ("# x") or a thematic break
// ("---", "***", "___", spaces allowed between).
func isHeadingOrBreak(rest string) bool {
	if h := strings.TrimLeft(rest, "#"); len(rest)-len(h) >= 1 && len(rest)-len(h) <= 6 &&
		(h == "" || h[0] == ' ' || h[0] == '\t') {
		return true
	}
	ch := rest[0]
	if ch != '-' && ch != '*' && ch != '_' {
		return false
	}
	n := 0
	for _, r := range rest {
		switch {
		case r == rune(ch):
			n++
		case r == ' ' || r == '\t':
		default:
			return false
		}
	}
	return n >= 3
}
