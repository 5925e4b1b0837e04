package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/drove-dev/drove/internal/sshagent"
)

// agentLauncher returns the agent launcher of drove run and drove exec:
// this drove executable, started once per host, runs the jobs there over
// one SSH session. A host that cannot run it is named once on stderr and
// gets a session per job. With noAgent it returns nil: a session per job
// everywhere.
func agentLauncher(noAgent bool, stderr io.Writer) *sshagent.Launcher {
	if noAgent {
		return nil
	}
	var mu sync.Mutex
	return &sshagent.Launcher{Warn: func(target string, err error) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "drove: %s: cannot start the agent, running a session per job: %v\n", target, err)
	}}
}
