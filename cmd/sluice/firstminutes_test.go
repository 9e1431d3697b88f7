package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// seqs returns the sequence numbers (first column) of `sluice history`.
func seqs(t *testing.T, out string) []int {
	t.Helper()
	var got []int
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("history line %q has no sequence number", l)
		}
		got = append(got, n)
	}
	return got
}

func TestHistoryShowsTheNewestEventsAndPages(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	v := s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait")
	for range 3 {
		s.ok("route", "hello", v, "env=beta")
	}
	all := seqs(t, s.ok("history", "hello"))
	if len(all) < 6 {
		t.Fatalf("history has %d events, want at least 6", len(all))
	}
	n := len(all)

	out, errs, code := s.cli("history", "hello", "--limit", "2")
	if code != 0 {
		t.Fatalf("history --limit 2: exit %d: %s", code, errs)
	}
	newest := seqs(t, out)
	if want := all[n-2:]; !slices.Equal(newest, want) {
		t.Fatalf("history --limit 2 = %v, want the newest two %v", newest, want)
	}
	if !strings.Contains(out, "rule") {
		t.Errorf("the newest events are the rule changes, got:\n%s", out)
	}
	hint := "sluice history hello --before " + strconv.Itoa(newest[0])
	if !strings.Contains(errs, hint) {
		t.Errorf("stderr %q does not say how to see older events (%q)", errs, hint)
	}
	if back := seqs(t, s.ok("history", "hello", "--limit", "2", "--before", strconv.Itoa(newest[0]))); !slices.Equal(back, all[n-4:n-2]) {
		t.Errorf("history --before %d = %v, want %v", newest[0], back, all[n-4:n-2])
	}
	if first := seqs(t, s.ok("history", "hello", "--limit", "2", "--after", "0")); !slices.Equal(first, all[:2]) {
		t.Errorf("history --after 0 = %v, want the oldest %v", first, all[:2])
	}
	if _, errs, code := s.cli("history", "hello", "--before", "3", "--after", "1"); code == 0 || !strings.Contains(errs, "not both") {
		t.Errorf("--before with --after: exit %d, %q", code, errs)
	}
}

// run runs the sluice binary with only PATH in its environment (no
// SLUICE_SERVER or SLUICE_TOKEN from the test's machine) and returns
// stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestErrorsSayHowToFixThem(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN=s3cret")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"server without a scheme", []string{"services", "--server", s.api, "--token", "s3cret"},
			[]string{"give the scheme too", "--server http://" + s.api}},
		{"server at the router port", []string{"services", "--server", "http://" + s.route, "--token", "s3cret"},
			[]string{"router port", "--listen"}},
		{"no token", []string{"services", "--server", "http://" + s.api},
			[]string{"needs a token", "--token", "SLUICE_TOKEN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := run(t, tc.args...)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			if first, _, _ := strings.Cut(errs, "\n"); !strings.HasPrefix(first, "sluice: ") {
				t.Errorf("stderr does not start with the error: %q", errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q does not mention %q", errs, w)
				}
			}
		})
	}
}

func TestUsageErrorsAreOneLineFirst(t *testing.T) {
	t.Parallel()
	out, errs, code := run(t, "traffic", "hello")
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != 2 || out != "" {
		t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
	}
	if len(lines) > 3 || !strings.HasPrefix(lines[0], "sluice: ") || !strings.Contains(lines[0], "VERSION=PCT") {
		t.Fatalf("stderr = %q; want the error on the first line and at most 3 lines", errs)
	}
	if !strings.Contains(errs, "usage: sluice traffic <service> <VERSION=PCT>") || !strings.Contains(errs, "sluice traffic --help") {
		t.Errorf("stderr %q lacks the one-line usage and the way to the help", errs)
	}
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	for _, tc := range []struct {
		name string
		args []string
		code string
		exit int
	}{
		{"refused by the server", []string{"traffic", "nope", "nope-001=100"}, "unknown_service", 1},
		{"refused by the CLI", []string{"services", "--server", "localhost:1"}, "invalid_server", 1},
		{"usage", []string{"traffic"}, "usage", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--json")
			if tc.code == "unknown_service" {
				args = append(args, "--server", "http://"+s.api)
			}
			out, errs, exit := run(t, args...)
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(errs), &body); err != nil || exit != tc.exit || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q (%v); want exit %d and a JSON error on stderr", exit, out, errs, err, tc.exit)
			}
			if body.Error.Code != tc.code || body.Error.Message == "" {
				t.Errorf("error = %+v, want code %q and a message", body.Error, tc.code)
			}
		})
	}
}

