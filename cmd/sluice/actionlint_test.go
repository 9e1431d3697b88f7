package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// actionlintModule is the actionlint release the test runs, built from the
// Go module proxy by `go run` in its own module (its yaml dependency is
// not the one this module builds with, so it is a tool here, not a
// library).
const actionlintModule = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

// lintError is one problem as actionlint's JSON format reports it.
type lintError struct {
	Message  string `json:"message"`
	Filepath string `json:"filepath"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Kind     string `json:"kind"`
}

// actionlint lints files of the repository at proj (shellcheck and
// pyflakes off, so the result does not depend on what is installed).
func actionlint(t *testing.T, proj string, files []string) []lintError {
	t.Helper()
	args := []string{"run", actionlintModule, "-format", "{{json .}}", "-shellcheck=", "-pyflakes="}
	for _, f := range files {
		rel, err := filepath.Rel(proj, f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, rel)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = proj
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("go %v: %v\n%s", args, err, errb.String())
	}
	var errs []lintError
	if err := json.Unmarshal(out.Bytes(), &errs); err != nil {
		t.Fatalf("actionlint output: %v\n%s\n%s", err, out.String(), errb.String())
	}
	return errs
}

// compositeAsWorkflow turns action.yml's steps into a reusable workflow
// whose workflow_call inputs are the action's inputs, so actionlint checks
// the steps themselves too: shells, ids, and every expression against the
// declared inputs.
func compositeAsWorkflow(t *testing.T) []byte {
	t.Helper()
	m := loadActionMeta(t)
	inputs := map[string]any{}
	for name, in := range m.Inputs {
		inputs[name] = map[string]any{"type": "string", "required": in.Required, "description": in.Description}
	}
	steps := make([]map[string]any, len(m.Runs.Steps))
	for i, st := range m.Runs.Steps {
		step := map[string]any{"name": st.Name, "shell": st.Shell, "run": st.Run}
		if st.ID != "" {
			step["id"] = st.ID
		}
		if len(st.Env) > 0 {
			step["env"] = st.Env
		}
		steps[i] = step
	}
	wf, err := yaml.Marshal(map[string]any{
		"name": "composite steps of action.yml",
		"on":   map[string]any{"workflow_call": map[string]any{"inputs": inputs}},
		"jobs": map[string]any{"action": map[string]any{"runs-on": "ubuntu-latest", "steps": steps}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

// TestActionLint checks action.yml and the workflows docs/action.md shows
// with actionlint: every complete workflow of the doc is linted as it would
// be in a repository, with `uses: sluicehq/sluice@…` pointing at a copy of
// this action.yml (`uses: ./`), so actionlint reads the action's metadata
// (strictly: unknown keys of an input are errors) and checks each step's
// inputs and each `steps.<id>.outputs.<name>` against it; the action's own
// steps are linted as a reusable workflow. A workflow that misuses the
// action proves the check is live.
func TestActionLint(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "action.md"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	proj := t.TempDir()
	wfDir := filepath.Join(proj, ".github", "workflows")
	// actionlint reads local actions only in a repository: .git and
	// .github/workflows at its root.
	for _, d := range []string{wfDir, filepath.Join(proj, ".git")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proj, "action.yml"), meta, 0o644); err != nil {
		t.Fatal(err)
	}

	var docFiles []string
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		wf := m[1]
		if !strings.Contains(wf, "\non:") || !strings.Contains(wf, "\njobs:") {
			continue // a fragment, not a workflow file
		}
		if !strings.Contains(wf, "uses: sluicehq/sluice@") {
			t.Fatalf("docs/action.md workflow %d does not use the action:\n%s", i, wf)
		}
		wf = regexp.MustCompile(`uses: sluicehq/sluice@\S+`).ReplaceAllString(wf, "uses: ./")
		p := filepath.Join(wfDir, fmt.Sprintf("doc-%d.yml", i))
		if err := os.WriteFile(p, []byte(wf), 0o644); err != nil {
			t.Fatal(err)
		}
		docFiles = append(docFiles, p)
	}
	if len(docFiles) != 2 {
		t.Fatalf("docs/action.md shows %d complete workflows, want one per mode", len(docFiles))
	}
	bad := filepath.Join(wfDir, "misuse.yml")
	if err := os.WriteFile(bad, []byte(`name: misuse
on: push
permissions:
  contents: read
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - id: sluice
        uses: ./
        with:
          token: x
          colour: blue
      - run: echo "$V"
        env:
          V: ${{ steps.sluice.outputs.revision }}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	composite := filepath.Join(wfDir, "composite.yml")
	if err := os.WriteFile(composite, compositeAsWorkflow(t), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := actionlint(t, proj, append(docFiles, bad, composite))
	var misuse []string
	for _, e := range errs {
		if filepath.Base(e.Filepath) == filepath.Base(bad) {
			misuse = append(misuse, e.Message)
			continue
		}
		t.Errorf("%s:%d:%d: %s [%s]", filepath.Base(e.Filepath), e.Line, e.Column, e.Message, e.Kind)
	}
	for _, want := range []string{`missing input "server"`, `input "colour" is not defined`, `property "revision" is not defined`} {
		found := false
		for _, m := range misuse {
			found = found || strings.Contains(m, want)
		}
		if !found {
			t.Errorf("actionlint did not report %q for a misuse of the action; it reported %q", want, misuse)
		}
	}
}
