package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/rollout/names"
	"github.com/sluicehq/sluice/rollout/runtime"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	envKeyRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	yamlLineRE  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// The fields each mapping accepts, in the order the SPEC lists them (the
// order matters only for suggestions between equally close names).
var (
	topFields        = []string{"services", "forks"}
	serviceFields    = []string{"build", "run", "health", "env", "instances", "timeouts", "on_merge", "canary", "kubernetes", "sticky", "max_body"}
	timeoutFields    = []string{"build", "start"}
	canaryFields     = []string{"steps", "interval", "max_error_rate", "max_p99"}
	kubernetesFields = []string{"image", "namespace"}
	onMergeValues    = []string{OnMergeFull, OnMergeCanary, OnMergeRedeploy, OnMergeNone}
	forksValues      = []string{ForksDeny, ForksAllow}
)

// ValidEnvName reports whether name may be an environment variable name in
// a manifest: [A-Za-z_][A-Za-z0-9_]*. Front doors that set env values outside
// the file (redeploy overrides) apply the same rule.
func ValidEnvName(name string) bool { return envKeyRE.MatchString(name) }

// Parse reads a sluice.yaml. file names the file in problems (usually
// FileName, or a path relative to the repository root); it is not opened.
//
// Parse either returns a manifest with defaults applied, or nil and an
// *Error listing every problem it found, sorted by position. It is pure and
// safe for concurrent use.
func Parse(file string, data []byte) (*Manifest, error) {
	p := &parser{file: file}
	var m *Manifest
	if root := p.document(data); root != nil {
		m = p.manifest(root)
	}
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, &Error{Problems: p.problems}
	}
	return m, nil
}

type parser struct {
	file     string
	problems []Problem
}

// addf records a problem at node n.
func (p *parser) addf(n *yaml.Node, field, format string, args ...any) {
	p.problems = append(p.problems, Problem{
		File: p.file, Line: n.Line, Column: n.Column,
		Field: field, Message: fmt.Sprintf(format, args...),
	})
}

// document decodes the single YAML document in data and returns its root
// node, or nil after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addf(&yaml.Node{Line: 1, Column: 1}, "", "file is empty; it must declare services")
			return nil
		}
		p.syntax(data, err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.addf(&extra, "", "more than one YAML document; put every service in the first one")
	case !errors.Is(err, io.EOF):
		p.syntax(data, err)
	}
	if len(doc.Content) == 0 {
		p.addf(&yaml.Node{Line: 1, Column: 1}, "", "file is empty; it must declare services")
		return nil
	}
	return doc.Content[0]
}

// syntax records a YAML syntax error at its line. yaml's own line is
// off by one for parser errors and missing when the construct around the
// error starts on the first line, so the line is found by parsing ever
// longer prefixes of data: the first that fails the same way ends on it.
func (p *parser) syntax(data []byte, err error) {
	line, msg := yamlLine(err)
	if l := firstFailingLine(data, msg); l > 0 {
		line = l
	}
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Message: "invalid YAML: " + msg})
}

// maxScanLines bounds firstFailingLine's quadratic search; longer files
// keep yaml's line.
const maxScanLines = 2000

// yamlLine splits a yaml error into its line (1 when it names none) and
// message.
func yamlLine(err error) (int, string) {
	line, msg := 1, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line, msg = n, m[2]
		}
	}
	return line, msg
}

// firstFailingLine returns the number of the first line at which the
// documents in data, cut after that line, fail to parse with msg; 0 when
// none does.
func firstFailingLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxScanLines {
		return 0
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		dec := yaml.NewDecoder(bytes.NewReader(data[:end]))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if err == nil {
				continue
			}
			if _, m := yamlLine(err); m == msg && !errors.Is(err, io.EOF) {
				return i + 1
			}
			break
		}
	}
	return 0
}

func (p *parser) manifest(root *yaml.Node) *Manifest {
	at, root := root, deref(root)
	if root.Kind != yaml.MappingNode {
		p.addf(at, "", "must be a mapping with a services key, got %s", describe(root))
		return nil
	}
	m := &Manifest{Forks: ForksDeny}
	found := false
	p.fields(root, "", topFields, func(name string, key, val *yaml.Node) {
		switch name {
		case "services":
			found = true
			m.Services = p.services(key, val)
		case "forks":
			if f, ok := p.str(val, name); ok && !isNull(deref(val)) {
				if !slices.Contains(forksValues, f) {
					p.addf(val, name, "must be one of %s, got %q", strings.Join(forksValues, ", "), f)
				}
				m.Forks = f
			}
		}
	})
	if !found {
		p.addf(root, "services", "missing required field")
	}
	return m
}

