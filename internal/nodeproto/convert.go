// Package nodeproto converts between the scheduler's types and the
// messages of proto/drove/v1, and encodes the node's event spool: the parts
// of the node protocol that both the node daemon and the client-side
// executor need.
package nodeproto

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
)

// ResultProto converts an executor's result for the wire.
func ResultProto(res sched.Result) *drovev1.Result {
	p := &drovev1.Result{
		Output: res.Output,
		Stdout: res.Stdout,
		Stderr: res.Stderr,
	}
	if !res.Start.IsZero() {
		p.StartUnixNano = res.Start.UnixNano()
	}
	if !res.End.IsZero() {
		p.EndUnixNano = res.End.UnixNano()
	}
	switch res.Outcome {
	case sched.OK:
		p.Outcome = drovev1.Outcome_OUTCOME_OK
	case sched.Failed:
		p.Outcome = drovev1.Outcome_OUTCOME_FAILED
	case sched.Killed:
		p.Outcome = drovev1.Outcome_OUTCOME_KILLED
	case sched.NotStarted:
		p.Outcome = drovev1.Outcome_OUTCOME_NOT_STARTED
	default:
		p.Outcome = drovev1.Outcome_OUTCOME_LOST
	}
	p.Error = ErrorProto(res.Err)
	return p
}

// ErrorProto converts a job's error for the wire, keeping the types that
// callers branch on (see packages joberr and proc).
func ErrorProto(err error) *drovev1.JobError {
	if err == nil {
		return nil
	}
	var pe *joberr.PanicError
	var xe *proc.ExitError
	var re *joberr.RemoteError
	switch {
	case errors.As(err, &pe):
		return &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_PANIC, Message: pe.Value, Stack: pe.Stack}
	case errors.As(err, &xe):
		return &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_EXIT, ExitCode: int32(xe.Code), Signal: int32(xe.Signal), Stderr: xe.Stderr, Message: xe.Error()}
	case errors.As(err, &re):
		return &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_REMOTE, Message: re.Msg}
	}
	return &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_OTHER, Message: err.Error()}
}

// NodeError is a job error the node itself produced (it could not start
// the job, say), not the job's own code.
type NodeError struct{ Msg string }

func (e *NodeError) Error() string { return e.Msg }

// ErrorFromProto is the inverse of ErrorProto, for the client.
func ErrorFromProto(p *drovev1.JobError) error {
	if p == nil || p.Kind == drovev1.ErrorKind_ERROR_KIND_UNSPECIFIED {
		return nil
	}
	switch p.Kind {
	case drovev1.ErrorKind_ERROR_KIND_PANIC:
		return &joberr.PanicError{Value: p.Message, Stack: p.Stack}
	case drovev1.ErrorKind_ERROR_KIND_EXIT:
		return &proc.ExitError{Code: int(p.ExitCode), Signal: syscall.Signal(p.Signal), Stderr: p.Stderr}
	case drovev1.ErrorKind_ERROR_KIND_REMOTE:
		return &joberr.RemoteError{Msg: p.Message}
	}
	return &NodeError{Msg: p.Message}
}

// ResultFromProto converts a result from the wire for the scheduler.
func ResultFromProto(p *drovev1.Result) sched.Result {
	if p == nil {
		return sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: the node sent an empty result", sched.ErrNodeLost)}
	}
	res := sched.Result{Output: p.Output, Stdout: p.Stdout, Stderr: p.Stderr, Err: ErrorFromProto(p.Error)}
	if p.StartUnixNano != 0 {
		res.Start = time.Unix(0, p.StartUnixNano)
	}
	if p.EndUnixNano != 0 {
		res.End = time.Unix(0, p.EndUnixNano)
	}
	switch p.Outcome {
	case drovev1.Outcome_OUTCOME_OK:
		res.Outcome = sched.OK
	case drovev1.Outcome_OUTCOME_FAILED:
		res.Outcome = sched.Failed
	case drovev1.Outcome_OUTCOME_KILLED:
		res.Outcome = sched.Killed
	case drovev1.Outcome_OUTCOME_NOT_STARTED:
		res.Outcome = sched.NotStarted
	default:
		res.Outcome = sched.Lost
		if res.Err == nil {
			res.Err = fmt.Errorf("%w: the node reported the job lost", sched.ErrNodeLost)
		}
	}
	return res
}
