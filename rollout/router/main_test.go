package router

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/testpar"
)

// The router's tests mostly wait (on timeouts, backoffs, connections held
// open on purpose), not on the CPU.
func TestMain(m *testing.M) {
	testpar.MostlyWaiting()
	os.Exit(m.Run())
}
