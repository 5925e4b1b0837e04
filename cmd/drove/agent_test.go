package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
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

// TestRunExecAgent: with the agent a job's shell is the agent's child, not
// sshd's; with --no-agent, sshd's, as with `ssh host command`.
func TestRunExecAgent(t *testing.T) { forModes(t, testRunExecAgent) }

func testRunExecAgent(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	want := "sshd\n"
	if m.agent() {
		want = "agent\n"
	}
	parent := `case $(cat /proc/$PPID/comm) in sshd*) echo sshd;; *) echo agent;; esac`
	code, out, errs := m.drun(t, "", append(sshArgs(s), "-S", "2/host0", parent+" # {}", ":::", "1", "2", "3")...)
	if code != 0 || out != want+want+want || errs != "" {
		t.Errorf("run: exit %d out %q err %q, want %q thrice", code, out, errs, want)
	}
	code, out, errs = m.dexec(t, "", append(sshArgs(s), "-w", "host0", parent)...)
	if code != 0 || out != "host0: "+want || errs != "" {
		t.Errorf("exec: exit %d out %q err %q, want %q", code, out, errs, want)
	}
}

// TestRunAgentFallback: a host of another architecture (a fake uname
// first in its PATH) cannot run the agent: drove run says so once, on
// stderr, and runs its jobs in a session each beside a host that has the
// agent.
func TestRunAgentFallback(t *testing.T) {
	if runtime.GOARCH == "arm64" {
		t.Skip("the fake uname claims this machine's own architecture")
	}
	fake, err := os.MkdirTemp("", "drove-fakeuname-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fake) })
	os.Chmod(fake, 0o755)
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho 'Linux aarch64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := sshtest.Start(t, sshtest.WithHosts(2), sshtest.WithConfig("Match LocalAddress 127.0.0.2", "  SetEnv PATH="+fake+":/usr/bin:/bin"))
	var inputs []string
	for i := range 12 {
		inputs = append(inputs, strconv.Itoa(i))
	}
	code, out, errs := drun(t, "", append(append(sshArgs(s), "-S", "2/host0,2/host1", "--tag", "sleep 0.1; echo {}", ":::"), inputs...)...)
	if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 12 {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
	warn := "drove: host0: cannot start the agent, running a session per job: "
	if strings.Count(errs, warn) != 1 || !strings.Contains(errs, "linux/arm64") || strings.Contains(errs, "host1:") {
		t.Errorf("stderr %q: want one warning about host0 naming linux/arm64", errs)
	}
}
