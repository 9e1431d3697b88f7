package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
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
