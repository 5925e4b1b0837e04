package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestDemoAndSubmitOnSSHHosts: drove demo and drove submit with --nodes
// ssh://… run on SSH hosts, which become drove nodes for the command.
func TestDemoAndSubmitOnSSHHosts(t *testing.T) {
	srv := sshtest.Start(t, sshtest.WithHosts(2))
	nodes := "ssh://" + srv.Aliases[0] + ",ssh://" + srv.Aliases[1]
	code, out, errs := runCmd(t, "", "demo", "-F", srv.SSHConfig, "--nodes", nodes, "--unit", "1ms", "--jobs", "6")
	if code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errs)
	}
	line := regexp.MustCompile(`(?m)^\S+ executed job [1-6] at `)
	if got := len(line.FindAllString(out, -1)); got != 6 {
		t.Errorf("%d job lines in\n%s", got, out)
	}

	dir := t.TempDir()
	prog := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"$(whoami) [$1] $(cat data.txt)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("staged"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "", "submit", "-F", srv.SSHConfig, "--nodes", nodes, "-f", data, "-a", "one", "-a", "two", prog)
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, errs)
	}
	for _, want := range []string{sshtest.User + " [one] staged", sshtest.User + " [two] staged"} {
		if !strings.Contains(out, want) {
			t.Errorf("submit output lacks %q:\n%s", want, out)
		}
	}
}
