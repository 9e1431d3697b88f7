package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"
)

// This file runs action.yml the way a GitHub runner runs a composite
// action: each step's `env:` is evaluated with the inputs (defaults
// filled in), its `run:` goes to `bash --noprofile --norc -eo pipefail`
// in the workspace with fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files,
// a failing step stops the action, and the action's outputs are evaluated
// from the steps' outputs.

// actionMeta is the part of action.yml a runner reads for a composite
// action; decoding is strict, so a misspelt key fails the test.
type actionMeta struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Author      string            `yaml:"author"`
	Branding    map[string]string `yaml:"branding"`
	Inputs      map[string]struct {
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Default     *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
		Value       string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionStep struct {
	Name             string            `yaml:"name"`
	ID               string            `yaml:"id"`
	Shell            string            `yaml:"shell"`
	Run              string            `yaml:"run"`
	Env              map[string]string `yaml:"env"`
	WorkingDirectory string            `yaml:"working-directory"`
}

// repoRoot is the action's checkout: GITHUB_ACTION_PATH.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadActionMeta(t *testing.T) actionMeta {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m actionMeta
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if m.Runs.Using != "composite" || len(m.Runs.Steps) == 0 {
		t.Fatalf("action.yml: runs.using %q with %d steps; want a composite action", m.Runs.Using, len(m.Runs.Steps))
	}
	return m
}

// actionRunner runs the action several times in one job: one workspace,
// one RUNNER_TEMP, a new run id each time.
type actionRunner struct {
	t         *testing.T
	meta      actionMeta
	workspace string
	temp      string
	// env is the job's environment on top of the process's: GITHUB_* and
	// anything a test adds.
	env map[string]string
	// githubToken is what ${{ github.token }} evaluates to.
	githubToken string
	runID       atomic.Int64
}

func newActionRunner(t *testing.T) *actionRunner {
	t.Helper()
	r := &actionRunner{t: t, meta: loadActionMeta(t), workspace: t.TempDir(), temp: t.TempDir()}
	r.env = map[string]string{
		"GITHUB_ACTIONS":     "true",
		"GITHUB_WORKSPACE":   r.workspace,
		"RUNNER_TEMP":        r.temp,
		"GITHUB_REPOSITORY":  "acme/web",
		"GITHUB_SHA":         "0123456789abcdef0123456789abcdef01234567",
		"GITHUB_RUN_ATTEMPT": "1",
		"GITHUB_ACTOR":       "alice",
		"GITHUB_SERVER_URL":  "https://github.com",
		"GITHUB_API_URL":     "https://api.github.com",
		"GITHUB_EVENT_NAME":  "push",
	}
	r.runID.Store(4000)
	seedBuild(t, r.temp)
	return r
}

