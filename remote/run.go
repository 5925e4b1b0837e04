package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Cmd is a command for [Host.Run].
type Cmd struct {
	// Command is a shell command line run by the remote /bin/sh -c. Use
	// Args instead for a program and arguments that must not be interpreted.
	Command string
	// Args, if set, is a program and its arguments, each passed literally
	// (quoted for the remote shell); Command is then ignored.
	Args []string
	// Env holds "NAME=value" pairs added to the command's environment.
	Env []string
	// Dir is the working directory; relative paths resolve against the
	// Host's. Empty means the Host's working directory ([Host.Getwd]).
	Dir string
	// Stdin is sent to the command, followed by EOF. Nil means no input:
	// the command reads /dev/null.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output as it arrives. When
	// nil, the output is collected in [Result].
	Stdout, Stderr io.Writer
	// Timeout, if positive, kills the command's whole remote process group
	// (SIGINT, SIGTERM, then SIGKILL, the Host's kill grace apart) when it
	// expires.
	// Cancelling ctx does the same.
	Timeout time.Duration
}

// Command returns a Cmd running name with args, each passed literally.
func Command(name string, args ...string) *Cmd {
	return &Cmd{Args: append([]string{name}, args...)}
}

// Result describes a finished command.
type Result struct {
	ExitCode int            // the exit code; -1 if killed by a signal
	Signal   syscall.Signal // the signal that ended it, if the server said; see [Result.SignalName]
	Killed   bool           // true if Run killed it (timeout or ctx)
	Stdout   []byte         // output collected when Cmd.Stdout was nil
	Stderr   []byte         // output collected when Cmd.Stderr was nil
	Duration time.Duration  // wall time of the command
}

// SignalName returns the name of the signal that ended the command without
// its "SIG" prefix ("TERM"), as SSH reports it, or "" if none did.
func (r *Result) SignalName() string { return proc.SignalName(r.Signal) }

// ExitError is returned by [Host.Run] for a command that exited with a
// non-zero status or was killed by a signal. It has the Host, the Command,
// the Code (-1 if killed by a signal), the Signal (a [syscall.Signal]; its
// name as SSH reports it, "TERM", is [ExitError.SignalName]) and the tail of
// the Stderr Run collected. Its Error names the host, the command, its
// status and the tail of its stderr.
//
// It is the same type as drove.ExitError: one type for how any process,
// local or remote, ended.
type ExitError = proc.ExitError

// Run runs c on the host and waits for it. Every command runs in a new
// process group on its own SSH session, so many may run at once.
//
// The Result is returned whenever the command ran. A non-zero exit is
// reported as an *ExitError; a timeout or cancelled ctx as an error wrapping
// context.DeadlineExceeded or the ctx's cause, after the remote process group
// was killed; a lost connection as a *ConnError.
func (h *Host) Run(ctx context.Context, c *Cmd) (*Result, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.Timeout, timeoutError{c.Timeout})
		defer cancel()
	}
	command := c.Command
	if len(c.Args) > 0 {
		command = quoteArgs(c.Args)
	}
	dir := h.Getwd()
	if c.Dir != "" {
		dir = h.Abs(c.Dir)
	}
	res := &Result{}
	var outBuf, errBuf bytes.Buffer
	sc := &sshconn.Cmd{Command: command, Dir: dir, Env: c.Env, Stdin: c.Stdin,
		Stdout: c.Stdout, Stderr: c.Stderr, KillGrace: h.killGrace}
	if sc.Stdout == nil {
		sc.Stdout = &outBuf
	}
	if sc.Stderr == nil {
		sc.Stderr = &errBuf
	}
	start := time.Now()
	st, err := h.pool.Run(ctx, h.target, sc)
	res.Duration = time.Since(start)
	res.ExitCode, res.Signal, res.Killed = st.Code, st.Signal, st.Killed
	if c.Stdout == nil {
		res.Stdout = outBuf.Bytes()
	}
	if c.Stderr == nil {
		res.Stderr = errBuf.Bytes()
	}
	end := st.End(ctx, err)
	end.Host, end.Command, end.Stderr = h.target, command, res.Stderr
	var out sched.Result
	proc.Classify(&out, end, proc.Rules{})
	var xe *ExitError
	switch {
	case out.Outcome == sched.OK:
		return res, nil
	case out.Outcome == sched.Killed || errors.As(out.Err, &xe):
		return res, out.Err
	default:
		return nil, out.Err // *ConnError, or a bad Cmd (NUL byte, bad Env name)
	}
}

// timeoutError is why a command was killed at its Cmd.Timeout: it says
// after how long, and matches context.DeadlineExceeded.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return fmt.Sprintf("timed out after %v", e.d) }

func (e timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Output runs name with args (each passed literally) and returns its
// standard output, like exec.Cmd.Output.
func (h *Host) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	res, err := h.Run(ctx, Command(name, args...))
	if res == nil {
		return nil, err
	}
	return res.Stdout, err
}
