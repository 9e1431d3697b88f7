package render

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

// maxStatusRows is how many versions a status table lists; versions that
// take traffic, have rules or are stable are always listed.
const maxStatusRows = 20

// maxTail caps the log tail shown in a comment; the runtime's tails are
// smaller, this only guards the sticky comment against a huge detail.
const maxTail = 8 << 10

// Status renders one service for a comment: its URL and stable version, a
// table of versions newest first (status with reason code, traffic with a
// bar, version URL, the rules that send to it), the rules in order, and a
// failure report (see Failure) for each listed version that carries a
// reason. At most 20 versions are listed; the others are named in a line.
func Status(st rollout.ServiceStatus) string {
	var b strings.Builder
	facts := []string{"**" + Code(st.Name) + "**"}
	if st.URL != "" {
		facts = append(facts, link(st.URL))
	}
	if st.Stable != "" {
		facts = append(facts, "stable: "+Code(st.Stable))
	} else {
		facts = append(facts, "no stable version yet")
	}
	b.WriteString(strings.Join(facts, " · ") + "\n\n")
	if len(st.Versions) == 0 {
		b.WriteString("No versions yet. Comment `/deploy` to create one.\n")
		return b.String()
	}

	shown, hidden := statusRows(st)
	b.WriteString("| version | status | traffic | URL | rules |\n| --- | --- | --- | --- | --- |\n")
	for _, v := range shown {
		name := Code(v.Name)
		if v.Name == st.Stable {
			name += " · stable"
		}
		rules := "—"
		if len(v.Rules) > 0 {
			rules = joinInts(v.Rules)
		}
		url := "—"
		if v.URL != "" {
			url = link(v.URL)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, statusCell(v.Version), Bar(v.Traffic), url, rules)
	}
	if len(hidden) > 0 {
		names := make([]string, 0, len(hidden))
		for i, v := range hidden {
			if i == 10 {
				names = append(names, "…")
				break
			}
			names = append(names, Code(v.Name))
		}
		fmt.Fprintf(&b, "\n%s not shown (no traffic, no rules): %s\n", plural(len(hidden), "older version"), strings.Join(names, ", "))
	}

	if len(st.Policy.Rules) > 0 {
		b.WriteString("\n**Rules**, tried in order; the first match wins and other requests follow the split:\n\n")
		for i, r := range st.Policy.Rules {
			fmt.Fprintf(&b, "%d. %s → %s\n", i+1, Code(policy.FormatMatch(r.Match)), Code(r.Version))
		}
	}
	for _, v := range shown {
		if v.Reason.Code == "" {
			continue
		}
		b.WriteString("\n" + Failure(v.Name, v.Reason))
	}
	return b.String()
}

// statusRows orders the versions newest first and picks those to list.
func statusRows(st rollout.ServiceStatus) (shown, hidden []rollout.VersionStatus) {
	vs := slices.Clone(st.Versions)
	slices.SortStableFunc(vs, func(a, b rollout.VersionStatus) int { return b.Seq - a.Seq })
	if len(vs) <= maxStatusRows {
		return vs, nil
	}
	keep := make([]bool, len(vs))
	n := 0
	for i, v := range vs {
		if v.Traffic > 0 || len(v.Rules) > 0 || v.Name == st.Stable {
			keep[i] = true
			n++
		}
	}
	for i := range vs {
		if n >= maxStatusRows {
			break
		}
		if !keep[i] {
			keep[i] = true
			n++
		}
	}
	for i, v := range vs {
		if keep[i] {
			shown = append(shown, v)
		} else {
			hidden = append(hidden, v)
		}
	}
	return shown, hidden
}

// statusCell is a version's status with its emoji and reason code.
func statusCell(v rollout.Version) string {
	s := statusEmoji(v.Status) + string(v.Status)
	if v.Reason.Code != "" {
		s += " · " + Code(string(v.Reason.Code))
	}
	return s
}

func statusEmoji(s rollout.Status) string {
	switch s {
	case rollout.StatusNormal:
		return "✅ "
	case rollout.StatusCreating, rollout.StatusUpdating:
		return "⏳ "
	case rollout.StatusFailed, rollout.StatusDeployFailed:
		return "❌ "
	}
	return ""
}

