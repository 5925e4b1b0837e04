package main

import (
	"testing"
)

// cliMode is how drove run and drove exec reach SSH hosts in a test:
// through agents (the default) or a session per job (--no-agent).
type cliMode struct {
	name  string
	flags []string
}

// forModes runs test once with agents and once with --no-agent.
func forModes(t *testing.T, test func(t *testing.T, m cliMode)) {
	for _, m := range []cliMode{{"agent", nil}, {"session", []string{"--no-agent"}}} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// agent reports whether the mode uses agents.
func (m cliMode) agent() bool { return len(m.flags) == 0 }

// with returns the mode's flags followed by args.
func (m cliMode) with(args []string) []string {
	return append(append([]string{}, m.flags...), args...)
}

// drun is drun with the mode's flags.
func (m cliMode) drun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return drun(t, stdin, m.with(args)...)
}

// dexec is dexec with the mode's flags.
func (m cliMode) dexec(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return dexec(t, stdin, m.with(args)...)
}