func (p *parser) services(key, at *yaml.Node) []Service {
	val := deref(at)
	if isNull(val) || (val.Kind == yaml.MappingNode && len(val.Content) == 0) {
		p.addf(key, "services", "must declare at least one service")
		return nil
	}
	if val.Kind != yaml.MappingNode {
		p.addf(at, "services", "must be a mapping of service names to services, got %s", describe(val))
		return nil
	}
	var out []Service
	p.pairs(val, "services", func(name string, key, val *yaml.Node) {
		out = append(out, p.service(name, key, val))
	})
	return out
}

func (p *parser) service(name string, key, at *yaml.Node) Service {
	path := "services." + name
	s := Service{
		Name: name, Line: key.Line, Column: key.Column,
		Health:    runtime.DefaultHealth,
		Env:       map[string]string{},
		Instances: DefaultInstances,
		Timeouts:  Timeouts{Build: runtime.DefaultBuildTimeout, Start: runtime.DefaultStartTimeout},
		OnMerge:   DefaultOnMerge,
	}
	if len(name) > names.MaxServiceLength {
		p.addf(key, path, "service name %q is longer than %d characters", name, names.MaxServiceLength)
	} else if !names.ServiceShape(name) {
		p.addf(key, path, "service name %q must be a lowercase DNS label: letters, digits and '-', starting with a letter, not ending with '-'", name)
	}
	val := deref(at)
	if !isNull(val) && val.Kind != yaml.MappingNode {
		p.addf(at, path, "must be a mapping with at least a run field, got %s", describe(val))
		return s
	}
	hasRun := false
	p.fields(val, path, serviceFields, func(field string, k, v *yaml.Node) {
		fpath := path + "." + field
		switch field {
		case "build":
			s.Build, _ = p.str(v, fpath)
		case "run":
			hasRun = true
			if run, ok := p.str(v, fpath); ok {
				if strings.TrimSpace(run) == "" {
					p.addf(v, fpath, "must not be empty")
				}
				s.Run = run
			}
		case "health":
			if h, ok := p.str(v, fpath); ok {
				if !strings.HasPrefix(h, "/") {
					p.addf(v, fpath, "must be an HTTP path starting with \"/\", got %q", h)
				}
				s.Health = h
			}
		case "env":
			p.env(v, fpath, s.Env)
		case "instances":
			if n, ok := p.int(v, fpath); ok {
				switch {
				case n < 1:
					p.addf(v, fpath, "must be at least 1")
				case n > MaxInstances:
					p.addf(v, fpath, "must be at most %d", MaxInstances)
				}
				s.Instances = n
			}
		case "timeouts":
			p.fields(p.mapping(v, fpath), fpath, timeoutFields, func(field string, _, v *yaml.Node) {
				d, ok := p.duration(v, fpath+"."+field)
				if !ok {
					return
				}
				if field == "build" {
					s.Timeouts.Build = d
				} else {
					s.Timeouts.Start = d
				}
			})
		case "on_merge":
			if o, ok := p.str(v, fpath); ok {
				if !slices.Contains(onMergeValues, o) {
					p.addf(v, fpath, "must be one of %s, got %q", strings.Join(onMergeValues, ", "), o)
				}
				s.OnMerge = o
			}
		case "canary":
			s.Canary = p.canary(v, fpath)
		case "kubernetes":
			s.Kubernetes = p.kubernetes(k, v, fpath)
		case "sticky":
			s.Sticky, _ = p.boolean(v, fpath)
		case "max_body":
			s.MaxBodyBytes, _ = p.size(v, fpath)
		}
	})
	if !hasRun {
		p.addf(key, path+".run", "missing required field (the command that starts the service)")
	}
	return s
}

func (p *parser) env(at *yaml.Node, path string, env map[string]string) {
	val := p.mapping(at, path)
	if val == nil {
		return
	}
	p.pairs(val, path, func(name string, key, at *yaml.Node) {
		fpath := path + "." + name
		if !ValidEnvName(name) {
			p.addf(key, fpath, "environment variable name %q must match [A-Za-z_][A-Za-z0-9_]*", name)
		}
		v := deref(at)
		switch {
		case v.Kind != yaml.ScalarNode:
			p.addf(at, fpath, "must be a string, number or boolean, got %s", describe(v))
		case isNull(v):
			env[name] = ""
		default:
			env[name] = v.Value
		}
	})
}

