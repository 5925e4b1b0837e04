package drove

import (
	"os"

	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshnode"
	"github.com/drove-dev/drove/internal/worker"
)

// Main must be the first statement of main in every program that uses
// drove. In a process started as a worker it serves jobs and exits; in a
// process a client started over SSH (WithNodes("ssh://host")) it serves
// the node protocol on stdin and stdout until they close, then exits; in
// a process started over SSH as the agent of drove run, drove exec or
// Shell it runs their commands until its session ends, then exits; in the
// client it returns at once.
//
// Main also marks the end of registration: functions and setups registered
// after it are unknown to workers, and NewCluster refuses them.
func Main() {
	registry.Seal()
	if worker.IsWorker() {
		os.Exit(worker.Main())
	}
	if sshnode.Serving() {
		// Started by a client over SSH to be a drove node on this one
		// connection (WithNodes("ssh://host")).
		os.Exit(sshnode.Main())
	}
	if sshagent.Serving() {
		// Started over SSH as the agent that runs drove run's, drove
		// exec's or drove.Shell's commands on this host.
		os.Exit(sshagent.Main())
	}
}
