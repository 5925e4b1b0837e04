// Package sshexec runs shell commands as scheduler tasks on one SSH host
// through an [sshconn.Pool]: [Executor] implements [sched.Executor]. The
// same jobs run on this machine (GNU parallel's ":" login) with
// internal/executor/process.
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
// non-zero or dies of a signal ends Failed with a [*proc.ExitError]
// (unless [Config.NonZeroIsResult]), so the scheduler's retries apply:
// [proc.Classify] decides. A host
// that cannot be reached, or whose connection breaks, ends the run Lost with
// an error wrapping the [*sshconn.ConnError], and the executor reports its
// node down, so that the scheduler moves its other tasks elsewhere: a
// connection failure is never confused with a command's failure. The
// executor never connects again: internal/fleet, which keeps the hosts,
// dials the host anew and adds a new executor under the same name.
//
// Cancellation and timeouts stop the command's whole process group on the
// remote host through a second session (SIGINT, SIGTERM, then SIGKILL, the
// grace period apart: [proc.Steps]), so nothing the command started
// survives it.
//
// # The agent
//
// With [Config.Agent], New starts an agent on the host
// (internal/sshagent: this program's executable, installed in the host's
// cache and started over one session), and every command runs through it
// instead of in a session of its own: the same script, run by the login
// shell as sshd runs it, with the same results; the agent stops the
// process group itself. An agent that ends under a command is a lost
// connection. A host that cannot run the agent runs a session per
// command, as without one.
package sshexec

import (
	"errors"

	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/sched"
)

// Reporter receives the end of runs and the loss of the node;
// *sched.Scheduler implements it.
type Reporter interface {
	Done(r *sched.Run, res sched.Result)
	NodeDown(name string, err error)
}

// Job is a shell job with more than a command line.
type Job = process.Job

// Spec is implemented by a task's Ref that carries a [Job].
type Spec = process.Spec

// ErrClosed is the error of runs started after Close.
var ErrClosed = errors.New("drove: executor closed")

// paths returns where file f lives remotely and locally: see
// [process.Paths].
func paths(dir, f string) (remote, local string) { return process.Paths(dir, f) }
