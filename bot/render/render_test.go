package render

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/bot/command"
	"github.com/sluicehq/sluice/rollout"
)

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		percent int
		want    string
	}{
		{0, "░░░░░░░░░░ 0%"},
		{1, "█░░░░░░░░░ 1%"},
		{5, "█░░░░░░░░░ 5%"},
		{10, "█░░░░░░░░░ 10%"},
		{14, "█░░░░░░░░░ 14%"},
		{15, "██░░░░░░░░ 15%"},
		{50, "█████░░░░░ 50%"},
		{55, "██████░░░░ 55%"},
		{94, "█████████░ 94%"},
		{99, "█████████░ 99%"},
		{100, "██████████ 100%"},
		{-5, "░░░░░░░░░░ 0%"},
		{120, "██████████ 100%"},
	} {
		if got := Bar(tc.percent); got != tc.want {
			t.Errorf("Bar(%d) = %q, want %q", tc.percent, got, tc.want)
		}
	}
}

func TestCode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/deploy", "`/deploy`"},
		{"a`b", "``a`b``"},
		{"`x`", "`` `x` ``"},
		{"a\nb", "`a b`"},
		{"", "` `"},
		{" x ", "`  x  `"},
	} {
		if got := Code(tc.in); got != tc.want {
			t.Errorf("Code(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitDetail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want detail
	}{
		{"Generation 2 has no work directory.", detail{text: "Generation 2 has no work directory."}},
		{buildDetail, detail{text: "The build command `go build -o app .` exited with status 1 after 2.1s.",
			label: "Last lines of the build log",
			log:   "# example.com/hello\n./main.go:12:2: undefined: greet\n./main.go:14:9: too many return values"}},
		{"boom\nstack line 1\r\nstack line 2\n", detail{text: "boom", label: "More detail", log: "stack line 1\nstack line 2"}},
	} {
		if got := splitDetail(tc.in); got != tc.want {
			t.Errorf("splitDetail(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("line é\n", 20000)
	for _, tc := range []struct {
		name  string
		s     string
		limit int
	}{
		{"fits", "short", 100},
		{"plain", long, 1000},
		{"in a fence", "intro\n\n````go\n" + long + "````\n", 5000},
		{"tiny limit", long, 10},
		{"no newline", strings.Repeat("é", 5000), 999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := truncate(tc.s, tc.limit)
			if len(got) > tc.limit {
				t.Fatalf("len %d > limit %d", len(got), tc.limit)
			}
			if !utf8.ValidString(got) {
				t.Fatal("cut inside a UTF-8 sequence")
			}
			if len(tc.s) <= tc.limit {
				if got != tc.s {
					t.Fatalf("changed a string that fits: %q", got)
				}
				return
			}
			if f := openFenceAtEnd(got); f != "" {
				t.Fatalf("fence %q left open", f)
			}
			if tc.limit > 100 && !strings.HasSuffix(got, truncated) {
				t.Fatalf("no truncation note at the end: %q", got[max(0, len(got)-80):])
			}
		})
	}
}

func TestKeepTail(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "log line %d\n", i)
	}
	got := keepTail(b.String(), 1000)
	if len(got) > 1000 || !strings.HasPrefix(got, "[… earlier lines left out …]\nlog line ") || !strings.HasSuffix(got, "log line 4999\n") {
		t.Fatalf("keepTail = %d bytes %q…", len(got), got[:60])
	}
	if keepTail("short", 1000) != "short" {
		t.Fatal("keepTail changed a short log")
	}
}

func TestCheckOutputLimits(t *testing.T) {
	var log strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&log, "step %d: compiling ```package``` ü\n", i)
	}
	v := vs("hello-009", 9, rollout.StatusFailed, 0)
	v.Name = strings.Repeat("x", 70000)
	v.Reason = rollout.Reason{Code: "BuildFailed",
		Detail:     "The build failed. Last lines of the build log:\n" + log.String() + "final line",
		Suggestion: strings.Repeat("Fix it. ", 10000)}
	steps := []Step{{Name: StepCheckout, Done: true}, {Name: StepBuild, Failed: true}}
	title, summary, text := CheckOutput(v, steps)
	for name, s := range map[string]string{"title": title, "summary": summary, "text": text} {
		if len(s) > MaxCheckText {
			t.Errorf("%s is %d bytes, over %d", name, len(s), MaxCheckText)
		}
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8", name)
		}
	}
	if len(text) < MaxCheckText-2000 {
		t.Errorf("text is %d bytes; the log should fill most of the %d allowed", len(text), MaxCheckText)
	}
	// The end of the log is what explains a failure: it must survive.
	if !strings.Contains(text, "final line\n````\n") || !strings.Contains(text, "[… earlier lines left out …]") {
		t.Errorf("text lost the end of the log or the note: …%q", text[len(text)-200:])
	}
	if !strings.HasPrefix(text, "### `BuildFailed`\n\nThe build failed.\n\n**Last lines of the build log:**\n\n````text\n") {
		t.Errorf("text starts %q", text[:120])
	}
	if openFenceAtEnd(summary) != "" || openFenceAtEnd(text) != "" {
		t.Error("a fence is left open")
	}
}

