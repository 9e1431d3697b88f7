package action

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout"
)

// maxSummaryVersions caps the versions a summary table lists besides the
// ones it must (the deployed, touched or traffic-holding versions).
const maxSummaryVersions = 10

// deployReport is what deploy mode writes in the step summary.
type deployReport struct {
	service  string
	version  string
	strategy rollout.Strategy
	wait     bool
	timedOut time.Duration
	status   rollout.ServiceStatus
}

func (r deployReport) markdown() string {
	var b strings.Builder
	v, _ := findVersion(r.status, r.version)
	icon := "✅"
	switch {
	case r.timedOut > 0 || v.Status == rollout.StatusCreating:
		icon = "⏳"
	case v.Status != rollout.StatusNormal:
		icon = "❌"
	}
	fmt.Fprintf(&b, "### %s sluice: %s is %s\n\n", icon, r.version, v.Status)
	fmt.Fprintf(&b, "Service `%s` (%s deploy), %s\n\n", r.service, r.strategy, r.status.URL)
	b.WriteString(versionTable(r.status, []string{r.version}))
	if r.timedOut > 0 {
		fmt.Fprintf(&b, "\nStill %s after %s; the deploy goes on on the server.\n", v.Status, r.timedOut)
	}
	if !r.wait && v.Status == rollout.StatusCreating {
		b.WriteString("\nNot waited for (`wait: false`).\n")
	}
	if v.Status != rollout.StatusNormal && v.Reason.Code != "" {
		b.WriteString(reasonMarkdown(v))
	}
	b.WriteString("\n")
	return b.String()
}

// reasonMarkdown explains a failed version: reason code, detail (with the
// log tail, folded) and suggestion.
func reasonMarkdown(v rollout.VersionStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n**%s**: %s\n", v.Reason.Code, firstLine(v.Reason.Detail))
	if d := strings.TrimSpace(v.Reason.Detail); strings.Contains(d, "\n") {
		fence := "```"
		for strings.Contains(d, fence) {
			fence += "`"
		}
		fmt.Fprintf(&b, "\n<details><summary>Detail</summary>\n\n%s\n%s\n%s\n\n</details>\n", fence, d, fence)
	}
	if v.Reason.Suggestion != "" {
		fmt.Fprintf(&b, "\n**Suggestion:** %s\n", v.Reason.Suggestion)
	}
	return b.String()
}

// versionTable is a markdown table of a service's versions: those named in
// mark (in bold), the stable one, those with traffic or rules, and the
// newest others up to maxSummaryVersions; stopped versions only when marked.
func versionTable(st rollout.ServiceStatus, mark []string) string {
	vs := slices.Clone(st.Versions)
	slices.SortFunc(vs, func(a, b rollout.VersionStatus) int { return b.Seq - a.Seq })
	var b strings.Builder
	b.WriteString("| version | status | traffic | URL |\n|---|---|---:|---|\n")
	others := 0
	for _, v := range vs {
		marked := slices.Contains(mark, v.Name)
		must := marked || v.Name == st.Stable || v.Traffic > 0 || len(v.Rules) > 0
		if !must && (v.Status == rollout.StatusStopped || others >= maxSummaryVersions) {
			continue
		}
		if !must {
			others++
		}
		name := v.Name
		if marked {
			name = "**" + name + "**"
		}
		if v.Name == st.Stable {
			name += " (stable)"
		}
		status := string(v.Status)
		if v.Reason.Code != "" && v.Status != rollout.StatusNormal {
			status += " (" + string(v.Reason.Code) + ")"
		}
		traffic := fmt.Sprintf("%d%%", v.Traffic)
		if len(v.Rules) > 0 {
			rules := make([]string, len(v.Rules))
			for i, n := range v.Rules {
				rules[i] = fmt.Sprint(n)
			}
			traffic += " + rule " + strings.Join(rules, ", ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, cell(status), traffic, cell(v.URL))
	}
	return b.String()
}

// cell keeps a value from breaking its table row.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
