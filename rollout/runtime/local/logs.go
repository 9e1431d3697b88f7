package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Logs returns the ends of version's build log and of the run logs of its
// newest started generation (one per instance), each under a label line
// "==> <file> <==". The result is at most max bytes,
// shared fairly between the logs, each cut at a line start; max <= 0 or
// above MaxLogsBytes means MaxLogsBytes. Rotated copies (<name>.1) are not
// read. A version with
// no logs yields an error wrapping fs.ErrNotExist. Safe for concurrent use.
func (l *Local) Logs(ctx context.Context, version string, max int) (string, error) {
	if err := checkVersion(version); err != nil {
		return "", fmt.Errorf("read logs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("read logs of %s: %w", version, err)
	}
	if max <= 0 || max > MaxLogsBytes {
		max = MaxLogsBytes
	}
	dir := l.logDir(version)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read logs of %s: %w", version, err)
	}
	type runLog struct {
		name     string
		gen, idx int
	}
	var runs []runLog
	hasBuild := false
	for _, e := range entries {
		name := e.Name()
		if name == "build.log" {
			hasBuild = true
			continue
		}
		var gen, idx int
		if g, i, ok := parseRunLog(name); ok {
			gen, idx = g, i
			runs = append(runs, runLog{name, gen, idx})
		}
	}
	newest := 0
	for _, r := range runs {
		newest = maxInt(newest, r.gen)
	}
	var names []string
	if hasBuild {
		names = append(names, "build.log")
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].idx < runs[j].idx })
	for _, r := range runs {
		if r.gen == newest {
			names = append(names, r.name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("read logs of %s: %w", version, os.ErrNotExist)
	}

	type section struct {
		label string
		size  int64
		quota int64
	}
	secs := make([]*section, len(names))
	var labels int64
	for i, n := range names {
		secs[i] = &section{label: "==> " + n + " <==\n"}
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil {
			secs[i].size = st.Size()
		}
		labels += int64(len(secs[i].label)) + 1 // +1: the newline after the body
	}
	// Share the budget fairly: small logs take what they need, the rest is
	// split evenly among the larger ones.
	budget := int64(max) - labels
	if max <= 0 {
		budget = 1 << 62
	}
	order := append([]*section(nil), secs...)
	sort.Slice(order, func(i, j int) bool { return order[i].size < order[j].size })
	for i, s := range order {
		share := budget / int64(len(order)-i)
		if share < 0 {
			share = 0
		}
		s.quota = min(s.size, share)
		budget -= s.quota
	}

	var b strings.Builder
	for i, s := range secs {
		body, err := readLast(filepath.Join(dir, names[i]), s.quota)
		if err != nil {
			return "", fmt.Errorf("read logs of %s: %w", version, err)
		}
		b.WriteString(s.label)
		b.WriteString(body)
		if body != "" && !strings.HasSuffix(body, "\n") {
			b.WriteString("\n")
		}
	}
	out := b.String()
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// parseRunLog parses "run-<gen>-<idx>.log".
func parseRunLog(name string) (gen, idx int, ok bool) {
	rest, found := strings.CutPrefix(name, "run-")
	if !found {
		return 0, 0, false
	}
	rest, found = strings.CutSuffix(rest, ".log")
	if !found {
		return 0, 0, false
	}
	g, i, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	gen, err1 := strconv.Atoi(g)
	idx, err2 := strconv.Atoi(i)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return gen, idx, true
}

// readLast returns the last n bytes of the file at path, starting after
// the first newline when the cut falls inside a line.
func readLast(path string, n int64) (string, error) {
	if n <= 0 {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	start := st.Size() - n
	if start < 0 {
		start = 0
	}
	buf := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return "", err
	}
	if start > 0 {
		prev := make([]byte, 1)
		if _, err := f.ReadAt(prev, start-1); err == nil && prev[0] != '\n' {
			if i := strings.IndexByte(string(buf), '\n'); i >= 0 {
				buf = buf[i+1:]
			}
		}
	}
	return string(buf), nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
