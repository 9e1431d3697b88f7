package local

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"
)

func TestLogs(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ctx := ctxT(t)
	spec := appSpec(t, "hello-001", "serve", nil)
	spec.Build = `for i in $(seq 1 200); do echo "build line $i"; done`
	spec.Instances = 2
	mustBuild(t, l, spec)
	g, err := l.Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := g.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	next := spec
	next.Generation, next.BaseGeneration, next.Archive, next.Instances = 2, 1, nil, 1
	mustBuild(t, l, next)
	g, err = l.Start(ctx, next, nil)
	if err != nil {
		t.Fatalf("Start generation 2: %v", err)
	}
	if err := g.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		max    int
		want   []string
		absent []string
	}{
		{
			max:    0,
			want:   []string{"==> build.log <==\n", "build line 1\n", "build line 200\n", "==> run-2-0.log <==\n", "generation 2 instance 0: started", "listening on"},
			absent: []string{"run-1-0.log", "run-1-1.log"},
		},
		{
			max:    400,
			want:   []string{"==> build.log <==\n", "build line 199\n", "==> run-2-0.log <==\n", "listening on"},
			absent: []string{"build line 1\n", "run-1-"},
		},
	}
	for _, tt := range tests {
		out, err := l.Logs(context.Background(), "hello-001", tt.max)
		if err != nil {
			t.Fatalf("Logs(%d): %v", tt.max, err)
		}
		if tt.max > 0 && len(out) > tt.max {
			t.Errorf("Logs(%d) returned %d bytes", tt.max, len(out))
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("Logs(%d) lacks %q:\n%s", tt.max, w, out)
			}
		}
		for _, a := range tt.absent {
			if strings.Contains(out, a) {
				t.Errorf("Logs(%d) contains %q:\n%s", tt.max, a, out)
			}
		}
		// Every kept section starts at a line start.
		for _, sec := range strings.Split(out, "<==\n")[1:] {
			if first, _, _ := strings.Cut(sec, "\n"); first != "" && !strings.HasPrefix(first, "build line") &&
				!strings.HasPrefix(first, "====") && !strings.HasPrefix(first, "listening") {
				t.Errorf("Logs(%d) section starts mid-line: %q", tt.max, first)
			}
		}
	}

	if _, err := l.Logs(context.Background(), "hello-999", 100); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Logs of an unknown version: %v, want fs.ErrNotExist", err)
	}
	if _, err := l.Logs(context.Background(), "../hello-001", 100); err == nil {
		t.Error("Logs accepted a version name with a path separator")
	}
}

func TestBackoffStep(t *testing.T) {
	t.Parallel()
	const min, max = 200 * time.Millisecond, 30 * time.Second
	tests := []struct {
		cur, upFor  time.Duration
		delay, next time.Duration
	}{
		{cur: min, upFor: 0, delay: min, next: 2 * min},
		{cur: 2 * min, upFor: time.Second, delay: 2 * min, next: 4 * min},
		{cur: 20 * time.Second, upFor: 0, delay: 20 * time.Second, next: max},
		{cur: max, upFor: 0, delay: max, next: max},
		{cur: max, upFor: backoffResetAfter, delay: min, next: 2 * min},
		{cur: 0, upFor: 0, delay: min, next: 2 * min},
	}
	for _, tt := range tests {
		delay, next := backoffStep(tt.cur, min, max, tt.upFor)
		if delay != tt.delay || next != tt.next {
			t.Errorf("backoffStep(%v, up %v) = %v, %v; want %v, %v", tt.cur, tt.upFor, delay, next, tt.delay, tt.next)
		}
	}
}