func (p *parser) canary(at *yaml.Node, path string) *Canary {
	c := &Canary{Steps: slices.Clone(DefaultCanarySteps), Interval: DefaultCanaryPeriod}
	val := p.mapping(at, path)
	p.fields(val, path, canaryFields, func(field string, _, v *yaml.Node) {
		fpath := path + "." + field
		switch field {
		case "steps":
			c.Steps = p.steps(v, fpath)
		case "interval":
			if d, ok := p.duration(v, fpath); ok {
				c.Interval = d
			}
		case "max_error_rate":
			if r, ok := p.percent(v, fpath); ok {
				c.MaxErrorRate = r
			}
		case "max_p99":
			if d, ok := p.duration(v, fpath); ok {
				c.MaxP99 = d
			}
		}
	})
	return c
}

func (p *parser) steps(at *yaml.Node, path string) []int {
	val := deref(at)
	if val.Kind != yaml.SequenceNode {
		p.addf(at, path, "must be a list of percentages ending at 100, like [10, 50, 100], got %s", describe(val))
		return nil
	}
	if len(val.Content) == 0 {
		p.addf(at, path, "must not be empty; the last step must be 100")
		return nil
	}
	steps := make([]int, 0, len(val.Content))
	prev := 0
	for i, item := range val.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		n, ok := p.int(item, ipath)
		if !ok {
			continue
		}
		switch {
		case n < 1 || n > 100:
			p.addf(item, ipath, "must be a percentage from 1 to 100, got %d", n)
		case n <= prev:
			p.addf(item, ipath, "must be greater than the step before it (%d)", prev)
		case i == len(val.Content)-1 && n != 100:
			p.addf(item, ipath, "the last step must be 100, got %d", n)
		}
		prev = max(prev, n)
		steps = append(steps, n)
	}
	return steps
}

func (p *parser) kubernetes(key, at *yaml.Node, path string) *Kubernetes {
	k := &Kubernetes{}
	val := p.mapping(at, path)
	if val == nil {
		if isNull(deref(at)) {
			p.addf(key, path+".image", "missing required field")
		}
		return k
	}
	hasImage := false
	p.fields(val, path, kubernetesFields, func(field string, _, v *yaml.Node) {
		fpath := path + "." + field
		s, ok := p.str(v, fpath)
		if !ok {
			return
		}
		switch field {
		case "image":
			hasImage = true
			k.Image = s
			if strings.TrimSpace(s) == "" {
				p.addf(v, fpath, "must not be empty")
			} else if _, err := template.New("image").Option("missingkey=error").Parse(s); err != nil {
				p.addf(v, fpath, "invalid template: %s", strings.TrimPrefix(err.Error(), "template: image:"))
			}
		case "namespace":
			k.Namespace = s
			if s != "" && (len(s) > 63 || !namespaceRE.MatchString(s)) {
				p.addf(v, fpath, "must be a lowercase DNS label of at most 63 characters, got %q", s)
			}
		}
	})
	if !hasImage {
		p.addf(key, path+".image", "missing required field")
	}
	return k
}

// fields walks the mapping m (nil or null: nothing to walk), reporting keys
// that are not in known, and calls fn for the others.
func (p *parser) fields(m *yaml.Node, path string, known []string, fn func(name string, key, val *yaml.Node)) {
	if m == nil || isNull(m) {
		return
	}
	p.pairs(m, path, func(name string, key, val *yaml.Node) {
		if !slices.Contains(known, name) {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := suggest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.addf(key, join(path, name), "%s", msg)
			return
		}
		fn(name, key, val)
	})
}

