package drove

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

// Status is where a job is in its life. The values are dispy's.
type Status int

// Job statuses. A job is Created when submitted, Running once on a node,
// ProvisionalResult after it sent an intermediate result, and ends in
// exactly one of the final statuses: Cancelled, Terminated (an error, panic,
// crash or timeout), Abandoned (its node was lost and it could not run
// again) or Finished.
const (
	Created           = Status(sched.Created)
	Running           = Status(sched.Running)
	ProvisionalResult = Status(sched.ProvisionalResult)
	Cancelled         = Status(sched.Cancelled)
	Terminated        = Status(sched.Terminated)
	Abandoned         = Status(sched.Abandoned)
	Finished          = Status(sched.Finished)
)

// Final reports whether s is a final status.
func (s Status) Final() bool { return s >= Cancelled }

// String returns the status's name, as dispy spells it.
func (s Status) String() string {
	switch s {
	case Created:
		return "Created"
	case Running:
		return "Running"
	case ProvisionalResult:
		return "ProvisionalResult"
	case Cancelled:
		return "Cancelled"
	case Terminated:
		return "Terminated"
	case Abandoned:
		return "Abandoned"
	case Finished:
		return "Finished"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Job is a submitted job. Its methods are safe for concurrent use.
type Job[Out any] struct {
	t      sched.Task
	decode func([]byte) (Out, error)

	once sync.Once
	out  Out
	err  error
}

// ID returns the job's ID: 1, 2, 3… in submit order unless set with JobID.
func (j *Job[Out]) ID() int64 { return j.t.ID }

// Status returns the job's current status.
func (j *Job[Out]) Status() Status { return Status(j.t.State()) }

// Done is closed when the job reaches a final status.
func (j *Job[Out]) Done() <-chan struct{} { return j.t.Done() }

// Result waits for the job to end and returns its result. A Finished job
// returns its output and a nil error; any other final status returns the
// job's error (ErrCancelled, ErrTimeout, ErrNodeLost, a *PanicError, an
// *ExitError, or the function's own error). If ctx ends first, Result
// returns ctx's error and the job goes on.
func (j *Job[Out]) Result(ctx context.Context) (Out, error) {
	if err := j.t.Wait(ctx); err != nil {
		var zero Out
		return zero, err
	}
	j.once.Do(j.settle)
	return j.out, j.err
}

func (j *Job[Out]) settle() {
	res := j.t.Result()
	j.err = res.Err
	if j.t.State() != sched.Finished {
		if j.err == nil {
			j.err = fmt.Errorf("drove: job %d ended %s", j.t.ID, Status(j.t.State()))
		}
		return
	}
	out, err := j.decode(res.Output)
	if err != nil {
		j.err = fmt.Errorf("drove: decoding the result of job %d: %w", j.t.ID, err)
		return
	}
	j.out = out
}

func (j *Job[Out]) final() *sched.Result {
	select {
	case <-j.t.Done():
		return j.t.Result()
	default:
		return nil
	}
}

// StartTime returns when the job started running on its node, or the zero
// time if it has not.
func (j *Job[Out]) StartTime() time.Time {
	if r := j.final(); r != nil && !r.Start.IsZero() {
		return r.Start
	}
	return j.t.StartTime()
}

// EndTime returns when the job ended, or the zero time if it has not.
func (j *Job[Out]) EndTime() time.Time {
	if r := j.final(); r != nil {
		return r.End
	}
	return time.Time{}
}

// Node returns the name of the node the job runs or ran on, or "".
func (j *Job[Out]) Node() string { return j.t.NodeName() }

// Stdout returns what the job wrote to its standard output; nil until the
// job has ended.
func (j *Job[Out]) Stdout() []byte {
	if r := j.final(); r != nil {
		return r.Stdout
	}
	return nil
}

// Stderr returns what the job wrote to its standard error; nil until the
// job has ended.
func (j *Job[Out]) Stderr() []byte {
	if r := j.final(); r != nil {
		return r.Stderr
	}
	return nil
}

// JobEvent is a job's status change, given to the OnJobStatus callback.
type JobEvent[Out any] struct {
	Job    *Job[Out]
	Status Status
	// Result is the provisional result for ProvisionalResult, the result for
	// Finished, and the zero value otherwise.
	Result Out
	// Err is the job's error for final statuses other than Finished.
	Err  error
	Node string
}

// NodeStatus says what happened to a node.
type NodeStatus int

// Node statuses, with dispy's values where dispy has them.
const (
	NodeInitialized NodeStatus = 4  // joined and ready for jobs
	NodeClosed      NodeStatus = 16 // closed on request
	NodeLost        NodeStatus = 18 // failed; its jobs were rescheduled or abandoned
)

// String returns the node status's name.
func (s NodeStatus) String() string {
	switch s {
	case NodeInitialized:
		return "Initialized"
	case NodeClosed:
		return "Closed"
	case NodeLost:
		return "Lost"
	}
	return fmt.Sprintf("NodeStatus(%d)", int(s))
}

// NodeEvent is a node's status change, given to the OnNodeStatus callback.
type NodeEvent struct {
	Node   string
	Status NodeStatus
	CPUs   int
	Err    error // why a node was lost
}
