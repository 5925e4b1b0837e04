// Package joberr holds the error types a Go function's job can end with,
// shared by the executors that produce them and the public API that
// re-exports them. How a process ended is [proc.ExitError].
package joberr

// PanicError is the error of a job whose function panicked.
type PanicError struct {
	Value string // the panic value, formatted
	Stack string // the goroutine stack at the panic
}

// Error implements error.
func (e *PanicError) Error() string { return "drove: job panicked: " + e.Value }

// RemoteError is an error a function returned in another process. Only its
// text crosses the process boundary, so errors.Is against the function's own
// sentinel values does not match it.
type RemoteError struct {
	Msg string
}

// Error returns the function's error text.
func (e *RemoteError) Error() string { return e.Msg }
