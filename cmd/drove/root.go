package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "drove",
		Short: "Spread work over many CPUs and machines",
		Long: `drove runs jobs — Go functions or programs — on a cluster: this machine's CPUs
(an embedded cluster, nothing to start by hand), drove node daemons, or SSH hosts.

Start with "drove demo" to see jobs run on the embedded cluster, and
"drove submit PROGRAM" to run a program once per argument list ("drove recover
FILE" collects the results of one that was killed). "drove run"
is a work queue of shell commands over SSH hosts (GNU parallel style),
"drove exec" runs one command on many hosts (pssh, clush), and "drove fs"
works with a remote machine's files over SFTP. "drove up HOST…" starts drove
nodes on SSH hosts, and "drove down HOST…" stops them. "drove status ADDR"
shows what a drove node or scheduler is doing; its web monitor is at
http://ADDR/.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDemoCmd(), newSubmitCmd(), newRunCmd(), newExecCmd(), newFSCmd(), newVersionCmd(), newNodeCmd(), newSchedulerCmd(), newCertCmd(), newRecoverCmd(), newUpCmd(), newDownCmd(), newStatusCmd())
	return root
}

// exitError carries a command's exit code without an error message of its
// own (the command already reported what went wrong).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode decides the process's exit code in one place: 0 for success, the
// code a command chose, or 1 with the error printed.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "drove: ") {
		msg = "drove: " + msg
	}
	fmt.Fprintln(stderr, msg)
	return 1
}