// pairs walks the key/value pairs of mapping m, reporting keys that are not
// scalars, merge keys and duplicates, and calls fn for the first occurrence
// of every other key.
func (p *parser) pairs(m *yaml.Node, path string, fn func(name string, key, val *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		k := deref(key)
		if k.Kind != yaml.ScalarNode {
			p.addf(key, path, "keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.addf(key, path, "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.addf(key, join(path, k.Value), "duplicate key %q (first defined at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = key
		fn(k.Value, key, val)
	}
}

// mapping returns the mapping at node at, or nil (after recording a problem
// unless the value is null) when it is something else.
func (p *parser) mapping(at *yaml.Node, path string) *yaml.Node {
	val := deref(at)
	if isNull(val) {
		return nil
	}
	if val.Kind != yaml.MappingNode {
		p.addf(at, path, "must be a mapping, got %s", describe(val))
		return nil
	}
	return val
}

// str returns a scalar's text; null is "". Numbers and booleans are kept as
// written, since commands such as "true" are legitimate.
func (p *parser) str(at *yaml.Node, path string) (string, bool) {
	val := deref(at)
	if val.Kind != yaml.ScalarNode {
		p.addf(at, path, "must be a string, got %s", describe(val))
		return "", false
	}
	if isNull(val) {
		return "", true
	}
	return val.Value, true
}

func (p *parser) int(at *yaml.Node, path string) (int, bool) {
	val := deref(at)
	var n int
	if val.Kind != yaml.ScalarNode || val.ShortTag() != "!!int" || val.Decode(&n) != nil {
		p.addf(at, path, "must be a whole number, got %s", describe(val))
		return 0, false
	}
	return n, true
}

func (p *parser) duration(at *yaml.Node, path string) (time.Duration, bool) {
	val := deref(at)
	if val.Kind != yaml.ScalarNode || isNull(val) {
		p.addf(at, path, "must be a duration like \"60s\" or \"10m\", got %s", describe(val))
		return 0, false
	}
	d, err := time.ParseDuration(val.Value)
	if err != nil {
		p.addf(at, path, "must be a duration like \"60s\" or \"10m\", got %q", val.Value)
		return 0, false
	}
	if d <= 0 {
		p.addf(at, path, "must be positive, got %q", val.Value)
		return 0, false
	}
	return d, true
}

func (p *parser) boolean(at *yaml.Node, path string) (bool, bool) {
	val := deref(at)
	var b bool
	if val.Kind != yaml.ScalarNode || val.ShortTag() != "!!bool" || val.Decode(&b) != nil {
		p.addf(at, path, "must be true or false, got %s", describe(val))
		return false, false
	}
	return b, true
}

// sizeUnits are the suffixes size accepts, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}

// size parses a byte size: a whole number, optionally with a unit (B, KB,
// MB, GB, KiB, MiB, GiB), e.g. "10MiB".
func (p *parser) size(at *yaml.Node, path string) (int64, bool) {
	val := deref(at)
	if val.Kind != yaml.ScalarNode || isNull(val) {
		p.addf(at, path, "must be a size like \"10MiB\", got %s", describe(val))
		return 0, false
	}
	n, err := ParseSize(val.Value)
	if err != nil {
		p.addf(at, path, "must be a positive size like \"10MiB\", got %q", val.Value)
		return 0, false
	}
	return n, true
}

// ParseSize parses a positive byte size: a whole number, optionally with a
// unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "10MiB" or "1048576". It is the
// one size syntax of sluice.yaml and of the command line.
func ParseSize(s string) (int64, error) {
	text, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(text, u.suffix); ok {
			text, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a positive size like 512MiB (units B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	return n * mult, nil
}

// FormatSize writes n in the largest binary unit that divides it exactly
// (64KiB, 32MiB), so ParseSize reads it back.
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// percent parses "N%" with 0 <= N <= 100 into the fraction N/100.
func (p *parser) percent(at *yaml.Node, path string) (float64, bool) {
	val := deref(at)
	if val.Kind != yaml.ScalarNode || isNull(val) {
		p.addf(at, path, "must be a percentage like \"1%%\", got %s", describe(val))
		return 0, false
	}
	num, ok := strings.CutSuffix(strings.TrimSpace(val.Value), "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.addf(at, path, "must be a percentage like \"1%%\", got %q", val.Value)
		return 0, false
	}
	if f < 0 || f > 100 {
		p.addf(at, path, "must be between 0%% and 100%%, got %q", val.Value)
		return 0, false
	}
	return f / 100, true
}

// deref follows aliases (*name) to the node they stand for. yaml rejects
// unknown anchors, so the chain always ends; the bound guards anyway.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return fmt.Sprintf("the boolean %s", n.Value)
		case "!!int", "!!float":
			return fmt.Sprintf("the number %s", n.Value)
		default:
			return fmt.Sprintf("the string %q", n.Value)
		}
	}
	return "an unsupported YAML node"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// suggest returns the known name closest to name when it is within edit
// distance 2, or "".
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ServiceNames recovers, best effort, the names of the services a
// sluice.yaml declares even when Parse refuses it: the keys under the
// top-level `services:` mapping that are valid service names, in file
// order. It returns nil when the file is not YAML or has no such mapping.
// Reports use it so that a broken file still fails the check run of each
// service it means (`sluice / web`), not an anonymous one.
func ServiceNames(data []byte) []string {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil
	}
	var found []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "services" || root.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		svcs := root.Content[i+1]
		for j := 0; j+1 < len(svcs.Content); j += 2 {
			if k := svcs.Content[j]; k.Kind == yaml.ScalarNode && names.ServiceShape(k.Value) && !slices.Contains(found, k.Value) {
				found = append(found, k.Value)
			}
		}
	}
	return found
}
