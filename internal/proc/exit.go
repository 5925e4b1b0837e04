// Package proc is drove's one vocabulary for processes, local or remote:
// how a process group is stopped (the escalation and its grace period), the
// error of a command that ended abnormally ([ExitError]), and how the end of
// a command becomes the outcome the scheduler acts on ([Classify]).
//
// Every executor and front end that runs a command uses it, so that a job
// stops the same way, and is reported the same way, wherever it runs.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExitError is the error of a command or process that exited with a
// non-zero status or was ended by a signal: a program or shell command, a
// worker that died while running a Go function, or a command on an SSH host.
type ExitError struct {
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Signal is the signal that ended the process, or 0. Signals reported
	// by an SSH server by name ("TERM") are converted with [SignalNum];
	// [ExitError.SignalName] gives the name back.
	Signal syscall.Signal
	// Stderr is the tail of what the process wrote to its standard error,
	// when it was collected.
	Stderr []byte
	// Host is the SSH host the command ran on; "" for this machine.
	Host string
	// Command is the command line, when known.
	Command string
}

// Error says how the process ended; for a command with a Host or Command it
// names them and adds the tail of its stderr.
func (e *ExitError) Error() string {
	if e.Host == "" && e.Command == "" {
		if e.Signal != 0 {
			return fmt.Sprintf("drove: process killed by signal %d (%v)", int(e.Signal), e.Signal)
		}
		return fmt.Sprintf("drove: process exited with status %d", e.Code)
	}
	msg := fmt.Sprintf("remote: %s: command %q exited with status %d", e.Host, e.Command, e.Code)
	if e.Signal != 0 {
		msg = fmt.Sprintf("remote: %s: command %q killed by signal %s", e.Host, e.Command, e.SignalName())
	}
	if s := bytes.TrimSpace(e.Stderr); len(s) > 0 {
		if len(s) > 512 {
			s = s[len(s)-512:]
		}
		msg += ": " + string(s)
	}
	return msg
}

// ExitCode returns Code, as [os/exec.ExitError.ExitCode] does.
func (e *ExitError) ExitCode() int { return e.Code }

// SignalName returns the name of the signal that ended the process without
// its "SIG" prefix ("TERM"), as SSH reports it, or "" if none did.
func (e *ExitError) SignalName() string { return SignalName(e.Signal) }

// SignalName returns sig's name without the "SIG" prefix ("TERM"), "" for
// 0, and the number for a signal without a name.
func SignalName(sig syscall.Signal) string {
	if sig == 0 {
		return ""
	}
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return fmt.Sprint(int(sig))
}

// SignalNum returns the signal named name, with or without the "SIG" prefix
// ("TERM", "SIGTERM"), or the number name spells. SSH servers report signals
// by name; OpenSSH appends "@openssh.com" to a name outside the SSH
// standard, which SignalNum ignores. A name it does not know gives SIGKILL:
// the process still died of a signal. "" gives 0.
func SignalNum(name string) syscall.Signal {
	if name == "" {
		return 0
	}
	name, _, _ = strings.Cut(name, "@")
	if s := unix.SignalNum("SIG" + strings.TrimPrefix(name, "SIG")); s != 0 {
		return s
	}
	var n int
	if _, err := fmt.Sscanf(name, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == name {
		return syscall.Signal(n)
	}
	return syscall.SIGKILL
}

// StateOf returns how a process that exited on this machine ended: its
// exit code, or -1 and the signal that ended it. A nil ps (the process
// never ran, or Wait failed) gives -1 and no signal.
func StateOf(ps *os.ProcessState) (code int, sig syscall.Signal) {
	if ps == nil {
		return -1, 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal()
	}
	return ps.ExitCode(), 0
}

// Tail returns a copy of the last n bytes of b.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.Clone(b)
}

// StderrTail is how much of a process's stderr an [ExitError] keeps.
const StderrTail = 4096
