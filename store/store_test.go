package store

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/policy"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// quiet keeps migration logs out of test output.
var quiet = WithLogger(slog.New(slog.DiscardHandler))

func openTemp(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func service(name string) rollout.Service {
	return rollout.Service{
		Name:    name,
		NextSeq: 3,
		Policy: policy.Policy{
			Rules: []policy.Rule{{Version: name + "-002", Match: map[string]string{"env": "beta*"}}},
			Split: map[string]int{name + "-001": 100},
		},
		Stables:   []string{name + "-001"},
		Sticky:    true,
		CreatedAt: t0,
	}
}

func version(svc string, seq int) rollout.Version {
	return rollout.Version{
		Name:    fmt.Sprintf("%s-%03d", svc, seq),
		Service: svc,
		Seq:     seq,
		Status:  rollout.StatusNormal,
		Config: rollout.Config{
			Build:        "go build -o app .",
			Run:          "./app",
			Health:       "/healthz",
			Env:          map[string]string{"GREETING": "hi"},
			Instances:    2,
			BuildTimeout: rollout.Duration(10 * time.Minute),
		},
		Generation: 1,
		Strategy:   rollout.StrategyCanary,
		CreatedBy:  rollout.Origin{Via: "comment", Actor: "octocat", URL: "https://example.test/c/1", Ref: "abc123", PR: 7},
		CreatedAt:  t0,
		UpdatedAt:  t0.Add(time.Minute),
	}
}

func event(svc, ver string, kind rollout.EventKind) rollout.Event {
	return rollout.Event{
		Time:    t0,
		Kind:    kind,
		Service: svc,
		Version: ver,
		Origin:  rollout.Origin{Via: "cli", Actor: "alice"},
		Op:      "deploy",
		Message: "created " + ver,
		Status:  rollout.StatusCreating,
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)

	svc := service("hello")
	v1 := version("hello", 1)
	v2 := version("hello", 2)
	v2.Status = rollout.StatusUpdating
	v2.Pending = &rollout.Config{Run: "./app2", Health: "/", Env: map[string]string{}, Instances: 1}
	v2.IdleSince = t0.Add(time.Hour)
	v2.Reason = rollout.Reason{Code: "BuildFailed", Detail: "exit 1", Suggestion: "fix it"}
	ev := event("hello", "hello-002", rollout.EventPolicy)
	ev.Reason = &rollout.Reason{Code: "X"}
	ev.Policy = &svc.Policy
	events := []rollout.Event{ev}
	if err := db.Commit(&svc, []rollout.Version{v2, v1}, events); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if events[0].Seq != 1 {
		t.Errorf("Commit wrote back Seq %d, want 1", events[0].Seq)
	}

	gotSvc, err := db.Service("hello")
	if err != nil {
		t.Fatalf("Service: %v", err)
	}
	if !reflect.DeepEqual(gotSvc, svc) {
		t.Errorf("Service = %+v, want %+v", gotSvc, svc)
	}
	gotV, err := db.Version("hello", "hello-002")
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if !reflect.DeepEqual(gotV, v2) {
		t.Errorf("Version = %+v, want %+v", gotV, v2)
	}
	vs, err := db.Versions("hello")
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	if !reflect.DeepEqual(vs, []rollout.Version{v1, v2}) {
		t.Errorf("Versions = %+v, want v1, v2 in seq order", vs)
	}
	evs, err := db.Events("", 0, 0)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	want := ev
	want.Seq = 1
	if !reflect.DeepEqual(evs, []rollout.Event{want}) {
		t.Errorf("Events = %+v, want %+v", evs, want)
	}

	// Overwriting a version (a status change) keeps one entry.
	v1.Status = rollout.StatusStopped
	if err := db.Commit(nil, []rollout.Version{v1}, nil); err != nil {
		t.Fatalf("Commit update: %v", err)
	}
	vs, _ = db.Versions("hello")
	if len(vs) != 2 || vs[0].Status != rollout.StatusStopped {
		t.Errorf("after update Versions = %+v", vs)
	}
}

func TestVersionsOrderedBySeqNotName(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	// Names that sort differently from their Seq: creation order must win.
	var vs []rollout.Version
	for _, seq := range []int{1000, 2, 999, 10, 1} {
		vs = append(vs, version("api", seq))
	}
	if err := db.Commit(nil, vs, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.Versions("api")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int
	for _, v := range got {
		seqs = append(seqs, v.Seq)
	}
	if want := []int{1, 2, 10, 999, 1000}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("seqs = %v, want %v", seqs, want)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	svc := service("hello")
	if err := db.Commit(&svc, []rollout.Version{version("hello", 1)}, nil); err != nil {
		t.Fatal(err)
	}
	// A service with versions but no record yet.
	if err := db.Commit(nil, []rollout.Version{version("orphan", 1)}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"unknown service", func() error { _, err := db.Service("nope"); return err }},
		{"empty service name", func() error { _, err := db.Service(""); return err }},
		{"service without record", func() error { _, err := db.Service("orphan"); return err }},
		{"version of unknown service", func() error { _, err := db.Version("nope", "nope-001"); return err }},
		{"unknown version", func() error { _, err := db.Version("hello", "hello-009"); return err }},
		{"version under wrong service", func() error { _, err := db.Version("orphan", "hello-001"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, rollout.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}

	vs, err := db.Versions("nope")
	if err != nil || vs == nil || len(vs) != 0 {
		t.Errorf("Versions(unknown) = %#v, %v; want empty, nil", vs, err)
	}
	if v, err := db.Version("orphan", "orphan-001"); err != nil || v.Seq != 1 {
		t.Errorf("Version(orphan) = %+v, %v", v, err)
	}
	svcs, err := db.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].Name != "hello" {
		t.Errorf("Services = %+v, want only hello (orphan has no record)", svcs)
	}
}

func TestServicesSorted(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	for _, name := range []string{"web", "api", "Zed", "db"} {
		s := service(name)
		if err := db.Commit(&s, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	svcs, err := db.Services()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	if want := []string{"Zed", "api", "db", "web"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names = %v, want %v", names, want)
	}
}

func TestCommitAtomic(t *testing.T) {
	t.Parallel()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // JSON cannot encode it
	badVersion := version("hello", 2)
	badVersion.CreatedAt = far
	badEvent := event("hello", "hello-001", rollout.EventVersionCreated)
	badEvent.Time = far
	noName := version("hello", 3)
	noName.Name = ""
	negative := version("hello", -1)
	badService := service("hello")
	badService.CreatedAt = far
	emptyService := service("")

	svc := service("hello")
	good := version("hello", 1)
	goodEvent := event("hello", "hello-001", rollout.EventVersionCreated)

	for _, tc := range []struct {
		name     string
		svc      *rollout.Service
		versions []rollout.Version
		events   []rollout.Event
		wantErr  string
	}{
		{"version cannot marshal", &svc, []rollout.Version{good, badVersion}, []rollout.Event{goodEvent}, "put version hello-002"},
		{"event cannot marshal", &svc, []rollout.Version{good}, []rollout.Event{goodEvent, badEvent}, "append event"},
		{"service cannot marshal", &badService, []rollout.Version{good}, []rollout.Event{goodEvent}, "put service hello"},
		{"empty service name", &emptyService, nil, nil, "empty service name"},
		{"empty version name", &svc, []rollout.Version{good, noName}, nil, "empty version name"},
		{"negative seq", &svc, []rollout.Version{good, negative}, nil, "negative seq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTemp(t)
			events := append([]rollout.Event(nil), tc.events...)
			err := db.Commit(tc.svc, tc.versions, events)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Commit err = %v, want one containing %q", err, tc.wantErr)
			}
			for i, e := range events {
				if e.Seq != 0 {
					t.Errorf("failed Commit wrote back events[%d].Seq = %d", i, e.Seq)
				}
			}
			assertEmpty(t, db)
			// The failed transaction's sequence numbers were not consumed.
			next := []rollout.Event{goodEvent}
			if err := db.Commit(nil, nil, next); err != nil {
				t.Fatal(err)
			}
			if next[0].Seq != 1 {
				t.Errorf("next event Seq = %d, want 1", next[0].Seq)
			}
		})
	}
}

func TestCommitRefusesSeqConflicts(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	v := version("hello", 1)
	if err := db.Commit(nil, []rollout.Version{v}, nil); err != nil {
		t.Fatal(err)
	}
	renamed := version("hello", 1)
	renamed.Name = "hello-x"
	moved := version("hello", 2)
	moved.Name = v.Name
	for _, tc := range []struct {
		name    string
		v       rollout.Version
		wantErr string
	}{
		{"same name, other seq", moved, "already stored with seq 1"},
		{"same seq, other name", renamed, "seq 1 already belongs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.Commit(nil, []rollout.Version{tc.v}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			vs, _ := db.Versions("hello")
			if !reflect.DeepEqual(vs, []rollout.Version{v}) {
				t.Errorf("Versions = %+v, want only the original", vs)
			}
		})
	}
}

// assertEmpty checks that nothing at all is stored.
func assertEmpty(t *testing.T, db *DB) {
	t.Helper()
	if _, err := db.Service("hello"); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("Service err = %v, want ErrNotFound", err)
	}
	if svcs, err := db.Services(); err != nil || len(svcs) != 0 {
		t.Errorf("Services = %v, %v; want none", svcs, err)
	}
	if vs, err := db.Versions("hello"); err != nil || len(vs) != 0 {
		t.Errorf("Versions = %v, %v; want none", vs, err)
	}
	if evs, err := db.Events("", 0, 0); err != nil || len(evs) != 0 {
		t.Errorf("Events = %v, %v; want none", evs, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	svc := service("hello")
	if err := db.Commit(&svc, []rollout.Version{version("hello", 1)}, []rollout.Event{event("hello", "hello-001", rollout.EventVersionCreated)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Service("hello"); err == nil {
		t.Error("Service on a closed DB succeeded")
	}
	if err := db.Commit(&svc, nil, nil); err == nil {
		t.Error("Commit on a closed DB succeeded")
	}

	db, err = Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.Service("hello"); err != nil || !reflect.DeepEqual(got, svc) {
		t.Errorf("Service after reopen = %+v, %v", got, err)
	}
	if got, err := db.Version("hello", "hello-001"); err != nil || got.Seq != 1 {
		t.Errorf("Version after reopen = %+v, %v", got, err)
	}
	// The event sequence continues where it was.
	evs := []rollout.Event{event("hello", "hello-001", rollout.EventVersionStatus)}
	if err := db.Commit(nil, nil, evs); err != nil {
		t.Fatal(err)
	}
	if evs[0].Seq != 2 {
		t.Errorf("Seq after reopen = %d, want 2", evs[0].Seq)
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	t.Parallel()
	_, path := openTemp(t)
	start := time.Now()
	db, err := Open(path, WithLockTimeout(100*time.Millisecond))
	if err == nil {
		db.Close()
		t.Fatal("second Open succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %s with a 100ms timeout", d)
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("err %q does not name the file", err)
	}
}

// TestHelperHoldLock is not a test: run as a child process by
// TestSecondProcessTimesOut, it holds the store open like a running sluice
// until its stdin closes.
func TestHelperHoldLock(t *testing.T) {
	t.Parallel()
	path := os.Getenv("STORE_TEST_HOLD")
	if path == "" {
		t.Skip("helper process only")
	}
	db, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = db.Close()
}

func TestSecondProcessTimesOut(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sluice.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	start := time.Now()
	db, err := Open(path) // default timeout
	elapsed := time.Since(start)
	if err == nil {
		db.Close()
		t.Fatal("Open beside another process succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want ErrLocked naming %s", err, path)
	}
	// bbolt polls the lock, so it may give up a poll interval early.
	if elapsed < DefaultLockTimeout-500*time.Millisecond || elapsed > DefaultLockTimeout+3*time.Second {
		t.Errorf("Open gave up after %s, want about %s", elapsed, DefaultLockTimeout)
	}

	release()
	db, err = Open(path, WithLockTimeout(time.Second))
	if err != nil {
		t.Fatalf("Open after the other process exited: %v", err)
	}
	db.Close()
}

func TestEvents(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	// Seq: 1 a, 2 b, 3 a, 4 global, 5 b, 6 a, 7 a
	for _, batch := range [][]string{{"a", "b"}, {"a"}, {"", "b", "a"}, {"a"}} {
		var evs []rollout.Event
		for _, s := range batch {
			evs = append(evs, event(s, "", rollout.EventPolicy))
		}
		if err := db.Commit(nil, nil, evs); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		service string
		after   uint64
		limit   int
		want    []uint64
	}{
		{"all", "", 0, 0, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"all after", "", 3, 0, []uint64{4, 5, 6, 7}},
		{"all limited", "", 1, 2, []uint64{2, 3}},
		{"negative limit is default", "", 0, -1, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"service a", "a", 0, 0, []uint64{1, 3, 6, 7}},
		{"service a after 3", "a", 3, 0, []uint64{6, 7}},
		{"service a after 4 (not an a seq)", "a", 4, 1, []uint64{6}},
		{"service b", "b", 0, 10, []uint64{2, 5}},
		{"unknown service", "zzz", 0, 0, []uint64{}},
		{"past the end", "", 7, 0, []uint64{}},
		{"max after", "", ^uint64(0), 0, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := db.Events(tc.service, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := []uint64{}
			for _, e := range evs {
				got = append(got, e.Seq)
				if tc.service != "" && e.Service != tc.service {
					t.Errorf("event %d of service %q in page of %q", e.Seq, e.Service, tc.service)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("seqs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLatestEvents(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	// Seq: 1 a, 2 b, 3 a, 4 global, 5 b, 6 a, 7 a
	for _, s := range []string{"a", "b", "a", "", "b", "a", "a"} {
		if err := db.Commit(nil, nil, []rollout.Event{event(s, "", rollout.EventPolicy)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		service string
		before  uint64
		limit   int
		want    []uint64
	}{
		{"all", "", 0, 0, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"newest three", "", 0, 3, []uint64{5, 6, 7}},
		{"three before 5", "", 5, 3, []uint64{2, 3, 4}},
		{"before past the end", "", 100, 2, []uint64{6, 7}},
		{"before the first", "", 1, 0, []uint64{}},
		{"service a newest two", "a", 0, 2, []uint64{6, 7}},
		{"service a before 6 (an a seq)", "a", 6, 5, []uint64{1, 3}},
		{"service a before 5 (not an a seq)", "a", 5, 1, []uint64{3}},
		{"service b", "b", 0, 10, []uint64{2, 5}},
		{"unknown service", "zzz", 0, 0, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := db.LatestEvents(tc.service, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := []uint64{}
			for _, e := range evs {
				got = append(got, e.Seq)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("seqs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEventsDefaultLimit(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	evs := make([]rollout.Event, DefaultEventsLimit+5)
	for i := range evs {
		evs[i] = event("a", "", rollout.EventPolicy)
	}
	if err := db.Commit(nil, nil, evs); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"", "a"} {
		got, err := db.Events(svc, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != DefaultEventsLimit || got[len(got)-1].Seq != DefaultEventsLimit {
			t.Errorf("Events(%q, 0, 0) returned %d, want the first %d", svc, len(got), DefaultEventsLimit)
		}
	}
}

func TestConcurrentCommits(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("svc%d", w)
			for i := 1; i <= each; i++ {
				if err := db.Commit(nil, []rollout.Version{version(name, i)}, []rollout.Event{event(name, "", rollout.EventVersionCreated)}); err != nil {
					t.Error(err)
					return
				}
				if _, err := db.Events("", 0, 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs, err := db.Events("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each {
		t.Fatalf("got %d events, want %d", len(evs), writers*each)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("events[%d].Seq = %d: sequence has gaps or repeats", i, e.Seq)
		}
	}
}
