package render

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/rollout"
)

// MaxCheckText is GitHub's limit, in characters, on each string of a Check
// Run's output (title, summary, text). CheckOutput measures bytes, which
// are never fewer than characters.
const MaxCheckText = 65535

// Step is one step of a deploy as a Check Run shows it.
type Step struct {
	Name   string
	Done   bool
	Failed bool
}

// The steps of a deploy, in order.
const (
	StepCheckout = "checkout"
	StepBuild    = "build"
	StepStart    = "start"
	StepHealth   = "health"
)

// CheckOutput builds the Check Run output for a version: a title such as
// "hello-004 is normal" or "hello-004 failed: ProcessExited"; a markdown
// summary with the status, version URL, traffic, origin, the steps as a
// checklist (the first step neither done nor failed is marked running while
// the version is creating or updating) and, on failure, what happened and
// what to do; and a text with the failure detail and the log tail, "" when
// the version carries no reason. Each string is at most MaxCheckText bytes;
// an over-long log keeps its last lines. Callers redact the strings before
// posting them.
func CheckOutput(v rollout.VersionStatus, steps []Step) (title, summary, text string) {
	return cutRunes(checkTitle(v), MaxCheckText), truncate(checkSummary(v, steps), MaxCheckText), checkText(v)
}

func checkTitle(v rollout.VersionStatus) string {
	withCode := func(s string) string {
		if v.Reason.Code != "" {
			return s + ": " + string(v.Reason.Code)
		}
		return s
	}
	switch v.Status {
	case rollout.StatusCreating:
		return v.Name + " is being created"
	case rollout.StatusUpdating:
		return v.Name + " is being redeployed in place"
	case rollout.StatusFailed:
		return withCode(v.Name + " failed")
	case rollout.StatusDeployFailed:
		return withCode(v.Name+" redeploy failed") + " (still serving its previous configuration)"
	}
	return fmt.Sprintf("%s is %s", v.Name, v.Status)
}

func checkSummary(v rollout.VersionStatus, steps []Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- **Status:** %s\n", statusCell(v.Version))
	if v.URL != "" {
		fmt.Fprintf(&b, "- **Version URL:** %s\n", link(v.URL))
	}
	traffic := Bar(v.Traffic)
	if len(v.Rules) > 0 {
		word := " · rule "
		if len(v.Rules) > 1 {
			word = " · rules "
		}
		traffic += word + joinInts(v.Rules)
	}
	fmt.Fprintf(&b, "- **Traffic:** %s\n", traffic)
	if o := origin(v.CreatedBy); o != "" {
		fmt.Fprintf(&b, "- **Created by:** %s\n", o)
	}
	if len(steps) > 0 {
		b.WriteString("\n### Steps\n\n")
		running := v.Status == rollout.StatusCreating || v.Status == rollout.StatusUpdating
		for _, s := range steps {
			switch {
			case s.Failed:
				fmt.Fprintf(&b, "- [ ] %s ❌ failed\n", s.Name)
			case s.Done:
				fmt.Fprintf(&b, "- [x] %s\n", s.Name)
			case running:
				fmt.Fprintf(&b, "- [ ] %s ⏳\n", s.Name)
				running = false
			default:
				fmt.Fprintf(&b, "- [ ] %s\n", s.Name)
			}
		}
	}
	if v.Reason.Code != "" {
		if d := splitDetail(v.Reason.Detail); d.text != "" {
			b.WriteString("\n### What happened\n\n" + d.text + "\n")
		}
		if v.Reason.Suggestion != "" {
			b.WriteString("\n### What to do\n\n" + v.Reason.Suggestion + "\n")
		}
	}
	return b.String()
}

func checkText(v rollout.VersionStatus) string {
	if v.Reason == (rollout.Reason{}) {
		return ""
	}
	d := splitDetail(v.Reason.Detail)
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", Code(string(v.Reason.Code)))
	if d.text != "" {
		b.WriteString(d.text + "\n\n")
	}
	head := b.String()
	if d.log == "" {
		return truncate(head, MaxCheckText)
	}
	label := "**" + d.label + ":**\n\n"
	// Fence overhead: two fences of at most a few bytes more than the
	// longest backtick run, the info string and newlines.
	overhead := 2*(longestRun(d.log, '`')+4) + len("text") + 64
	budget := MaxCheckText - len(head) - len(label) - overhead
	if budget < 256 {
		return truncate(head, MaxCheckText)
	}
	return truncate(head+label+fenced(keepTail(d.log, budget), "text"), MaxCheckText)
}

// origin says who or what created a version, without @-mentions.
func origin(o rollout.Origin) string {
	if o.Via == "" {
		return ""
	}
	s := string(o.Via)
	if o.Actor != "" {
		s += " by " + o.Actor
	}
	if o.PR > 0 {
		s += fmt.Sprintf(", PR #%d", o.PR)
	}
	if o.Ref != "" {
		ref := o.Ref
		if len(ref) == 40 {
			ref = ref[:12]
		}
		s += ", " + Code(ref)
	}
	return s
}
