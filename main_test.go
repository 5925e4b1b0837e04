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
	if addr := os.Getenv("DROVE_TEST_RECOVER_CLIENT"); addr != "" {
		os.Exit(recoverClientMain(addr)) // this process plays a client that goes away
	}
	if path := os.Getenv("DROVE_TEST_RECOVER_FILE"); path != "" {
		os.Exit(recoverFileClientMain(path, os.Getenv("DROVE_TEST_RECOVER_NODES"))) // a client killed while its jobs run
	}

	os.Exit(m.Run())
}
