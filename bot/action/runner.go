package action

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// Runner is what the step knows of the workflow run, from the runner's
// standard variables. Empty fields are variables that were not set.
type Runner struct {
	// OutputFile and SummaryFile are $GITHUB_OUTPUT and
	// $GITHUB_STEP_SUMMARY; "" means outputs and summary are not written.
	OutputFile, SummaryFile                   string
	Repository, SHA, RunID, RunAttempt, Actor string
	ServerURL, APIURL                         string
	EventName, EventPath                      string
	Workspace, Temp                           string
	// IDTokenURL and IDTokenToken are set by the runner only when the job
	// has `permissions: id-token: write`.
	IDTokenURL, IDTokenToken string
}

// ReadRunner reads the runner's variables through getenv.
func ReadRunner(getenv func(string) string) Runner {
	return Runner{
		OutputFile: getenv("GITHUB_OUTPUT"), SummaryFile: getenv("GITHUB_STEP_SUMMARY"),
		Repository: getenv("GITHUB_REPOSITORY"), SHA: getenv("GITHUB_SHA"),
		RunID: getenv("GITHUB_RUN_ID"), RunAttempt: getenv("GITHUB_RUN_ATTEMPT"), Actor: getenv("GITHUB_ACTOR"),
		ServerURL: strings.TrimRight(getenv("GITHUB_SERVER_URL"), "/"), APIURL: getenv("GITHUB_API_URL"),
		EventName: getenv("GITHUB_EVENT_NAME"), EventPath: getenv("GITHUB_EVENT_PATH"),
		Workspace: getenv("GITHUB_WORKSPACE"), Temp: getenv("RUNNER_TEMP"),
		IDTokenURL: getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), IDTokenToken: getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
	}
}

// RunURL is the workflow run's page, "" when the run is not known.
func (r Runner) RunURL() string {
	if r.ServerURL == "" || r.Repository == "" || r.RunID == "" {
		return ""
	}
	return r.ServerURL + "/" + r.Repository + "/actions/runs/" + r.RunID
}

// Output is one step output.
type Output struct{ Name, Value string }

// WriteOutputs appends outputs to the file in the runner's format: one
// `name<<DELIMITER` block per output, so any value is safe. A "" file
// writes nothing.
func WriteOutputs(file string, outs ...Output) error {
	if file == "" {
		return nil
	}
	var b strings.Builder
	for _, o := range outs {
		delim := "ghadelimiter_" + randomHex(8)
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", o.Name, delim, o.Value, delim)
	}
	return appendFile(file, b.String())
}

// AppendSummary appends markdown to the step summary file; a "" file
// writes nothing.
func AppendSummary(file, markdown string) error {
	if file == "" {
		return nil
	}
	return appendFile(file, markdown)
}

func appendFile(file, s string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	if _, err := io.WriteString(f, s); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", file, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// Annotation is one workflow command that annotates the run: ::error or
// ::warning, with an optional title and file position.
type Annotation struct {
	// Level is "error" or "warning".
	Level string
	Title string
	// File, Line and Col place it on a file of the repository.
	File      string
	Line, Col int
	Message   string
}

// String renders the command on one line, its properties and message
// escaped as the runner expects.
func (a Annotation) String() string {
	var props []string
	add := func(k, v string) {
		if v != "" {
			props = append(props, k+"="+escapeProperty(v))
		}
	}
	add("title", a.Title)
	add("file", a.File)
	if a.Line > 0 {
		add("line", fmt.Sprint(a.Line))
	}
	if a.Col > 0 {
		add("col", fmt.Sprint(a.Col))
	}
	cmd := "::" + a.Level
	if len(props) > 0 {
		cmd += " " + strings.Join(props, ",")
	}
	return cmd + "::" + escapeData(a.Message)
}

// escapeData escapes a command's message: %, CR and LF.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a command's property value: as data, plus ':'
// and ','.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// errorLine is the one line a step prints when it cannot do its job.
func errorLine(err error) string {
	return Annotation{Level: "error", Message: "sluice: " + firstLine(err.Error())}.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
