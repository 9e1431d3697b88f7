package remote_test

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/apitest"
)

// The test binary doubles as the app the tests deploy.
func TestMain(m *testing.M) {
	apitest.RunApp()
	os.Exit(m.Run())
}
