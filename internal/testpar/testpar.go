// Package testpar sets how many tests of a test binary run at once. Test
// support only, for packages whose tests mostly wait (on child processes,
// timeouts, sockets held open on purpose) rather than compute; it imports
// nothing of sluice.
package testpar

import (
	"flag"
	"runtime"
	"strconv"
)

// Waiting is how many tests run at once in a binary whose tests mostly
// wait, when -parallel does not say: more than there are CPUs.
const Waiting = 8

// MostlyWaiting sets -test.parallel to max(Waiting, GOMAXPROCS) unless the
// command line sets -parallel, or fuzzes (there -parallel is the number of
// fuzzing processes). Call it from TestMain before m.Run; it parses the
// command line.
func MostlyWaiting() {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" || f.Name == "test.fuzz" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(max(Waiting, runtime.GOMAXPROCS(0))))
	}
}
