package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bot/wire"
	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
	"github.com/sluicehq/sluice/rollout/source"
)

// Env carries where a command writes; main passes os.Stdout.
type Env struct {
	Ctx    context.Context
	Stdout io.Writer
	// Stderr gets hints beside the answer (how to see more); nil discards them.
	Stderr io.Writer
}

// ClientFlags are the flags every client command takes.
type ClientFlags struct {
	Server string `help:"URL of the sluice API." env:"SLUICE_SERVER" default:"http://127.0.0.1:8080"`
	Token  string `help:"API token." env:"SLUICE_TOKEN"`
	JSON   bool   `name:"json" help:"Print the API's JSON answer."`
}

func (f ClientFlags) client() *Client {
	return newClient(f.Server, f.Token)
}

// Commands are the client verbs; main embeds them beside "serve".
type Commands struct {
	Deploy   DeployCmd   `cmd:"" help:"Deploy a directory as a new version."`
	Traffic  TrafficCmd  `cmd:"" help:"Replace the split: VERSION=PCT ..."`
	Route    RouteCmd    `cmd:"" help:"Append a URL-parameter rule, or --clear the rules."`
	Predict  PredictCmd  `cmd:"" help:"Say which version a query string would reach, and why."`
	Promote  PromoteCmd  `cmd:"" help:"Give a version 100% and make it stable."`
	Rollback RollbackCmd `cmd:"" help:"Back to the previous stable version, or a named one."`
	Abort    AbortCmd    `cmd:"" help:"Remove a canary version from split and rules."`
	Redeploy RedeployCmd `cmd:"" help:"Apply a new configuration to a version in place."`
	Retire   RetireCmd   `cmd:"" help:"Stop versions that have had no traffic for a while."`
	Status   StatusCmd   `cmd:"" help:"Versions, statuses, URLs and traffic of a service."`
	Services ServicesCmd `cmd:"" help:"List services."`
	History  HistoryCmd  `cmd:"" help:"The history log of a service."`
	Logs     LogsCmd     `cmd:"" help:"The tail of a version's build and run logs."`
	Token    TokenCmd    `cmd:"" help:"Create, list and revoke repository-scoped API tokens (with the admin --token)."`
	Service  ServiceCmd  `cmd:"" help:"Assign a service to a repository (with the admin --token)."`
	Version  VersionCmd  `cmd:"" help:"Manage versions themselves: rm deletes a failed one."`
}

// VersionCmd (sluice version rm) manages version records.
type VersionCmd struct {
	Rm VersionRmCmd `cmd:"" help:"Delete a failed version's record (its history stays); normal versions and versions in the policy are refused."`
}

// VersionRmCmd: sluice version rm SERVICE VERSION
type VersionRmCmd struct {
	ClientFlags
	Service string `arg:""`
	Version string `arg:""`
}

// Run calls DELETE /api/v1/services/SERVICE/versions/VERSION.
func (c *VersionRmCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.DeleteVersion, []string{c.Service, c.Version}, nil, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	_, err := fmt.Fprintf(env.Stdout, "deleted %s\n", c.Version)
	return err
}

