package drove_test

import (
	"os"
	"testing"

	"github.com/drove-dev/drove"
)

// TestMain makes the test binary its own worker: executors start it with
// the worker environment, and drove.Main then serves jobs instead of tests.
func TestMain(m *testing.M) {
	drove.Main()
	// Workers are this binary; under -race each would sleep a second at
	// exit to flush reports, slowing every Close.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}
