package router

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// The router's tests mostly wait (on timeouts, backoffs, connections held
// open on purpose), not on the CPU, so more of them run at once than there
// are CPUs, unless -parallel says otherwise. Not while fuzzing: there
// -parallel is the number of fuzzing processes.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" || f.Name == "test.fuzz" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(max(8, runtime.GOMAXPROCS(0))))
	}
	os.Exit(m.Run())
}