func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// pack checks that dir is a source directory and packs it.
func pack(dir string) (*bytes.Buffer, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("source %s: %v", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", dir)
	}
	if _, err := os.Stat(dir + "/" + source.ManifestName); err != nil {
		return nil, fmt.Errorf("source %s has no %s at its root", dir, source.ManifestName)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	return &buf, nil
}

// failedVersion turns a failed version into the CLI's error, printing its
// reason.
func failedVersion(v rollout.Version) error {
	msg := fmt.Sprintf("%s is %s: %s", v.Name, v.Status, v.Reason.Code)
	if v.Reason.Detail != "" {
		msg += "\n" + strings.TrimRight(v.Reason.Detail, "\n")
	}
	if v.Reason.Suggestion != "" {
		msg += "\nSuggestion: " + v.Reason.Suggestion
	}
	return fmt.Errorf("%s", msg)
}

// DeployCmd: sluice deploy SERVICE --source DIR [--strategy full|canary] [--wait]
type DeployCmd struct {
	ClientFlags
	Service  string        `arg:"" help:"Service name, as declared in sluice.yaml."`
	Source   string        `required:"" type:"path" help:"Directory to deploy (with sluice.yaml at its root)."`
	Strategy string        `default:"full" enum:"full,canary" help:"full: take 100% when healthy; canary: take nothing until asked."`
	Wait     bool          `help:"Wait until the version is normal or failed; exit non-zero if it failed."`
	Timeout  time.Duration `default:"15m" help:"How long --wait waits."`
}

// Run deploys.
func (c *DeployCmd) Run(env *Env) error {
	buf, err := pack(c.Source)
	if err != nil {
		return err
	}
	cl := c.client()
	var raw []byte
	q := url.Values{wire.QueryStrategy: {c.Strategy}}
	if err := cl.do(env.Ctx, wire.Deploy, []string{c.Service}, q, buf, wire.ContentArchive, &raw); err != nil {
		return err
	}
	var dv wire.VersionView
	if err := json.Unmarshal(raw, &dv); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	v := dv.Version
	if c.Wait {
		vs, err := cl.waitVersion(env.Ctx, c.Service, v.Name, c.Timeout, rollout.StatusCreating)
		if err != nil {
			return err
		}
		v = vs.Version
		if c.JSON {
			if err := cl.do(env.Ctx, wire.GetVersion, []string{c.Service, v.Name}, nil, nil, "", &raw); err != nil {
				return err
			}
		}
	}
	if c.JSON {
		if err := printJSON(env.Stdout, raw); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(env.Stdout, v.Name)
	}
	if c.Wait && v.Status != rollout.StatusNormal {
		return failedVersion(v)
	}
	return nil
}

// TrafficCmd: sluice traffic SERVICE VERSION=PCT [VERSION=PCT ...]
type TrafficCmd struct {
	ClientFlags
	Service string   `arg:""`
	Weights []string `arg:"" name:"VERSION=PCT" help:"Weights in whole percent summing to 100."`
}

// ParseWeights turns ["hello-001=90", "hello-002=10%"] into a split.
func ParseWeights(args []string) (map[string]int, error) {
	split := map[string]int{}
	for _, a := range args {
		v, p, ok := strings.Cut(a, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("weight %q must look like VERSION=PCT", a)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(p, "%"))
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("weight for %s must be a whole percentage from 0 to 100, got %q", v, p)
		}
		if _, dup := split[v]; dup {
			return nil, fmt.Errorf("%s is given twice", v)
		}
		split[v] = n
	}
	return split, nil
}

// Run sets the split.
func (c *TrafficCmd) Run(env *Env) error {
	split, err := ParseWeights(c.Weights)
	if err != nil {
		return err
	}
	return c.policyCall(env, wire.SetPolicy, c.Service, nil, wire.PolicyBody{Split: split})
}

// policyCall sends a change of service's policy and prints the resulting
// status.
func (f ClientFlags) policyCall(env *Env, r wire.Route, service string, q url.Values, body any) error {
	var raw []byte
	if err := f.client().do(env.Ctx, r, []string{service}, q, body, "", &raw); err != nil {
		return err
	}
	if f.JSON {
		return printJSON(env.Stdout, raw)
	}
	var st rollout.ServiceStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	renderStatus(env.Stdout, st)
	return nil
}

// RouteCmd: sluice route SERVICE VERSION 'key=glob[&key=glob]' | sluice route SERVICE --clear
type RouteCmd struct {
	ClientFlags
	Service string `arg:""`
	Version string `arg:"" optional:""`
	Match   string `arg:"" optional:"" help:"Conditions, e.g. 'env=beta*&region=eu'."`
	Clear   bool   `help:"Remove the rules (of VERSION only, when given)."`
}