// Failure renders a failure reason for a comment: the version and reason
// code, what happened, the log tail in a collapsed code block, and the
// suggestion. It returns "" for the zero Reason.
func Failure(version string, r rollout.Reason) string {
	if r == (rollout.Reason{}) {
		return ""
	}
	var b strings.Builder
	code := string(r.Code)
	if code == "" {
		code = "failure"
	}
	fmt.Fprintf(&b, "**❌ %s: %s**\n\n", Code(version), Code(code))
	d := splitDetail(r.Detail)
	if d.text != "" {
		b.WriteString(d.text + "\n\n")
	}
	if d.log != "" {
		fmt.Fprintf(&b, "<details>\n<summary>%s</summary>\n\n%s\n</details>\n\n", escapeHTML(d.label), fenced(keepTail(d.log, maxTail), "text"))
	}
	if r.Suggestion != "" {
		b.WriteString("**What to do:** " + r.Suggestion + "\n")
	}
	return b.String()
}

// detail is a reason's detail split into its sentence and its log tail.
type detail struct {
	text  string // what happened
	label string // what the log is, e.g. "Last lines of the build log"
	log   string
}

// splitDetail separates the log tail a runtime appends to a detail ("…
// Last lines of the build log:\n<tail>") from the sentence before it. A
// detail of several lines without that label keeps its first line as text
// and shows the rest as the log.
func splitDetail(s string) detail {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	head, log, ok := strings.Cut(s, "\n")
	if !ok {
		return detail{text: s}
	}
	d := detail{text: head, label: "More detail", log: log}
	if strings.HasSuffix(head, ":") {
		if i := strings.LastIndex(head, "Last lines of "); i >= 0 {
			d.text = strings.TrimSpace(head[:i])
			d.label = strings.TrimSuffix(head[i:], ":")
		}
	}
	return d
}

// Prediction renders the answer to /predict: the query as asked, the
// version it reaches (or the random split it falls to, or none) and why.
func Prediction(service string, p rollout.Prediction) string {
	q := "an empty query"
	if p.Query != "" {
		q = Code("?" + strings.TrimPrefix(p.Query, "?"))
	}
	asked := fmt.Sprintf("A request to %s with %s", Code(service), q)
	switch {
	case p.Rule > 0 && p.Version != "":
		why := fmt.Sprintf("rule %d matches", p.Rule)
		if len(p.Match) > 0 {
			why += " (" + Code(policy.FormatMatch(p.Match)) + ")"
		}
		switch {
		case p.Rule == 2:
			why += " and rule 1 does not"
		case p.Rule > 2:
			why += fmt.Sprintf(" and rules 1–%d do not", p.Rule-1)
		}
		return fmt.Sprintf("%s goes to **%s**: %s.\n", asked, Code(p.Version), why)
	case len(p.Split) > 1:
		parts := make([]string, len(p.Split))
		for i, w := range p.Split {
			parts[i] = fmt.Sprintf("%s %d%%", Code(w.Version), w.Percent)
		}
		return fmt.Sprintf("%s goes to **one version at random**: no rule matches, so the split decides — %s.\n",
			asked, strings.Join(parts, ", "))
	case p.Version != "":
		return fmt.Sprintf("%s goes to **%s**: no rule matches, and the split sends 100%% to it.\n", asked, Code(p.Version))
	case p.Rule == 0 && len(p.Split) == 0:
		return fmt.Sprintf("%s reaches **no version**: no rule matches and the split is empty, so the service has no version taking traffic yet.\n", asked)
	}
	return fmt.Sprintf("%s reaches **no version**: %s.\n", asked, strings.TrimSuffix(p.Reason, "."))
}

// link renders a URL as a link whose text is the URL without its scheme and
// trailing slash.
func link(u string) string {
	text := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://"), "/")
	return "[" + escapeLinkText(text) + "](" + strings.ReplaceAll(strings.ReplaceAll(u, "(", "%28"), ")", "%29") + ")"
}

func escapeLinkText(s string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, "|", `\|`, "*", `\*`, "_", `\_`).Replace(s)
}

func escapeHTML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// plural counts n things: plural(2, "older entry") is "2 older entries".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if stem, ok := strings.CutSuffix(what, "y"); ok {
		return fmt.Sprintf("%d %sies", n, stem)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
