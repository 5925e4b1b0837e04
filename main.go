package drove

import (
	"os"

	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/worker"
)

// Main must be the first statement of main in every program that uses
// drove. In a process started as a worker it serves jobs and exits; in the
// client it returns at once.
//
// Main also marks the end of registration: functions and setups registered
// after it are unknown to workers, and NewCluster refuses them.
func Main() {
	registry.Seal()
	if worker.IsWorker() {
		os.Exit(worker.Main())
	}
}
