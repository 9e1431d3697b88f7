package manifest

import (
	"errors"
	"github.com/sluicehq/sluice/rollout/runtime"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAllFields(t *testing.T) {
	src := `# the services of this repository
services:
  hello:
    build: go build -o app .
    run: ./app
    health: /healthz
    env: {GREETING: hi, COUNT: 3, DEBUG: true, RATIO: 1.50, EMPTY: }
    instances: 2
    timeouts: {build: 5m, start: 90s}
    on_merge: canary
    canary: {steps: [10, 50, 100], interval: 10m, max_error_rate: 1.5%, max_p99: 500ms}
    kubernetes: {image: "ghcr.io/acme/hello:{{.SHA}}", namespace: web}
  worker:
    run: ./worker
`
	m, err := Parse(FileName, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Manifest{Forks: ForksDeny, Services: []Service{
		{
			Name: "hello", Line: 3, Column: 3,
			Build:     "go build -o app .",
			Run:       "./app",
			Health:    "/healthz",
			Env:       map[string]string{"GREETING": "hi", "COUNT": "3", "DEBUG": "true", "RATIO": "1.50", "EMPTY": ""},
			Instances: 2,
			Timeouts:  Timeouts{Build: 5 * time.Minute, Start: 90 * time.Second},
			OnMerge:   OnMergeCanary,
			Canary: &Canary{
				Steps: []int{10, 50, 100}, Interval: 10 * time.Minute,
				MaxErrorRate: 0.015, MaxP99: 500 * time.Millisecond,
			},
			Kubernetes: &Kubernetes{Image: "ghcr.io/acme/hello:{{.SHA}}", Namespace: "web"},
		},
		{
			Name: "worker", Line: 13, Column: 3,
			Run:       "./worker",
			Health:    runtime.DefaultHealth,
			Env:       map[string]string{},
			Instances: DefaultInstances,
			Timeouts:  Timeouts{Build: runtime.DefaultBuildTimeout, Start: runtime.DefaultStartTimeout},
			OnMerge:   DefaultOnMerge,
		},
	}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Parse mismatch\n got: %+v\nwant: %+v", m, want)
	}
	if s, ok := m.Service("worker"); !ok || s.Run != "./worker" {
		t.Errorf("Service(worker) = %+v, %v", s, ok)
	}
	if _, ok := m.Service("nope"); ok {
		t.Errorf("Service(nope) found a service")
	}
}

func TestParseDefaultsAndAliases(t *testing.T) {
	src := `services:
  api:
    run: ./api
    env: &common {REGION: eu}
    canary: {}
  web:
    run: ./web
    env: *common
    canary:
`
	m, err := Parse(FileName, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	web, _ := m.Service("web")
	if web.Env["REGION"] != "eu" {
		t.Errorf("web env through alias = %v, want REGION=eu", web.Env)
	}
	for _, s := range m.Services {
		want := &Canary{Steps: DefaultCanarySteps, Interval: DefaultCanaryPeriod}
		if !reflect.DeepEqual(s.Canary, want) {
			t.Errorf("%s canary = %+v, want defaults %+v", s.Name, s.Canary, want)
		}
	}
}

// problem is what a test expects of one Problem: its position, field, a
// fragment of its message, and optionally a fragment it must not contain.
type problem struct {
	line, col int
	field     string
	msg       string
	not       string
}

// svc wraps service fields (indented by four spaces) in a minimal manifest
// whose service "hello" starts on line 2 and whose fields start on line 3.
func svc(lines ...string) string {
	return "services:\n  hello:\n" + "    " + strings.Join(lines, "\n    ") + "\n"
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []problem
	}{
		// unknown fields, with and without suggestions
		{"unknown service field", svc("run: ./app", "instancs: 2"),
			[]problem{{4, 5, "services.hello.instancs", `unknown field "instancs" (did you mean "instances"?)`, ""}}},
		{"unknown field without suggestion", svc("run: ./app", "colour: red"),
			[]problem{{4, 5, "services.hello.colour", `unknown field "colour"`, "did you mean"}}},
		{"unknown top-level field", "servics:\n  hello: {run: x}\n",
			[]problem{
				{1, 1, "servics", `unknown field "servics" (did you mean "services"?)`, ""},
				{1, 1, "services", "missing required field", ""},
			}},
		{"unknown timeouts field", svc("run: ./app", "timeouts: {biuld: 1m}"),
			[]problem{{4, 16, "services.hello.timeouts.biuld", `(did you mean "build"?)`, ""}}},
		{"unknown canary field", svc("run: ./app", "canary: {step: [100]}"),
			[]problem{{4, 14, "services.hello.canary.step", `(did you mean "steps"?)`, ""}}},
		{"unknown kubernetes field", svc("run: ./app", "kubernetes: {image: x, replicas: 2}"),
			[]problem{{4, 28, "services.hello.kubernetes.replicas", `unknown field "replicas"`, ""}}},
		{"merge key", "base: &b {run: x}\nservices:\n  hello:\n    <<: *b\n",
			[]problem{
				{1, 1, "base", `unknown field "base"`, ""},
				{3, 3, "services.hello.run", "missing required field", ""},
				{4, 5, "services.hello", "merge keys", ""},
			}},

		// wrong types
		{"mapping where a string is expected", svc("run: {cmd: ./app}"),
			[]problem{{3, 10, "services.hello.run", "must be a string, got a mapping", ""}}},
		{"list where a string is expected", svc("run: ./app", "health: [/a]"),
			[]problem{{4, 13, "services.hello.health", "must be a string, got a list", ""}}},
		{"instances is a word", svc("run: ./app", "instances: two"),
			[]problem{{4, 16, "services.hello.instances", `must be a whole number, got the string "two"`, ""}}},
		{"instances is a fraction", svc("run: ./app", "instances: 1.5"),
			[]problem{{4, 16, "services.hello.instances", "must be a whole number, got the number 1.5", ""}}},
		{"env is a list", svc("run: ./app", "env: [A, B]"),
			[]problem{{4, 10, "services.hello.env", "must be a mapping, got a list", ""}}},
		{"timeouts is a string", svc("run: ./app", "timeouts: 10m"),
			[]problem{{4, 15, "services.hello.timeouts", "must be a mapping", ""}}},
		{"service is a string", "services:\n  hello: ./app\n",
			[]problem{{2, 10, "services.hello", "must be a mapping with at least a run field", ""}}},
		{"services is a list", "services:\n  - hello\n",
			[]problem{{2, 3, "services", "must be a mapping of service names to services, got a list", ""}}},
		{"document is a list", "- hello\n- world\n",
			[]problem{{1, 1, "", "must be a mapping with a services key, got a list", ""}}},
		{"key is a mapping", svc("run: ./app", "? {a: b}", ": c"),
			[]problem{{4, 7, "services.hello", "keys must be strings, got a mapping", ""}}},

		// impossible values
		{"instances zero", svc("run: ./app", "instances: 0"),
			[]problem{{4, 16, "services.hello.instances", "must be at least 1", ""}}},
		{"instances negative", svc("run: ./app", "instances: -3"),
			[]problem{{4, 16, "services.hello.instances", "must be at least 1", ""}}},
		{"instances too many", svc("run: ./app", "instances: 65"),
			[]problem{{4, 16, "services.hello.instances", "must be at most 64", ""}}},
		{"timeout zero", svc("run: ./app", "timeouts: {build: 0s}"),
			[]problem{{4, 23, "services.hello.timeouts.build", "must be positive", ""}}},
		{"timeout negative", svc("run: ./app", "timeouts: {start: -5s}"),
			[]problem{{4, 23, "services.hello.timeouts.start", "must be positive", ""}}},
		{"timeout unparsable", svc("run: ./app", "timeouts: {start: soon}"),
			[]problem{{4, 23, "services.hello.timeouts.start", `must be a duration like "60s" or "10m", got "soon"`, ""}}},
		{"timeout without unit", svc("run: ./app", "timeouts:", "  start: 60"),
			[]problem{{5, 14, "services.hello.timeouts.start", `must be a duration`, ""}}},
		{"health without slash", svc("run: ./app", "health: healthz"),
			[]problem{{4, 13, "services.hello.health", `must be an HTTP path starting with "/"`, ""}}},
		{"on_merge unknown", svc("run: ./app", "on_merge: always"),
			[]problem{{4, 15, "services.hello.on_merge", `must be one of full, canary, redeploy, none, got "always"`, ""}}},
		{"canary steps decreasing", svc("run: ./app", "canary: {steps: [50, 10, 100]}"),
			[]problem{{4, 26, "services.hello.canary.steps[1]", "must be greater than the step before it (50)", ""}}},
		{"canary steps repeated", svc("run: ./app", "canary: {steps: [50, 50, 100]}"),
			[]problem{{4, 26, "services.hello.canary.steps[1]", "must be greater than the step before it", ""}}},
		{"canary steps not ending at 100", svc("run: ./app", "canary: {steps: [10, 50]}"),
			[]problem{{4, 26, "services.hello.canary.steps[1]", "the last step must be 100, got 50", ""}}},
		{"canary step zero", svc("run: ./app", "canary: {steps: [0, 100]}"),
			[]problem{{4, 22, "services.hello.canary.steps[0]", "must be a percentage from 1 to 100, got 0", ""}}},
		{"canary step above 100", svc("run: ./app", "canary: {steps: [10, 150]}"),
			[]problem{{4, 26, "services.hello.canary.steps[1]", "must be a percentage from 1 to 100, got 150", ""}}},
		{"canary steps empty", svc("run: ./app", "canary: {steps: []}"),
			[]problem{{4, 21, "services.hello.canary.steps", "must not be empty", ""}}},
		{"canary steps not a list", svc("run: ./app", "canary: {steps: 100}"),
			[]problem{{4, 21, "services.hello.canary.steps", "must be a list of percentages", ""}}},
		{"canary interval zero", svc("run: ./app", "canary: {interval: 0s}"),
			[]problem{{4, 24, "services.hello.canary.interval", "must be positive", ""}}},
		{"max_error_rate without percent", svc("run: ./app", "canary: {max_error_rate: 1}"),
			[]problem{{4, 30, "services.hello.canary.max_error_rate", `must be a percentage like "1%", got "1"`, ""}}},
		{"max_error_rate above 100", svc("run: ./app", "canary: {max_error_rate: 150%}"),
			[]problem{{4, 30, "services.hello.canary.max_error_rate", "must be between 0% and 100%", ""}}},
		{"max_error_rate negative", svc("run: ./app", "canary: {max_error_rate: -1%}"),
			[]problem{{4, 30, "services.hello.canary.max_error_rate", "must be between 0% and 100%", ""}}},
		{"max_error_rate not a number", svc("run: ./app", "canary: {max_error_rate: NaN%}"),
			[]problem{{4, 30, "services.hello.canary.max_error_rate", "must be a percentage", ""}}},
		{"max_p99 unparsable", svc("run: ./app", "canary: {max_p99: fast}"),
			[]problem{{4, 23, "services.hello.canary.max_p99", "must be a duration", ""}}},
		{"env key starts with a digit", svc("run: ./app", "env: {1BAD: x}"),
			[]problem{{4, 11, "services.hello.env.1BAD", "must match [A-Za-z_][A-Za-z0-9_]*", ""}}},
		{"env key with a dash", svc("run: ./app", "env:", "  MY-VAR: x"),
			[]problem{{5, 7, "services.hello.env.MY-VAR", `environment variable name "MY-VAR"`, ""}}},
		{"env value is a mapping", svc("run: ./app", "env: {A: {b: c}}"),
			[]problem{{4, 14, "services.hello.env.A", "must be a string, number or boolean, got a mapping", ""}}},
		{"env value is a list", svc("run: ./app", "env:", "  A: [1, 2]"),
			[]problem{{5, 10, "services.hello.env.A", "must be a string, number or boolean, got a list", ""}}},
		{"kubernetes without image", svc("run: ./app", "kubernetes: {namespace: web}"),
			[]problem{{4, 5, "services.hello.kubernetes.image", "missing required field", ""}}},
		{"kubernetes empty", svc("run: ./app", "kubernetes:"),
			[]problem{{4, 5, "services.hello.kubernetes.image", "missing required field", ""}}},
		{"kubernetes image bad template", svc("run: ./app", `kubernetes: {image: "x:{{.SHA"}`),
			[]problem{{4, 25, "services.hello.kubernetes.image", "invalid template", ""}}},
		{"kubernetes namespace not a label", svc("run: ./app", "kubernetes: {image: x, namespace: Web}"),
			[]problem{{4, 39, "services.hello.kubernetes.namespace", `must be a lowercase DNS label`, ""}}},

		// required things
		{"missing run", svc("build: make"),
			[]problem{{2, 3, "services.hello.run", "missing required field", ""}}},
		{"service with no fields", "services:\n  hello:\n",
			[]problem{{2, 3, "services.hello.run", "missing required field", ""}}},
		{"empty run", svc(`run: ""`),
			[]problem{{3, 10, "services.hello.run", "must not be empty", ""}}},
		{"no services key", "{}\n",
			[]problem{{1, 1, "services", "missing required field", ""}}},
		{"empty services map", "services: {}\n",
			[]problem{{1, 1, "services", "must declare at least one service", ""}}},
		{"null services", "# comment\nservices:\n",
			[]problem{{2, 1, "services", "must declare at least one service", ""}}},

		// service names
		{"uppercase service name", "services:\n  Hello: {run: x}\n",
			[]problem{{2, 3, "services.Hello", "must be a lowercase DNS label", ""}}},
		{"underscore in service name", "services:\n  hello_world: {run: x}\n",
			[]problem{{2, 3, "services.hello_world", "must be a lowercase DNS label", ""}}},
		{"service name starts with a digit", "services:\n  1hello: {run: x}\n",
			[]problem{{2, 3, "services.1hello", "must be a lowercase DNS label", ""}}},
		{"service name ends with a dash", "services:\n  hello-: {run: x}\n",
			[]problem{{2, 3, "services.hello-", "must be a lowercase DNS label", ""}}},
		{"service name too long", "services:\n  " + strings.Repeat("a", 41) + ": {run: x}\n",
			[]problem{{2, 3, "services." + strings.Repeat("a", 41), "longer than 40 characters", ""}}},

		// the document itself
		{"empty file", "", []problem{{1, 1, "", "file is empty", ""}}},
		{"blank file", "  \n\n", []problem{{1, 1, "", "file is empty", ""}}},
		{"only comments", "# nothing yet\n", []problem{{1, 1, "", "file is empty", ""}}},
		{"tab indentation", "services:\n  hello:\n\trun: x\n",
			[]problem{{3, 0, "", "invalid YAML: found character that cannot start any token", ""}}},
		{"unclosed quote", "services:\n  hello:\n    run: 'x\n",
			[]problem{{3, 0, "", "invalid YAML: found unexpected end of stream", ""}}},
		{"tab on the fourth line", "services:\n  hello:\n    run: ./app\n\tinstances: 2\n",
			[]problem{{4, 0, "", "invalid YAML: found a tab character that violates indentation", ""}}},
		{"unclosed flow mapping", "services:\n  hello:\n    run: ./app\n    env: {A: b\n    health: /x\n",
			[]problem{{4, 0, "", "invalid YAML: did not find expected ',' or '}'", ""}}},
		{"bad indentation on the fourth line (yaml says line 1)", "services:\n  hello:\n    run: ./app\n   health: /x\n",
			[]problem{{4, 0, "", "invalid YAML: did not find expected key", ""}}},
		{"bad second document", "services:\n  hello: {run: a}\n---\nx: [\n",
			[]problem{{4, 0, "", "invalid YAML: did not find expected node content", ""}}},
		{"syntax error on the first line", "services: a: b\n",
			[]problem{{1, 0, "", "invalid YAML: mapping values are not allowed", ""}}},
		{"duplicate field", svc("run: ./app", "health: /a", "run: ./other"),
			[]problem{{5, 5, "services.hello.run", `duplicate key "run" (first defined at line 3)`, ""}}},
		{"duplicate service", "services:\n  hello: {run: a}\n  hello: {run: b}\n",
			[]problem{{3, 3, "services.hello", `duplicate key "hello" (first defined at line 2)`, ""}}},
		{"two documents", "services:\n  hello: {run: a}\n---\nservices:\n  bye: {run: b}\n",
			[]problem{{3, 1, "", "more than one YAML document", ""}}},

		// every problem is reported, in position order
		{"several problems sorted by position", "services:\n  web:\n    instances: 0\n    health: x\n  API: {run: y, on_merge: sometimes}\n",
			[]problem{
				{2, 3, "services.web.run", "missing required field", ""},
				{3, 16, "services.web.instances", "must be at least 1", ""},
				{4, 13, "services.web.health", "must be an HTTP path", ""},
				{5, 3, "services.API", "must be a lowercase DNS label", ""},
				{5, 27, "services.API.on_merge", "must be one of", ""},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(FileName, []byte(tt.src))
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse = %+v, %v; want *Error", m, err)
			}
			if m != nil {
				t.Errorf("Parse returned a manifest along with an error")
			}
			got := perr.Problems
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.File != FileName || g.Line != w.line || g.Column != w.col || g.Field != w.field ||
					!strings.Contains(g.Message, w.msg) || (w.not != "" && strings.Contains(g.Message, w.not)) {
					t.Errorf("problem %d = %s\nwant %d:%d %s: ...%s...", i, g, w.line, w.col, w.field, w.msg)
				}
			}
		})
	}
}