// Run appends or clears rules.
func (c *RouteCmd) Run(env *Env) error {
	if c.Clear {
		if c.Match != "" {
			return fmt.Errorf("--clear takes no conditions")
		}
		q := url.Values{}
		if c.Version != "" {
			q.Set(wire.QueryVersion, c.Version)
		}
		return c.policyCall(env, wire.ClearRules, c.Service, q, nil)
	}
	if c.Version == "" || c.Match == "" {
		return fmt.Errorf("usage: sluice route SERVICE VERSION 'key=glob[&key=glob]'  or  sluice route SERVICE --clear")
	}
	m, err := policy.ParseMatch(c.Match)
	if err != nil {
		return fmt.Errorf("invalid rule: %v", err)
	}
	return c.policyCall(env, wire.AddRule, c.Service, nil, wire.RuleBody{Version: c.Version, Match: m})
}

// PredictCmd: sluice predict SERVICE 'query-string'
type PredictCmd struct {
	ClientFlags
	Service string `arg:""`
	Query   string `arg:"" optional:"" help:"A URL query string, e.g. 'env=beta&region=eu'."`
}

// Run predicts.
func (c *PredictCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.Predict, []string{c.Service}, url.Values{wire.QueryQuery: {c.Query}}, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	var p rollout.Prediction
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	v := p.Version
	if v == "" {
		v = "(random)"
	}
	fmt.Fprintf(env.Stdout, "%s\t%s\n", v, p.Reason)
	return nil
}

// PromoteCmd: sluice promote SERVICE VERSION [--keep-rules]
type PromoteCmd struct {
	ClientFlags
	Service   string `arg:""`
	Version   string `arg:""`
	KeepRules bool   `help:"Keep rules that send traffic to other versions."`
}

// Run promotes.
func (c *PromoteCmd) Run(env *Env) error {
	return c.policyCall(env, wire.Promote, c.Service, nil, wire.VersionBody{Version: c.Version, KeepRules: c.KeepRules})
}

// RollbackCmd: sluice rollback SERVICE [VERSION]
type RollbackCmd struct {
	ClientFlags
	Service string `arg:""`
	Version string `arg:"" optional:"" help:"Version to roll back to (default: the previous stable)."`
}

// Run rolls back.
func (c *RollbackCmd) Run(env *Env) error {
	return c.policyCall(env, wire.Rollback, c.Service, nil, wire.VersionBody{Version: c.Version})
}

// AbortCmd: sluice abort SERVICE VERSION
type AbortCmd struct {
	ClientFlags
	Service string `arg:""`
	Version string `arg:""`
}

// Run aborts a canary.
func (c *AbortCmd) Run(env *Env) error {
	return c.policyCall(env, wire.Abort, c.Service, nil, wire.VersionBody{Version: c.Version})
}

// RedeployCmd: sluice redeploy SERVICE VERSION [--env K=V ...] [--instances N] [--run CMD] [--source DIR] [--wait]
type RedeployCmd struct {
	ClientFlags
	Service   string            `arg:""`
	Version   string            `arg:""`
	Env       map[string]string `help:"Set an environment variable (repeatable): --env K=V."`
	UnsetEnv  []string          `help:"Remove an environment variable (repeatable)."`
	Instances int               `help:"Number of instances."`
	RunCmd    string            `name:"run" help:"New run command."`
	Source    string            `type:"path" help:"New source directory (rebuilt; its sluice.yaml is the new base configuration)."`
	Wait      bool              `help:"Wait until the redeploy ends; exit non-zero if it failed."`
	Timeout   time.Duration     `default:"15m" help:"How long --wait waits."`
}

