package router

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/rollout/routing"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/policy"
)

// TestChangesUnderLoad is the data path's promise: while clients keep
// sending requests, 200 random policy changes, promotes and rollbacks and
// 10 in-place instance swaps (new instances, switch, drain, stop the old
// ones) fail no request, and the first request after each Update is routed
// by the new table.
func TestChangesUnderLoad(t *testing.T) {
	t.Parallel()
	const changes, swaps, workers = 200, 10, 4
	versions := []string{"hello-001", "hello-002", "hello-003", "hello-004"}
	rng := rand.New(rand.NewPCG(1, 2))

	// Each version runs two instances that say who they are.
	var gen atomic.Int64
	start := func(version string) *httptest.Server {
		id := gen.Add(1)
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %s", version, id, body)
		}))
	}
	insts := map[string][]*httptest.Server{}
	for _, v := range versions {
		insts[v] = []*httptest.Server{start(v), start(v)}
	}
	defer func() {
		for _, ss := range insts {
			for _, s := range ss {
				s.Close()
			}
		}
	}()

	pol := policy.Policy{Split: map[string]int{"hello-001": 100}}
	table := func() routing.Table {
		st := routing.Service{Name: "hello", Policy: mustCompile(t, pol)}
		for _, v := range versions {
			vt := routing.Version{Name: v}
			for _, s := range insts[v] {
				vt.Addrs = append(vt.Addrs, addrOf(s))
			}
			st.Versions = append(st.Versions, vt)
		}
		return routing.Table{Services: []routing.Service{st}}
	}
	r, base := startRouter(t, table())

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	send := func(method, query, body string) (version string, err error) {
		req, _ := http.NewRequest(method, base+"/"+query, strings.NewReader(body))
		req.Host = "hello.sluice.test"
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		v := resp.Header.Get(VersionHeader)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), v+" ") || !strings.HasSuffix(string(b), " "+body) {
			return v, fmt.Errorf("%s %s: status %d, version %q, body %q", method, query, resp.StatusCode, v, b)
		}
		return v, nil
	}

	var (
		stop     atomic.Bool
		total    atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				method, query, body := "GET", "", ""
				switch i % 4 {
				case 1:
					query = "?beta=1"
				case 2:
					method, body = "POST", fmt.Sprintf("w%d-%d", w, i)
				}
				total.Add(1)
				if _, err := send(method, query, body); err != nil {
					failures.Add(1)
					t.Errorf("request failed: %v", err)
				}
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	// check sends one request right after an Update: it must be routed
	// by the new policy.
	check := func(step int, what string) {
		t.Helper()
		c := mustCompile(t, pol)
		for _, q := range []string{"", "?beta=1"} {
			v, err := send("GET", q, "")
			if err != nil {
				t.Fatalf("step %d (%s): %v", step, what, err)
			}
			d := c.Decide(strings.TrimPrefix(q, "?"))
			if d.Rule >= 0 && v != d.Version || d.Rule < 0 && !c.Holds(v) {
				t.Fatalf("step %d (%s): first request after the update (query %q) went to %s; policy %+v", step, what, q, v, pol)
			}
			if len(pol.Split) == 1 && d.Rule < 0 {
				for want := range pol.Split {
					if v != want {
						t.Fatalf("step %d (%s): went to %s; the split is all %s", step, what, v, want)
					}
				}
			}
		}
	}

	stable := "hello-001"
	swapAt := map[int]bool{}
	for len(swapAt) < swaps {
		swapAt[rng.IntN(changes)] = true
	}
	for step := range changes {
		var what string
		switch k := rng.IntN(3); {
		case k == 0: // a random split, perhaps with a rule
			n := 1 + rng.IntN(3)
			perm := rng.Perm(len(versions))[:n]
			split := map[string]int{}
			left := 100
			for i, p := range perm {
				w := left
				if i < n-1 {
					w = rng.IntN(left + 1)
				}
				split[versions[p]] += w
				left -= w
			}
			pol = policy.Policy{Split: split}
			if rng.IntN(2) == 0 {
				pol.Rules = []policy.Rule{{Version: versions[rng.IntN(len(versions))], Match: map[string]string{"beta": "1"}}}
			}
			what = fmt.Sprintf("traffic %v", split)
		case k == 1: // promote
			v := versions[rng.IntN(len(versions))]
			pol, stable, what = policy.Policy{Split: map[string]int{v: 100}}, v, "promote "+v
		default: // rollback to the stable version
			pol, what = policy.Policy{Split: map[string]int{stable: 100}}, "rollback to "+stable
		}
		r.Update(table())
		check(step, what)

		if swapAt[step] {
			// In-place redeploy of a version: new instances beside the
			// old, switch, drain the old, stop them.
			v := versions[rng.IntN(len(versions))]
			old := insts[v]
			insts[v] = []*httptest.Server{start(v), start(v)}
			r.Update(table())
			check(step, "swap "+v)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := r.Drain(ctx, []string{addrOf(old[0]), addrOf(old[1])}); err != nil {
				t.Fatalf("step %d: drain %s: %v", step, v, err)
			}
			cancel()
			for _, s := range old {
				s.Close()
			}
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across %d changes and %d swaps", n, total.Load(), changes, swaps)
	}
	t.Logf("%d requests, %d changes, %d swaps, %d failures", total.Load(), changes, swaps, failures.Load())
}
