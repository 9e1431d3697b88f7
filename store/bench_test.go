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