// Run redeploys in place.
func (c *RedeployCmd) Run(env *Env) error {
	cl := c.client()
	params := []string{c.Service, c.Version}
	// Flags left at their zero value keep the version's setting.
	body := wire.RedeployBody{Env: c.Env, UnsetEnv: c.UnsetEnv}
	if len(body.Env) == 0 {
		body.Env = nil
	}
	if len(body.UnsetEnv) == 0 {
		body.UnsetEnv = nil
	}
	if c.Instances != 0 {
		body.Instances = &c.Instances
	}
	if c.RunCmd != "" {
		body.Run = &c.RunCmd
	}
	var raw []byte
	if c.Source != "" {
		buf, err := pack(c.Source)
		if err != nil {
			return err
		}
		if err := cl.do(env.Ctx, wire.Redeploy, params, body.Query(), buf, wire.ContentArchive, &raw); err != nil {
			return err
		}
	} else if err := cl.do(env.Ctx, wire.Redeploy, params, nil, body, "", &raw); err != nil {
		return err
	}
	var dv wire.VersionView
	if err := json.Unmarshal(raw, &dv); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	v := dv.Version
	if c.Wait {
		vs, err := cl.waitVersion(env.Ctx, c.Service, c.Version, c.Timeout, rollout.StatusUpdating)
		if err != nil {
			return err
		}
		v = vs.Version
	}
	if c.JSON {
		if c.Wait {
			if err := cl.do(env.Ctx, wire.GetVersion, params, nil, nil, "", &raw); err != nil {
				return err
			}
		}
		if err := printJSON(env.Stdout, raw); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.Stdout, "%s %s\n", v.Name, v.Status)
	}
	if c.Wait && v.Status != rollout.StatusNormal {
		return failedVersion(v)
	}
	return nil
}

// RetireCmd: sluice retire SERVICE --older-than D
//
// --older-than has no default: stopping versions is a choice of how idle
// is idle, and --older-than 0s (every idle version, now) must be asked for.
type RetireCmd struct {
	ClientFlags
	Service   string         `arg:""`
	OlderThan *time.Duration `help:"Stop versions idle (0% and no rule) at least this long, e.g. 24h; 0s stops every idle version."`
}