// snakeKeys reports the object keys in a JSON document that are not
// snake_case, with their paths. Keys of maps the user named (env, match,
// split) are values, not field names, and are skipped.
func snakeKeys(path string, v any, bad *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := path + "." + k
			if k != strings.ToLower(k) || strings.ContainsAny(k, "- ") {
				*bad = append(*bad, p)
			}
			if k == "env" || k == "match" || (k == "split" && path != ".prediction") {
				continue
			}
			snakeKeys(p, x, bad)
		}
	case []any:
		for _, x := range v {
			snakeKeys(path+"[]", x, bad)
		}
	}
}

func TestJSONIsSnakeCaseEverywhere(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t), "SLUICE_TOKEN=s3cret")
	cli := func(args ...string) string {
		t.Helper()
		out, errs, code := run(t, append(args, "--json", "--server", "http://"+s.api, "--token", "s3cret")...)
		if code != 0 {
			t.Fatalf("sluice %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}
	src := fastSource(t, "")
	v1 := cli("deploy", "hello", "--source", src, "--wait")
	var name struct{ Name string }
	json.Unmarshal([]byte(v1), &name)
	v2 := cli("deploy", "hello", "--source", src, "--wait", "--strategy", "canary")
	var name2 struct{ Name string }
	json.Unmarshal([]byte(v2), &name2)
	cli("token", "create", "--repo", "acme/web")
	outputs := map[string]string{
		"deploy":     v1,
		"traffic":    cli("traffic", "hello", name.Name+"=50", name2.Name+"=50"),
		"route":      cli("route", "hello", name2.Name, "env=beta"),
		"prediction": cli("predict", "hello", "env=prod"),
		"status":     cli("status", "hello"),
		"services":   cli("services"),
		"history":    cli("history", "hello"),
		"logs":       cli("logs", "hello", name.Name),
		"tokens":     cli("token", "list"),
		"retire":     cli("retire", "hello", "--older-than", "1h"),
	}
	for what, out := range outputs {
		var doc any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Errorf("%s --json is not JSON: %v\n%s", what, err, out)
			continue
		}
		var bad []string
		snakeKeys("."+what, doc, &bad)
		if len(bad) > 0 {
			slices.Sort(bad)
			t.Errorf("%s --json has keys that are not snake_case: %v", what, bad)
		}
	}
	var st struct {
		Versions []struct {
			Instances []struct {
				Addr string `json:"addr"`
				PID  int    `json:"pid"`
			} `json:"instances"`
		} `json:"versions"`
	}
	json.Unmarshal([]byte(outputs["status"]), &st)
	if len(st.Versions) == 0 || len(st.Versions[0].Instances) == 0 || st.Versions[0].Instances[0].Addr == "" {
		t.Errorf("status --json has no instances[].addr:\n%s", outputs["status"])
	}
	var p struct {
		Split []struct {
			Version string `json:"version"`
			Percent int    `json:"percent"`
		} `json:"split"`
	}
	json.Unmarshal([]byte(outputs["prediction"]), &p)
	if len(p.Split) != 2 || p.Split[0].Version == "" || p.Split[0].Percent != 50 {
		t.Errorf("predict --json split = %+v, want two versions at 50%%:\n%s", p.Split, outputs["prediction"])
	}
	var logs struct{ Logs string }
	if json.Unmarshal([]byte(outputs["logs"]), &logs); !strings.Contains(logs.Logs, "listening") {
		t.Errorf("logs --json has no logs:\n%s", outputs["logs"])
	}
}

func TestCLISaysWhatItDid(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	src := fastSource(t, "")
	v1 := s.ok("deploy", "hello", "--source", src, "--wait")

	t.Run("services pluralises", func(t *testing.T) {
		out := s.ok("services")
		if !strings.Contains(out, " 1 version ") || strings.Contains(out, "1 versions") {
			t.Errorf("services with one version: %q", out)
		}
	})
	t.Run("retire asks for --older-than", func(t *testing.T) {
		out, errs, code := s.cli("retire", "hello")
		if code != 2 || out != "" || !strings.Contains(errs, "--older-than") {
			t.Errorf("retire without --older-than: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		if st := s.status("hello"); st.Versions[0].Status != "normal" {
			t.Errorf("retire without --older-than changed %s to %s", v1, st.Versions[0].Status)
		}
	})
	t.Run("a second abort says nothing changed; a retired version says so and comes back", func(t *testing.T) {
		v2 := s.ok("deploy", "hello", "--source", src, "--wait", "--strategy", "canary")
		s.ok("traffic", "hello", v1+"=90", v2+"=10")
		s.ok("abort", "hello", v2)
		history := s.ok("history", "hello")
		out, errs, code := s.cli("abort", "hello", v2)
		if code == 0 || out != "" || !strings.Contains(errs, "nothing changed") {
			t.Errorf("second abort: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		if after := s.ok("history", "hello"); after != history {
			t.Errorf("second abort added history:\n%s", after)
		}

		// Retired, its URL says it is stopped, without promising it back.
		if out := s.ok("retire", "hello", "--older-than", "0s"); !strings.Contains(out, "stopped "+v2) {
			t.Fatalf("retire: %q", out)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.route+"/", nil)
		req.Host = v2 + ".hello.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(body), "stopped") || resp.Header.Get("Retry-After") != "" {
			t.Errorf("stopped version URL: %d %q Retry-After %q; want 503 saying it is stopped, no Retry-After",
				resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		// Traffic brings it back: it is started first.
		s.ok("traffic", "hello", v1+"=50", v2+"=50")
		if got, _, err := s.get(v2+".hello.localhost", ""); err != nil || got != v2 {
			t.Errorf("after traffic, %s's URL: %q %v", v2, got, err)
		}
	})
}

func TestStatusShowsTheLogLinesOfAFailure(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	dir := t.TempDir()
	yaml := "services:\n  hello:\n    run: echo the-app-says-no-config; exit 3\n    timeouts: {start: 5s}\n"
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := s.cli("deploy", "hello", "--source", dir, "--wait"); code == 0 {
		t.Fatalf("a deploy whose process exits succeeded: %s", errs)
	}
	out := s.ok("status", "hello")
	if !strings.Contains(out, "Last lines of") || !strings.Contains(out, "the-app-says-no-config") {
		t.Errorf("status announces log lines but does not show them:\n%s", out)
	}
}

func TestVersionRmDeletesOnlyFailedVersions(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), freePort(t), freePort(t))
	v1 := s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait")
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "sluice.yaml"), []byte("services:\n  hello:\n    run: exit 3\n    timeouts: {start: 5s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := s.cli("deploy", "hello", "--source", bad, "--wait")
	v2 := strings.TrimSpace(out)
	if code == 0 || v2 == "" {
		t.Fatalf("failing deploy: exit %d, %q", code, out)
	}

	before := s.ok("status", "hello", "--json")
	if _, errs, code := s.cli("version", "rm", "hello", v1); code == 0 || !strings.Contains(errs, "traffic policy") {
		t.Errorf("version rm of the version in the policy: exit %d, %q", code, errs)
	}
	if after := s.ok("status", "hello", "--json"); after != before {
		t.Errorf("a refused version rm changed the service")
	}
	if got := s.ok("version", "rm", "hello", v2); got != "deleted "+v2 {
		t.Errorf("version rm: %q", got)
	}
	for _, v := range s.status("hello").Versions {
		if v.Name == v2 {
			t.Errorf("%s is still listed after version rm", v2)
		}
	}
	h := s.ok("history", "hello")
	if !strings.Contains(h, v2+" deleted") || !strings.Contains(h, v2) {
		t.Errorf("history lost the deleted version or the deletion:\n%s", h)
	}
	if _, errs, code := s.cli("version", "rm", "hello", v2); code == 0 || !strings.Contains(errs, v2) {
		t.Errorf("second version rm: exit %d, %q", code, errs)
	}
	if v3 := s.ok("deploy", "hello", "--source", fastSource(t, ""), "--wait"); v3 == v2 {
		t.Errorf("the deleted version's name %s was given again", v2)
	}
}
