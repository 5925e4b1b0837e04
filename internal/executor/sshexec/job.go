// Package sshexec runs shell commands as scheduler tasks: [Executor] on one
// SSH host through an [sshconn.Pool], and [Local] on this machine (GNU
// parallel's ":" login). Both implement [sched.Executor].
//
// A task's command is its Input, as a shell command line, unless its Ref
// implements [Spec], whose [Job] adds a working directory, environment,
// standard input, streaming output writers and file transfers.
//
// # Results
//
// Every run ends with Output holding the exit code (wire.AppendExitCode),
// Stdout and Stderr (unless streamed to the Job's writers), Start and End as
// seen by the client, and Sent/Received byte counts. A command that exits
// non-zero or dies of a signal ends Failed with a [*joberr.ExitError]
// (unless [Config.NonZeroIsResult]), so the scheduler's retries apply. A host
// that cannot be reached, or whose connection breaks, ends the run Lost with
// an error wrapping the [*sshconn.ConnError], and the executor reports its
// node down, so that the scheduler moves its other tasks elsewhere: a
// connection failure is never confused with a command's failure. The
// executor never connects again: internal/fleet, which keeps the hosts,
// dials the host anew and adds a new executor under the same name.
//
// Cancellation and timeouts kill the command's whole process group (on the
// remote host through a second session), SIGTERM first and SIGKILL after
// the grace period, so nothing the command started survives it.
package sshexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
	"golang.org/x/sys/unix"
)

// Reporter receives the end of runs and the loss of the node;
// *sched.Scheduler implements it.
type Reporter interface {
	Done(r *sched.Run, res sched.Result)
	NodeDown(name string, err error)
}

// Job is a shell job with more than a command line.
type Job struct {
	// Command is the shell command line, run exactly as given by the login
	// shell of the user on an SSH host (as `ssh host command` and GNU
	// parallel -S run it) and by /bin/sh -c (LocalConfig.Shell) on this
	// machine.
	Command string
	// CommandFor, if set, builds the command line at the start of each
	// attempt, once the node (the scheduler's name for it) and the run's
	// slot on it (1 … slots) are known, for GNU parallel's {%}. It overrides
	// Command.
	CommandFor func(node string, slot int) string
	// Dir is the working directory, created if missing; relative paths are
	// relative to the login directory (the home directory for Local). Empty
	// means the login directory (the current directory for Local).
	Dir string
	// Env holds NAME=value pairs exported to the command.
	Env []string
	// Stdin is the command's standard input; nil gives it none.
	Stdin []byte
	// Stdout and Stderr, if set, receive the output as it arrives instead of
	// it being collected in the Result.
	Stdout, Stderr io.Writer
	// Transfer lists local files copied to the host before the command
	// (GNU parallel --transferfile). A relative path lands relative to Dir;
	// a "/./" in a path marks where the part relative to Dir begins. Local
	// runs without a Dir ignore it: the files are already here.
	Transfer []string
	// Return lists files copied back from the host after the command, to the
	// same path relative to the current directory (GNU parallel --return).
	Return []string
	// Cleanup removes the transferred and returned files from the host
	// afterwards (GNU parallel --cleanup).
	Cleanup bool
	// RemoveDir removes Dir and everything in it from the host afterwards
	// (GNU parallel --workdir ...).
	RemoveDir bool
}

// Spec is implemented by a task's Ref that carries a [Job].
type Spec interface {
	ShellJob() *Job
}

// jobOf returns the job of t: its Ref's, or a Job running its Input.
func jobOf(t *sched.Task) *Job {
	if s, ok := t.Ref.(Spec); ok {
		if j := s.ShellJob(); j != nil {
			return j
		}
	}
	return &Job{Command: string(t.Input)}
}

func (j *Job) command(node string, slot int) string {
	if j.CommandFor != nil {
		return j.CommandFor(node, slot)
	}
	return j.Command
}

// ErrClosed is the error of runs started after Close.
var ErrClosed = errors.New("sshexec: executor closed")

// exitResult fills res from a finished command's status.
func exitResult(res *sched.Result, code int, sig syscall.Signal, nonZeroIsResult bool) {
	res.Output = wire.AppendExitCode(nil, code)
	if code == 0 && sig == 0 {
		res.Outcome = sched.OK
		return
	}
	if nonZeroIsResult && sig == 0 {
		res.Outcome = sched.OK
		return
	}
	res.Outcome = sched.Failed
	res.Err = &joberr.ExitError{Code: code, Signal: sig, Stderr: tail(res.Stderr, 4096)}
}

// signalNum maps a signal name as SSH reports it ("TERM") to its number.
func signalNum(name string) syscall.Signal {
	if name == "" {
		return 0
	}
	if s := unix.SignalNum("SIG" + name); s != 0 {
		return s
	}
	return syscall.SIGKILL // unknown name: still a death by signal
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.Clone(b)
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// outputs returns the writers a run writes to and a function that moves
// collected output into res.
func outputs(j *Job) (stdout, stderr *counter, collect func(res *sched.Result)) {
	var ob, eb *bytes.Buffer
	stdout, stderr = &counter{w: j.Stdout}, &counter{w: j.Stderr}
	if j.Stdout == nil {
		ob = &bytes.Buffer{}
		stdout.w = ob
	}
	if j.Stderr == nil {
		eb = &bytes.Buffer{}
		stderr.w = eb
	}
	return stdout, stderr, func(res *sched.Result) {
		if ob != nil {
			res.Stdout = ob.Bytes()
		}
		if eb != nil {
			res.Stderr = eb.Bytes()
		}
		res.Received += stdout.n + stderr.n
	}
}

// slotSet hands out slot numbers 1 … n, lowest free first.
type slotSet struct{ used []bool }

func (s *slotSet) take() int {
	for i, u := range s.used {
		if !u {
			s.used[i] = true
			return i + 1
		}
	}
	s.used = append(s.used, true)
	return len(s.used)
}

func (s *slotSet) put(n int) {
	if n >= 1 && n <= len(s.used) {
		s.used[n-1] = false
	}
}

// stopped wraps why a run was stopped, for the Result's error.
func stopped(cause error) error {
	if cause == nil {
		cause = context.Canceled
	}
	return fmt.Errorf("sshexec: stopped: %w", cause)
}
