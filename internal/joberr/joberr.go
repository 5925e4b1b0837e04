// Package joberr holds the error types a job can end with, shared by the
// executors that produce them and the public API that re-exports them.
package joberr

import (
	"fmt"
	"syscall"
)

// PanicError is the error of a job whose function panicked.
type PanicError struct {
	Value string // the panic value, formatted
	Stack string // the goroutine stack at the panic
}

// Error implements error.
func (e *PanicError) Error() string { return "drove: job panicked: " + e.Value }

// ExitError is the error of a job whose process ended abnormally: a worker
// that exited (os.Exit, a crash) while running it, or a program killed by a
// signal.
type ExitError struct {
	Code   int            // exit status, or -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
	Stderr []byte         // the last of what it wrote to stderr
}

// Error says how the process ended.
func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("drove: process killed by signal %d (%v)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("drove: process exited with status %d", e.Code)
}

// RemoteError is an error a function returned in another process. Only its
// text crosses the process boundary, so errors.Is against the function's own
// sentinel values does not match it.
type RemoteError struct {
	Msg string
}

// Error returns the function's error text.
func (e *RemoteError) Error() string { return e.Msg }
