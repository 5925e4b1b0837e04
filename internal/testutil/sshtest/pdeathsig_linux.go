package sshtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill sshd if the test binary dies without
// running its cleanups (a test timeout panics, for instance), so no listener
// outlives the test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