func TestStickyLimits(t *testing.T) {
	big := "```\n" + strings.Repeat("0123456789abcdef\n", 1000) + "```" // ~17 KB
	var entries []Entry
	for i := range 12 {
		entries = append(entries, Entry{Time: t0.Add(time.Duration(i) * time.Minute), Title: fmt.Sprintf("entry %d", i), Body: big, OK: true})
	}
	got := Sticky(entries, 10)
	if len(got) >= MaxSticky {
		t.Fatalf("sticky is %d bytes, want under %d", len(got), MaxSticky)
	}
	if !strings.HasPrefix(got, Marker+"\n") {
		t.Fatal("sticky does not start with the marker")
	}
	// 17 KB each: three fit; the newest ones are kept.
	for i := 11; i >= 9; i-- {
		if !strings.Contains(got, fmt.Sprintf("entry %d\n", i)) {
			t.Errorf("entry %d missing", i)
		}
	}
	if strings.Contains(got, "entry 8\n") || !strings.Contains(got, "9 older entries not shown") {
		t.Errorf("want entries 0..8 summarised as older:\n%s", got[len(got)-200:])
	}

	huge := Sticky([]Entry{{Time: t0, Title: "huge", Body: "```\n" + strings.Repeat("é", 100000) + "\n```"}}, 10)
	if len(huge) >= MaxSticky || !utf8.ValidString(huge) || openFenceAtEnd(huge) != "" {
		t.Fatalf("one huge entry: %d bytes, valid %v, open fence %q", len(huge), utf8.ValidString(huge), openFenceAtEnd(huge))
	}
	if !strings.Contains(huge, "#### ❌ huge") || !strings.Contains(huge, "truncated") {
		t.Error("huge entry lost its title or the truncation note")
	}
}

func TestStickyOrder(t *testing.T) {
	got := Sticky([]Entry{
		{Time: t0.Add(time.Minute), Title: "b"},
		{Time: t0, Title: "a"},
		{Time: t0.Add(time.Minute), Title: "c"}, // same time as b, later in the slice: newer
	}, 0)
	ib, ia, ic := strings.Index(got, "❌ b\n"), strings.Index(got, "❌ a\n"), strings.Index(got, "❌ c\n")
	if ia < 0 || ib < 0 || ic < 0 || !(ic < ib && ib < ia) {
		t.Fatalf("want c, b, a; got positions c=%d b=%d a=%d\n%s", ic, ib, ia, got)
	}
	if strings.Contains(got, "not shown") {
		t.Error("max 0 must show every entry")
	}
	if Sticky(nil, 5) != Marker+"\n"+header {
		t.Errorf("empty sticky = %q", Sticky(nil, 5))
	}
}

