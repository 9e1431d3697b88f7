package render

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Marker is the first line of the sticky comment. The bot finds its sticky
// comment again by this line together with the comment's author (itself):
// anyone can write the marker in a comment of their own.
const Marker = "<!-- sluice:sticky -->"

// MaxSticky is the size, in bytes, the sticky comment stays under; GitHub
// refuses comments longer than 65,536 characters.
const MaxSticky = 60000

// Lines the sticky comment carries so that Prepend can take it apart again.
// They are HTML comments, invisible on GitHub.
const (
	entryMarker = "<!-- sluice:entry -->"
	olderPrefix = "<!-- sluice:older "
	olderSuffix = " -->"
)

// Entry is one thing sluice said on a pull request: a command's outcome, a
// refusal, a problem, a help text, a deploy outcome. Title is one line of
// markdown (line breaks become spaces); Body is markdown. Callers put text
// a user wrote in Code spans.
type Entry struct {
	Time  time.Time
	Title string
	Body  string
	OK    bool
}

// Sticky renders the sticky comment: Marker, a header, then entries newest
// first by Time (of equal Times, the later in the slice is newer). At most
// maxEntries are shown (maxEntries <= 0: no count limit); the others are counted
// in a closing "N older entries not shown" line. The whole stays under
// MaxSticky bytes: the oldest shown entries are dropped first, and a single
// entry that is too long on its own is cut.
func Sticky(entries []Entry, maxEntries int) string {
	idx := make([]int, len(entries))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := entries[b].Time.Compare(entries[a].Time); c != 0 {
			return c
		}
		return b - a
	})
	blocks := make([]string, 0, len(entries))
	for _, i := range idx {
		if maxEntries > 0 && len(blocks) == maxEntries {
			break
		}
		blocks = append(blocks, renderEntry(entries[i]))
	}
	return assemble(blocks, len(entries)-len(blocks))
}

// Prepend returns the sticky comment body with e added on top of the
// entries body already shows, keeping at most maxEntries (maxEntries <= 0: no
// count limit) and counting the dropped ones as older. body is the current
// sticky comment; "" or a body that does not start with Marker starts a new
// one. The entries already in body are kept as written, so the bot need not
// store them.
func Prepend(body string, e Entry, maxEntries int) string {
	old, older := parseSticky(body)
	blocks := append([]string{renderEntry(e)}, old...)
	if maxEntries > 0 && len(blocks) > maxEntries {
		older += len(blocks) - maxEntries
		blocks = blocks[:maxEntries]
	}
	return assemble(blocks, older)
}

// parseSticky splits a sticky comment into its rendered entries and the
// count of older entries it mentions.
func parseSticky(body string) (blocks []string, older int) {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if !strings.HasPrefix(body, Marker) {
		return nil, 0
	}
	if i := strings.Index(body, "\n"+olderPrefix); i >= 0 {
		rest := body[i+1+len(olderPrefix):]
		if j := strings.Index(rest, olderSuffix); j >= 0 {
			older, _ = strconv.Atoi(rest[:j])
		}
		body = body[:i]
	}
	parts := strings.Split(body, "\n"+entryMarker+"\n")
	for _, p := range parts[1:] {
		if p = strings.TrimSpace(p); p != "" {
			blocks = append(blocks, p+"\n")
		}
	}
	return blocks, older
}

// header opens the sticky comment, after Marker.
const header = "### sluice\n\n<sub>What sluice did on this pull request, newest first. Comment <code>/help</code> for the commands.</sub>\n"

// assemble joins the marker, header, entry blocks and the older-entries
// line, dropping the oldest blocks (and at last cutting the newest) to stay
// under MaxSticky.
func assemble(blocks []string, older int) string {
	footer := func(n int) string {
		if n <= 0 {
			return ""
		}
		return fmt.Sprintf("\n%s%d%s\n<sub>%s not shown.</sub>\n", olderPrefix, n, olderSuffix, plural(n, "older entry"))
	}
	fixed := len(Marker) + 1 + len(header)
	size := fixed + len(footer(older))
	for _, b := range blocks {
		size += len(b) + len(entryMarker) + 2
	}
	for len(blocks) > 1 && size >= MaxSticky {
		last := blocks[len(blocks)-1]
		blocks = blocks[:len(blocks)-1]
		size -= len(last) + len(entryMarker) + 2
		size -= len(footer(older))
		older++
		size += len(footer(older))
	}
	if len(blocks) == 1 && size >= MaxSticky {
		room := MaxSticky - 1 - (size - len(blocks[0]))
		blocks[0] = truncate(blocks[0], room)
	}
	var b strings.Builder
	b.WriteString(Marker + "\n" + header)
	for _, blk := range blocks {
		b.WriteString("\n" + entryMarker + "\n" + blk)
	}
	b.WriteString(footer(older))
	return b.String()
}

// renderEntry renders one entry as a block of the sticky comment: a rule, a
// heading with ✅ or ❌ and the title, the time, and the body.
func renderEntry(e Entry) string {
	mark := "❌"
	if e.OK {
		mark = "✅"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "---\n#### %s %s\n", mark, inert(oneLine(e.Title)))
	if !e.Time.IsZero() {
		fmt.Fprintf(&b, "<sub>%s</sub>\n", e.Time.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if body := strings.TrimSpace(strings.ReplaceAll(e.Body, "\r\n", "\n")); body != "" {
		b.WriteString("\n" + inert(body) + "\n")
		if f := openFenceAtEnd(body); f != "" {
			b.WriteString(f + "\n")
		}
	}
	return b.String()
}

// inert keeps an entry's text from containing the sticky comment's own
// marker lines, so that Prepend cannot be misled by what a log printed.
func inert(s string) string {
	return strings.ReplaceAll(s, "<!-- sluice:", "<!-- sluice\u200b:")
}
