package render

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/bot/command"
)

// BarCells is the number of cells in a traffic bar.
const BarCells = 10

// Bar renders a traffic share as a bar of BarCells cells and the percentage,
// e.g. "█████░░░░░ 50%". Cells are rounded to the nearest tenth, except
// that any traffic at all shows at least one full cell and anything short of
// 100% leaves at least one empty cell. Percentages outside 0..100 are
// clamped.
func Bar(percent int) string {
	percent = min(max(percent, 0), 100)
	full := (percent + 5) / 10
	switch {
	case percent > 0 && full == 0:
		full = 1
	case percent < 100 && full == BarCells:
		full = BarCells - 1
	}
	return strings.Repeat("█", full) + strings.Repeat("░", BarCells-full) + fmt.Sprintf(" %d%%", percent)
}

// Code renders s as an inline code span that shows s literally, whatever
// backticks it contains. Line breaks become spaces.
func Code(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	if s == "" {
		return "` `"
	}
	n := longestRun(s, '`') + 1
	ticks := strings.Repeat("`", n)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") ||
		(strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ") && strings.TrimSpace(s) != "") {
		// Padding keeps edge backticks (and edge spaces, which CommonMark
		// strips once) from merging with the delimiters.
		return ticks + " " + s + " " + ticks
	}
	return ticks + s + ticks
}

// fenced renders s as a fenced code block with the given info string, the
// fence longer than any run of backticks in s. The block ends with "\n".
func fenced(s, info string) string {
	fence := strings.Repeat("`", max(3, longestRun(s, '`')+1))
	s = strings.TrimRight(s, "\n")
	return fence + info + "\n" + s + "\n" + fence + "\n"
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// Refusal is the reply to a command from someone who may not run it. It
// names @login, says that write permission is needed (maintain and admin
// work too), what their permission is ("" is shown as "none"), and that
// nothing was changed.
func Refusal(login, permission string) string {
	if permission == "" {
		permission = "none"
	}
	return fmt.Sprintf("Sorry @%s, sluice commands need **write** permission on this repository "+
		"(**maintain** and **admin** work too). Your permission here is **%s**, so nothing was changed.\n\n"+
		"Ask a maintainer to run the command, or to give you write access.\n", login, permission)
}

// Problem is the reply to a malformed command: the line as written, what is
// wrong, and the command's usage. It returns "" for a Result without a
// Reply.
func Problem(r command.Result) string {
	if r.Reply == nil {
		return ""
	}
	where := ""
	if r.Line > 0 {
		where = fmt.Sprintf(" (line %d)", r.Line)
	}
	return fmt.Sprintf("%s%s: %s\n\nUsage: %s — comment `/help` for every command.\n",
		Code(strings.TrimSpace(r.Raw)), where, escapeText(r.Reply.Problem), Code(r.Reply.Usage))
}

// textEscaper makes plain text that may quote a user's words show
// literally in markdown: no emphasis, code, links or HTML, and no
// @-mention (a zero-width space follows each '@').
var textEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", `\<`, ">", `\>`, "~", `\~`, "|", `\|`, "@", "@\u200b",
)

func escapeText(s string) string { return textEscaper.Replace(s) }

// HelpText is the reply to /help: the usage of every command.
func HelpText() string {
	return "sluice runs commands written one per line at the start of a comment, outside code and quotes:\n\n" + command.Help()
}

// truncated is appended to text cut to fit a limit.
const truncated = "\n\n_… truncated to fit GitHub's size limit._\n"

// truncate returns s cut to at most limit bytes: at a line boundary when
// one is near, never inside a UTF-8 sequence, closing a code fence left
// open, and ending with a note. s itself is returned when it fits.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit < len(truncated)+8 {
		return cutRunes(s, limit)
	}
	budget := limit - len(truncated)
	for budget > 0 {
		cut := cutRunes(s, budget)
		if i := strings.LastIndexByte(cut, '\n'); i >= len(cut)-200 && i > 0 {
			cut = cut[:i]
		}
		if f := openFenceAtEnd(cut); f != "" {
			cut += "\n" + f
		}
		if out := cut + truncated; len(out) <= limit {
			return out
		}
		budget -= 64
	}
	return cutRunes(s, limit)
}

// cutRunes returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// keepTail returns the end of a log of at most n bytes, starting at a line
// boundary, with a first line saying that earlier lines were left out.
func keepTail(log string, n int) string {
	if len(log) <= n {
		return log
	}
	const note = "[… earlier lines left out …]\n"
	start := len(log) - max(n-len(note), 0)
	for start < len(log) && !utf8.RuneStart(log[start]) {
		start++
	}
	if i := strings.IndexByte(log[start:], '\n'); i >= 0 && i < 200 {
		start += i + 1
	}
	return note + log[start:]
}

// openFenceAtEnd returns the closing fence for a fenced code block that s
// leaves open, or "".
func openFenceAtEnd(s string) string {
	open := ""
	for line := range strings.SplitSeq(s, "\n") {
		t := strings.TrimLeft(line, " ")
		if len(line)-len(t) > 3 || len(t) < 3 || (t[0] != '`' && t[0] != '~') {
			continue
		}
		n := 0
		for n < len(t) && t[n] == t[0] {
			n++
		}
		if n < 3 {
			continue
		}
		run := t[:n]
		switch {
		case open == "":
			if t[0] == '`' && strings.IndexByte(t[n:], '`') >= 0 {
				continue
			}
			open = run
		case run[0] == open[0] && n >= len(open) && strings.TrimSpace(t[n:]) == "":
			open = ""
		}
	}
	return open
}

// oneLine joins the lines of s with spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Fit returns s cut to at most limit bytes (GitHub's limits are in
// characters, never more than bytes) as the check run and comment
// renderers cut their text: at a line boundary, closing an open code
// fence, with a last line saying it was cut. s is returned when it fits.
func Fit(s string, limit int) string { return truncate(s, limit) }
