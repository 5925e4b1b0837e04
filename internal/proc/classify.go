package proc

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
)

// End is how a command ended, as the executor that ran it saw it: the one
// input of [Classify]. At most one of Stopped's and Err's cases applies
// first; Code and Signal count only when the command was seen to end.
type End struct {
	// Code is the exit status of a command that exited; with Signal set it
	// is ignored (-1 is reported).
	Code int
	// Signal is the signal that ended the command, or 0.
	Signal syscall.Signal
	// Exited says the command's own end was seen (Code and Signal are
	// known). It is false when it could not start, when the connection
	// broke under it, or when it was stopped and its status never came.
	Exited bool
	// Stopped is why the executor stopped the command (the run's cancel
	// cause, [sched.ErrCancelled], [sched.ErrTimeout] or the executor's
	// ErrClosed); nil if nobody asked it to stop.
	Stopped error
	// Err is why the command could not run or its end is unknown: a failed
	// start or transfer, an unreachable host, a lost connection.
	Err error
	// Lost says that Err means the host is gone (unreachable, connection
	// lost), not that the command failed: the run is Lost and may run
	// elsewhere.
	Lost bool
	// Stderr, Host and Command go into the [ExitError].
	Stderr        []byte
	Host, Command string
}

// Rules are an executor's policy for [Classify].
type Rules struct {
	// NonZeroIsResult makes a non-zero exit a result (OK, the code in
	// Output) rather than a failure. A death by signal still fails.
	NonZeroIsResult bool
	// StatusAfterStop makes the status of a command that exits by itself
	// after it was asked to stop its result, as a Go function that returns
	// its best result when cancelled ends Finished: a program handling
	// SIGINT. Without it a stopped command is Killed however it ended, so
	// that it is not mistaken for one that ran to its end.
	StatusAfterStop bool
}

// Classify fills res's Outcome, Err and Output from how the command ended:
//
//   - stopped by the executor: Killed, with an error wrapping the cause
//     (but see [Rules.StatusAfterStop]);
//   - Err with Lost: Lost, with Err; Err alone: Failed, with Err;
//   - ended by a signal: Failed, with an [*ExitError];
//   - exited non-zero: Failed with an *ExitError, or OK under
//     [Rules.NonZeroIsResult];
//   - exited 0: OK.
//
// A command that was seen to end has its exit code (-1 for a signal) in
// Output, encoded by [wire.AppendExitCode].
func Classify(res *sched.Result, e End, rules Rules) {
	res.Err = nil
	code := e.Code
	if e.Signal != 0 {
		code = -1
	}
	if e.Exited {
		res.Output = wire.AppendExitCode(nil, code)
	}
	stoppedAndEnded := e.Stopped != nil && (!e.Exited || e.Signal != 0 || !rules.StatusAfterStop)
	switch {
	case stoppedAndEnded:
		res.Outcome, res.Err = sched.Killed, stoppedError(e)
	case e.Err != nil && e.Lost:
		res.Outcome, res.Err = sched.Lost, e.Err
	case e.Err != nil || !e.Exited:
		res.Outcome, res.Err = sched.Failed, e.Err
		if res.Err == nil {
			res.Err = errors.New("drove: command ended without a status")
		}
	case e.Signal != 0 || (code != 0 && !rules.NonZeroIsResult):
		res.Outcome = sched.Failed
		res.Err = &ExitError{Code: code, Signal: e.Signal, Stderr: Tail(e.Stderr, StderrTail), Host: e.Host, Command: e.Command}
	default:
		res.Outcome = sched.OK
	}
}

// stoppedError is the error of a command the executor stopped: it wraps
// the cause (errors.Is finds sched.ErrTimeout, context.DeadlineExceeded…).
func stoppedError(e End) error {
	cause := e.Stopped
	if cause == nil {
		cause = context.Canceled
	}
	if e.Host != "" || e.Command != "" {
		return fmt.Errorf("remote: %s: %q killed: %w", e.Host, e.Command, cause)
	}
	return fmt.Errorf("drove: stopped: %w", cause)
}
