package fds

import (
	"syscall"
	"testing"
)

func TestSplitKeepsEveryListenerWithinTheLimit(t *testing.T) {
	for _, tc := range []struct {
		limit       uint64
		api, router int
		want        Budget
	}{
		{1 << 20, 64, 10000, Budget{API: 64, Router: 10000}}, // plenty: the flags stand
		{1024, 64, 10000, Budget{API: 64, Router: 352}},      // 256 reserved, 768 shared
		{200, 64, 10000, Budget{API: 18, Router: 66}},
		{4, 64, 10000, Budget{API: 1, Router: 1}},
	} {
		got := Split(tc.limit, tc.api, tc.router)
		if got != tc.want {
			t.Errorf("Split(%d, %d, %d) = %+v, want %+v", tc.limit, tc.api, tc.router, got, tc.want)
		}
		if tc.limit > 16 && uint64(got.API+2*got.Router) > tc.limit {
			t.Errorf("Split(%d): %+v exceeds the limit", tc.limit, got)
		}
	}
}

func TestRaiseLimitReachesTheHardLimit(t *testing.T) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	if l.Max < 128 {
		t.Skipf("hard limit %d leaves no room to lower the soft one", l.Max)
	}
	low := syscall.Rlimit{Cur: 64, Max: l.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) })
	got, err := RaiseLimit()
	if err != nil || got != l.Max {
		t.Fatalf("RaiseLimit = %d, %v; want the hard limit %d", got, err, l.Max)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &low); err != nil || low.Cur != l.Max {
		t.Fatalf("soft limit now %d, want %d", low.Cur, l.Max)
	}
}
