package main

import (
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
