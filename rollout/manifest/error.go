package manifest

import (
	"fmt"
	"strings"
)

// Error is returned by Parse when the file has problems. It lists every
// problem found, sorted by position, never zero of them.
type Error struct {
	Problems []Problem
}

// Error renders one line per problem, e.g.
// "sluice.yaml:4:16: services.hello.instances: must be at least 1".
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Problem is one thing wrong with a manifest.
type Problem struct {
	// File is the name given to Parse.
	File string
	// Line and Column are 1-based and point at the offending key or value.
	// Column is 0 when only the line is known (some YAML syntax errors).
	Line, Column int
	// Field is the dotted path of the field at fault, such as
	// "services.hello.instances" or "services.hello.canary.steps[1]". It is
	// empty for problems with the document as a whole (syntax, empty file).
	Field string
	// Message says what is wrong, in lower case, without the position.
	Message string
}

// String renders the problem as "file:line:col: field: message", leaving out
// the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}
