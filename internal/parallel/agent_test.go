package parallel

import (
	"testing"

	"github.com/drove-dev/drove/internal/sshagent"
)

// mode is how the tests' jobs reach SSH hosts: through agents, or a
// session each.
type mode struct {
	name  string
	agent bool
}

// launcher returns the mode's agent launcher, which fails the test if a
// host cannot run the agent; nil for a session per job.
func (m mode) launcher(t *testing.T) *sshagent.Launcher {
	if !m.agent {
		return nil
	}
	return &sshagent.Launcher{Warn: func(target string, err error) {
		t.Errorf("no agent on %s: %v", target, err)
	}}
}

// forModes runs test once through agents and once with a session per job.
func forModes(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range []mode{{"agent", true}, {"session", false}} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}