// Run retires idle versions.
func (c *RetireCmd) Run(env *Env) error {
	if c.OlderThan == nil {
		return Usage(fmt.Errorf("say how long a version must have been idle: --older-than 24h, say (--older-than 0s stops every version with no traffic and no rule now)"))
	}
	var raw []byte
	if err := c.client().do(env.Ctx, wire.Retire, []string{c.Service}, nil,
		wire.RetireBody{OlderThan: rollout.Duration(*c.OlderThan)}, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	var out wire.Retired
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if len(out.Stopped) == 0 {
		fmt.Fprintln(env.Stdout, "nothing to retire")
	}
	for _, v := range out.Stopped {
		fmt.Fprintf(env.Stdout, "stopped %s\n", v)
	}
	return nil
}

// StatusCmd: sluice status SERVICE
type StatusCmd struct {
	ClientFlags
	Service string `arg:""`
}

// Run shows a service.
func (c *StatusCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.GetService, []string{c.Service}, nil, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	var st rollout.ServiceStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	renderStatus(env.Stdout, st)
	return nil
}

// ServicesCmd: sluice services
type ServicesCmd struct {
	ClientFlags
}

// Run lists services.
func (c *ServicesCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.ListServices, nil, nil, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	var out wire.ServiceList
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, s := range out.Services {
		stable := s.Stable
		if stable == "" {
			stable = "-"
		}
		fmt.Fprintf(env.Stdout, "%-20s %-12s %3d %-8s  %s\n", s.Name, stable, len(s.Versions), plural(len(s.Versions), "version"), s.URL)
	}
	return nil
}

// HistoryCmd: sluice history SERVICE [--limit N] [--before SEQ | --after SEQ]
//
// Without --after it shows the newest events, oldest first as they
// happened, and says how to see the ones before them.
type HistoryCmd struct {
	ClientFlags
	Service string  `arg:""`
	Limit   int     `default:"50" help:"How many events to show (1 to 1000)."`
	Before  uint64  `help:"Show the events before this sequence number (the first column), to page back."`
	After   *uint64 `help:"Show the oldest events after this sequence number instead of the newest (0: from the start)."`
}

// Run prints the history log.
func (c *HistoryCmd) Run(env *Env) error {
	if c.Limit < 1 || c.Limit > 1000 {
		return fmt.Errorf("--limit must be between 1 and 1000, got %d", c.Limit)
	}
	var raw []byte
	q := url.Values{wire.QueryLimit: {strconv.Itoa(c.Limit)}}
	switch {
	case c.After != nil && c.Before != 0:
		return fmt.Errorf("give --before or --after, not both")
	case c.After != nil:
		q.Set(wire.QueryAfter, strconv.FormatUint(*c.After, 10))
	case c.Before != 0:
		q.Set(wire.QueryBefore, strconv.FormatUint(c.Before, 10))
	}
	if err := c.client().do(env.Ctx, wire.ServiceEvents, []string{c.Service}, q, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(env.Stdout, raw)
	}
	var out wire.EventList
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, e := range out.Events {
		who := string(e.Origin.Via)
		if e.Origin.Actor != "" {
			who += ":" + e.Origin.Actor
		}
		fmt.Fprintf(env.Stdout, "%4d %s %-9s %-14s %s\n", e.Seq, e.Time.Local().Format(time.DateTime), e.Op, who, e.Message)
	}
	if c.After == nil && len(out.Events) == c.Limit && out.Events[0].Seq > 1 && env.Stderr != nil {
		fmt.Fprintf(env.Stderr, "older events: sluice history %s --before %d\n", c.Service, out.Events[0].Seq)
	}
	return nil
}

// LogsCmd: sluice logs SERVICE VERSION; with --json the logs are
// {"service", "version", "logs"}.
type LogsCmd struct {
	ClientFlags
	Service string `arg:""`
	Version string `arg:""`
	Bytes   int    `default:"16384" help:"How much of the end of the logs."`
}

// Run prints logs.
func (c *LogsCmd) Run(env *Env) error {
	var raw []byte
	if err := c.client().do(env.Ctx, wire.Logs, []string{c.Service, c.Version},
		url.Values{wire.QueryBytes: {strconv.Itoa(c.Bytes)}}, nil, "", &raw); err != nil {
		return err
	}
	if c.JSON {
		b, err := json.Marshal(map[string]string{"service": c.Service, "version": c.Version, "logs": string(raw)})
		if err != nil {
			return fmt.Errorf("encode logs: %w", err)
		}
		return printJSON(env.Stdout, b)
	}
	_, err := env.Stdout.Write(raw)
	return err
}

// renderStatus draws a service: one line per version with a traffic bar.
func renderStatus(w io.Writer, st rollout.ServiceStatus) {
	stable := st.Stable
	if stable == "" {
		stable = "none yet"
	}
	fmt.Fprintf(w, "%s  %s  (stable: %s)\n", st.Name, st.URL, stable)
	for _, v := range st.Versions {
		bar := strings.Repeat("█", v.Traffic/5) + strings.Repeat("·", 20-v.Traffic/5)
		extra := ""
		if len(v.Rules) > 0 {
			var rs []string
			for _, r := range v.Rules {
				rs = append(rs, strconv.Itoa(r))
			}
			extra = " +rule " + strings.Join(rs, ",")
		}
		status := string(v.Status)
		if v.Reason.Code != "" {
			status += " (" + string(v.Reason.Code) + ")"
		}
		fmt.Fprintf(w, "  %-14s %-26s %3d%% %s%s  %s\n", v.Name, status, v.Traffic, bar, extra, v.URL)
	}
	for i, r := range st.Policy.Rules {
		fmt.Fprintf(w, "  rule %d: %s -> %s\n", i+1, policy.FormatMatch(r.Match), r.Version)
	}
	for _, v := range st.Versions {
		if v.Reason.Code != "" && v.Status != rollout.StatusNormal {
			// The detail's first line; the log lines it announces after it.
			first, rest, _ := strings.Cut(strings.TrimRight(v.Reason.Detail, "\n"), "\n")
			fmt.Fprintf(w, "  %s: %s\n", v.Name, first)
			for _, l := range strings.Split(rest, "\n") {
				if rest != "" {
					fmt.Fprintf(w, "    | %s\n", l)
				}
			}
			if v.Reason.Suggestion != "" {
				fmt.Fprintf(w, "    suggestion: %s\n", v.Reason.Suggestion)
			}
		}
	}
}

// plural is word for n of it: "version" or "versions".
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
