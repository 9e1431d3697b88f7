package store

import (
	"testing"

	"github.com/sluicehq/sluice/rollout"
)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkCommit measures one durable Commit of a version and its event.
func BenchmarkCommit(b *testing.B) {
	db, _ := openTemp(b)
	seq := 0
	for b.Loop() {
		seq++
		v := version("hello", seq)
		if err := db.Commit(nil, []rollout.Version{v}, []rollout.Event{event("hello", v.Name, rollout.EventVersionCreated)}); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}

// BenchmarkServiceVersions reads a service record and its 50 versions.
func BenchmarkServiceVersions(b *testing.B) {
	db, _ := openTemp(b)
	svc := service("hello")
	vs := make([]rollout.Version, 50)
	for i := range vs {
		vs[i] = version("hello", i+1)
	}
	if err := db.Commit(&svc, vs, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := db.Service("hello"); err != nil {
			b.Fatal(err)
		}
		got, err := db.Versions("hello")
		if err != nil || len(got) != 50 {
			b.Fatalf("Versions = %d, %v", len(got), err)
		}
	}
	reportOps(b)
}

// BenchmarkEventsPage reads a page of 100 events out of 5000 spread over
// five services, from the whole log and from one service's index.
func BenchmarkEventsPage(b *testing.B) {
	db, _ := openTemp(b)
	names := []string{"a", "b", "c", "d", "e"}
	evs := make([]rollout.Event, 5000)
	for i := range evs {
		evs[i] = event(names[i%len(names)], "", rollout.EventPolicy)
	}
	if err := db.Commit(nil, nil, evs); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, service string }{{"all", ""}, {"service", "c"}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := db.Events(bc.service, 2000, 100)
				if err != nil || len(got) != 100 {
					b.Fatalf("Events = %d, %v", len(got), err)
				}
			}
			reportOps(b)
		})
	}
}

// BenchmarkOpen measures Open of a store holding 20,000 events and 1,000
// versions: the consistency walk, the backup and the migration check.
func BenchmarkOpen(b *testing.B) {
	db, path := openTemp(b)
	vs := make([]rollout.Version, 1000)
	evs := make([]rollout.Event, 0, 20000)
	for i := range vs {
		vs[i] = version("hello", i+1)
	}
	for i := 0; i < 20000; i++ {
		evs = append(evs, event("hello", "hello-001", rollout.EventVersionStatus))
	}
	if err := db.Commit(nil, vs, evs); err != nil {
		b.Fatal(err)
	}
	db.Close()
	for b.Loop() {
		db, err := Open(path, quiet, WithBackup())
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
	reportOps(b)
}