// seedBuild puts the sluice binary TestMain built into runnerTemp as the
// action's build step leaves it, as if an earlier sluice step of the job
// had built it: the step then reuses it instead of linking sluice again.
// TestActionDeploy runs the build step itself.
//
// The binary is a hard link, not a copy: a file this process opened for
// writing can be inherited by a child that parallel tests fork meanwhile,
// and executing it then fails with "text file busy" (ETXTBSY) until that
// child execs. A copy is the fallback across file systems.
func seedBuild(t *testing.T, runnerTemp string) {
	t.Helper()
	dst := filepath.Join(runnerTemp, "sluice")
	if err := os.Link(sluiceBin, dst); err != nil {
		bin, err := os.ReadFile(sluiceBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(runnerTemp, "sluice.from"), []byte(repoRoot(t)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeSource writes files into dir under the workspace.
func (r *actionRunner) writeSource(dir string, files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.workspace, dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// actionResult is one run of the action.
type actionResult struct {
	code    int               // the failing step's exit code, 0 when all passed
	stdout  string            // every step's stdout, in order
	stderr  string            // every step's stderr, in order
	outputs map[string]string // the action's outputs
	summary string            // the step summaries, in order
}

// errorLines are the ::error commands the run printed.
func (res actionResult) errorLines() []string {
	var out []string
	for _, l := range strings.Split(res.stdout, "\n") {
		if strings.HasPrefix(l, "::error") {
			out = append(out, l)
		}
	}
	return out
}

var exprRE = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// eval substitutes the expressions a runner evaluates in this action;
// any other expression fails the test, so the runner here stays honest.
func (r *actionRunner) eval(t *testing.T, s string, inputs map[string]string, steps map[string]map[string]string) string {
	return exprRE.ReplaceAllStringFunc(s, func(m string) string {
		expr := exprRE.FindStringSubmatch(m)[1]
		switch {
		case strings.HasPrefix(expr, "inputs."):
			v, ok := inputs[strings.TrimPrefix(expr, "inputs.")]
			if !ok {
				t.Fatalf("action.yml: %s names an input that is not declared", m)
			}
			return v
		case expr == "github.action_path":
			return repoRoot(t)
		case expr == "github.token":
			return r.githubToken
		case strings.HasPrefix(expr, "steps.") && steps != nil:
			parts := strings.Split(expr, ".")
			if len(parts) != 4 || parts[2] != "outputs" {
				t.Fatalf("action.yml: unsupported expression %s", m)
			}
			return steps[parts[1]][parts[3]]
		}
		t.Fatalf("action.yml: expression %s is not one this test's runner evaluates", m)
		return ""
	})
}

// run runs the action with the given `with:` inputs and extra job
// environment (which may shadow the defaults of newActionRunner; a ""
// value removes the variable).
func (r *actionRunner) run(with map[string]string, env map[string]string) actionResult {
	r.t.Helper()
	return r.runIn(r.t, with, env)
}

// runIn is run on behalf of t, a subtest of the runner's test: failures
// are t's, and runs of parallel subtests do not wait for each other (each
// has its own run id and step files; they share the workspace and
// RUNNER_TEMP as steps of one job do).
func (r *actionRunner) runIn(t *testing.T, with map[string]string, env map[string]string) actionResult {
	t.Helper()
	inputs := map[string]string{}
	for name, in := range r.meta.Inputs {
		if in.Default != nil {
			inputs[name] = r.eval(t, *in.Default, nil, nil)
		} else {
			inputs[name] = ""
		}
	}
	for k, v := range with {
		if _, ok := r.meta.Inputs[k]; !ok {
			t.Fatalf("with: %q is not an input of action.yml", k)
		}
		inputs[k] = v
	}
	job := map[string]string{"GITHUB_RUN_ID": strconv.FormatInt(r.runID.Add(1), 10)}
	for k, v := range r.env {
		job[k] = v
	}
	for k, v := range env {
		job[k] = v
	}

	res := actionResult{outputs: map[string]string{}}
	steps := map[string]map[string]string{}
	var stdout, stderr, summary strings.Builder
	for i, st := range r.meta.Runs.Steps {
		if st.Shell != "bash" {
			t.Fatalf("step %d: shell %q; this runner runs bash steps", i, st.Shell)
		}
		dir := t.TempDir()
		outFile, sumFile, script := filepath.Join(dir, "output"), filepath.Join(dir, "summary"), filepath.Join(dir, "script.sh")
		for _, f := range []string{outFile, sumFile} {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(script, []byte(st.Run), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Dir = r.workspace
		if st.WorkingDirectory != "" {
			cmd.Dir = r.eval(t, st.WorkingDirectory, inputs, nil)
		}
		vars := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "INPUT_") || strings.HasPrefix(k, "RUNNER_") ||
				strings.HasPrefix(k, "ACTIONS_") || strings.HasPrefix(k, "SLUICE_") {
				continue
			}
			vars[k] = v
		}
		for k, v := range job {
			vars[k] = v
		}
		vars["GITHUB_ACTION_PATH"] = repoRoot(t)
		vars["GITHUB_OUTPUT"], vars["GITHUB_STEP_SUMMARY"] = outFile, sumFile
		for k, v := range st.Env {
			vars[k] = r.eval(t, v, inputs, nil)
		}
		for k, v := range vars {
			if v != "" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		stdout.Write(o.Bytes())
		stderr.Write(e.Bytes())
		if b, rerr := os.ReadFile(sumFile); rerr == nil {
			summary.Write(b)
		}
		if st.ID != "" {
			steps[st.ID] = parseOutputFile(t, outFile)
		}
		if err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatal(err)
			}
			res.code = ee.ExitCode()
			break
		}
	}
	for name, o := range r.meta.Outputs {
		res.outputs[name] = r.eval(t, o.Value, inputs, steps)
	}
	res.stdout, res.stderr, res.summary = stdout.String(), stderr.String(), summary.String()
	return res
}

// parseOutputFile reads a GITHUB_OUTPUT file as the runner does: lines
// name=value, or name<<DELIMITER, the value's lines, DELIMITER.
func parseOutputFile(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var val []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				val = append(val, sc.Text())
			}
			if !closed {
				t.Fatalf("GITHUB_OUTPUT: %s has no closing %s", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("GITHUB_OUTPUT: unreadable line %q", line)
		}
		out[name] = val
	}
	return out
}

// helloYAML is a sluice.yaml running the prebuilt hello app.
func helloYAML() string {
	return fmt.Sprintf("services:\n  hello:\n    run: exec %q\n    health: /healthz\n    env: {GREETING: hi}\n    timeouts: {start: 5s}\n", helloBin)
}