func TestPrepend(t *testing.T) {
	e := func(i int) Entry {
		return Entry{Time: t0.Add(time.Duration(i) * time.Minute), Title: fmt.Sprintf("entry %d", i),
			Body: fmt.Sprintf("body %d\n\n```\nlog\n```", i), OK: i%2 == 0}
	}
	// Prepending one by one gives what Sticky renders from all entries.
	body := ""
	var all []Entry
	for i := range 7 {
		body = Prepend(body, e(i), 4)
		all = append(all, e(i))
		if want := Sticky(all, 4); body != want {
			t.Fatalf("after %d entries Prepend differs from Sticky:\n%s\n---\n%s", i+1, body, want)
		}
	}
	if !strings.Contains(body, "3 older entries not shown") {
		t.Errorf("want 3 older entries:\n%s", body)
	}
	// CRLF as stored by some clients, and a body that is not a sticky.
	if got := Prepend(strings.ReplaceAll(body, "\n", "\r\n"), e(7), 4); got != Sticky(append(all, e(7)), 4) {
		t.Error("Prepend of a CRLF body differs")
	}
	if got := Prepend("some other comment", e(1), 4); got != Sticky([]Entry{e(1)}, 4) {
		t.Error("Prepend of a foreign body kept something")
	}
	// A log that prints the marker lines cannot split or count entries.
	evil := Entry{Time: t0, Title: "<!-- sluice:entry -->", Body: "x\n<!-- sluice:entry -->\n<!-- sluice:older 99 -->\ny"}
	got := Prepend(Prepend("", evil, 10), e(1), 10)
	if n := strings.Count(got, "\n"+entryMarker+"\n"); n != 2 {
		t.Errorf("want 2 entries, found %d markers:\n%s", n, got)
	}
	if strings.Contains(got, "not shown") {
		t.Errorf("a forged older count was read:\n%s", got)
	}
}

func TestProblemAndRefusal(t *testing.T) {
	rs := command.Parse("/deploy\n/canary 10")
	if Problem(rs[0]) != "" {
		t.Error("Problem of a valid command is not empty")
	}
	p := Problem(rs[1])
	for _, want := range []string{"`/canary 10` (line 2)", "lacks the % sign", "Usage: `/canary N% [service]`"} {
		if !strings.Contains(p, want) {
			t.Errorf("Problem = %q, want it to contain %q", p, want)
		}
	}
	// Words a user wrote are quoted in the problem: they must not mention
	// anyone or turn into markup.
	p = Problem(command.Parse("/deploy @acme/everyone")[0])
	if !strings.Contains(p, "`/deploy @acme/everyone`") || !strings.Contains(p, "\"@\u200bacme/everyone\" is not") {
		t.Errorf("Problem = %q", p)
	}
	p = Problem(command.Parse("/status <b>*x*</b>")[0])
	if !strings.Contains(p, `"\<b\>\*x\*\</b\>" is not`) {
		t.Errorf("Problem = %q", p)
	}
	r := Refusal("alice", "read")
	for _, want := range []string{"@alice", "**write**", "maintain", "admin", "**read**", "nothing was changed"} {
		if !strings.Contains(r, want) {
			t.Errorf("Refusal = %q, want it to contain %q", r, want)
		}
	}
}

func TestFailureZero(t *testing.T) {
	if Failure("hello-001", rollout.Reason{}) != "" {
		t.Error("Failure of the zero Reason is not empty")
	}
	if _, _, text := CheckOutput(vs("hello-001", 1, rollout.StatusNormal, 100), nil); text != "" {
		t.Errorf("text of a normal version = %q", text)
	}
}

func TestStatusManyVersions(t *testing.T) {
	st := rollout.ServiceStatus{Name: "hello", Stable: "hello-002"}
	for i := 1; i <= 40; i++ {
		st.Versions = append(st.Versions, vs(fmt.Sprintf("hello-%03d", i), i, rollout.StatusStopped, 0))
	}
	st.Versions[1].Traffic = 100 // hello-002, the stable one, is old but must be listed
	got := Status(st)
	rows := strings.Count(got, "\n| `hello-")
	if rows != maxStatusRows {
		t.Errorf("%d rows, want %d", rows, maxStatusRows)
	}
	if !strings.Contains(got, "| `hello-002` · stable |") || !strings.Contains(got, "| `hello-040` |") {
		t.Error("stable or newest version missing")
	}
	if !strings.Contains(got, "20 older versions not shown") || strings.Contains(got, "| `hello-001` |") {
		t.Errorf("hidden versions wrong:\n%s", got)
	}
}