func TestErrorRendering(t *testing.T) {
	_, err := Parse(FileName, []byte(svc("run: ./app", "instances: 0", "health: x")))
	want := "sluice.yaml:4:16: services.hello.instances: must be at least 1\n" +
		`sluice.yaml:5:13: services.hello.health: must be an HTTP path starting with "/", got "x"`
	if err == nil || err.Error() != want {
		t.Fatalf("Error() =\n%v\nwant\n%s", err, want)
	}
	p := Problem{File: "a.yaml", Line: 3, Message: "invalid YAML: boom"}
	if got := p.String(); got != "a.yaml:3: invalid YAML: boom" {
		t.Errorf("String() without column = %q", got)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"run", "run", 0}, {"", "abc", 3}, {"instancs", "instances", 1},
		{"helth", "health", 1}, {"biuld", "build", 2}, {"colour", "canary", 5},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzParse checks Parse's contract on arbitrary input: a manifest with at
// least one service, or an *Error with problems sorted by position.
func FuzzParse(f *testing.F) {
	f.Add([]byte(svc("run: ./app", "canary: {steps: [10, 100]}")))
	f.Add([]byte("services:\n  a: &x {run: b}\n  b: *x\n"))
	f.Add([]byte("services: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(FileName, data)
		if err == nil {
			if m == nil || len(m.Services) == 0 {
				t.Fatalf("no error but manifest %+v", m)
			}
			return
		}
		var perr *Error
		if !errors.As(err, &perr) || len(perr.Problems) == 0 {
			t.Fatalf("error %v is not an *Error with problems", err)
		}
		for i := 1; i < len(perr.Problems); i++ {
			a, b := perr.Problems[i-1], perr.Problems[i]
			if a.Line > b.Line || (a.Line == b.Line && a.Column > b.Column) {
				t.Fatalf("problems not sorted: %v", err)
			}
		}
	})
}

func TestValidEnvName(t *testing.T) {
	for name, want := range map[string]bool{
		"A": true, "_x": true, "GREETING_2": true, "lower": true,
		"": false, "1A": false, "MY-VAR": false, "A B": false, "Ä": false,
	} {
		if got := ValidEnvName(name); got != want {
			t.Errorf("ValidEnvName(%q) = %v, want %v", name, got, want)
		}
	}
}
