package sched

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// State is where a task is in its life. The values match dispy's job status
// constants, and the public drove.Status mirrors them.
type State uint32

// Task states. Created and Running are not final; every task ends in exactly
// one of Cancelled, Terminated, Abandoned or Finished.
const (
	Created           State = 5
	Running           State = 6
	ProvisionalResult State = 7
	Cancelled         State = 8
	Terminated        State = 9
	Abandoned         State = 10
	Finished          State = 11
)

// Final reports whether s is a final state.
func (s State) Final() bool { return s >= Cancelled }

// Errors a task can end with, set by the scheduler itself.
var (
	// ErrCancelled is the error of a task ended by Cancel.
	ErrCancelled = errors.New("drove: job cancelled")
	// ErrTimeout is the error of a task stopped because it ran past its timeout.
	ErrTimeout = errors.New("drove: job timed out")
	// ErrNodeLost is the error of a task whose node failed while it ran.
	ErrNodeLost = errors.New("drove: node lost")
	// ErrClosed is returned by Submit after Close.
	ErrClosed = errors.New("drove: cluster closed")
	// ErrNoNode is returned by Submit for a task pinned to an unknown node.
	ErrNoNode = errors.New("drove: no such node")
)

// Task is one job as the scheduler sees it. The front end fills the exported
// fields before Submit and must not change them afterwards; the rest belongs
// to the scheduler. All methods are safe for concurrent use.
type Task struct {
	ID       int64         // the user-visible job id
	Priority int           // higher runs first; equal priorities run in submit order
	Timeout  time.Duration // 0: none
	Retries  int           // extra attempts after a failure or a lost node
	Node     string        // run only on this node; "" for any
	Input    []byte        // encoded input, opaque to the scheduler
	Ref      any           // the front end's own value, handed back in events
	Tenant   *Tenant       // the computation it belongs to; nil for the default tenant

	state    atomic.Uint32
	start    atomic.Int64 // Unix nanoseconds of the latest dispatch
	nodeName atomic.Pointer[string]
	done     chan struct{}

	// Guarded by the scheduler's lock.
	ten      *Tenant
	seq      uint64
	index    int // in its heap; -1 when not queued
	attempts int
	lost     int // runs whose node was lost
	run      *Run
	lastNode string
	queued   int64 // Unix nanoseconds when last queued; set only with a Config.Observer

	// res is written once, before done is closed. A pointer, so a queued
	// task does not carry an empty result: a million queued tasks must fit
	// in little memory.
	res *Result
}

// State returns the task's current state.
func (t *Task) State() State { return State(t.state.Load()) }

// Done is closed when the task reaches a final state.
func (t *Task) Done() <-chan struct{} { return t.done }

// Result returns how the task ended. It is only valid after Done is closed.
func (t *Task) Result() *Result { return t.res }

// StartTime is when the task last started running, or zero.
func (t *Task) StartTime() time.Time {
	if ns := t.start.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// NodeName is the node the task last ran on, or "".
func (t *Task) NodeName() string {
	if p := t.nodeName.Load(); p != nil {
		return *p
	}
	return ""
}

// Wait blocks until the task is final or ctx is done.
func (t *Task) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run is one attempt at running a task on a node. Executors receive it in
// Start and hand it back in Done, so a late report about an attempt the
// scheduler has already given up on is recognised and dropped.
type Run struct {
	Task    *Task
	Node    string
	Attempt int // 0 for the first

	ex       Executor
	node     *node
	charged  int64 // slot-time charged to its tenant at dispatch (see Fair)
	cause    atomic.Pointer[error]
	machine  atomic.Pointer[string] // see SetMachine
	on       *machine               // counted busy there; guarded by the scheduler's lock
	capped   bool                   // counted in its tenant's runs on the node (Tenant.onNode); likewise
	timer    *time.Timer
	over     bool // guarded by the scheduler's lock
	started  bool // likewise
	recalled bool // likewise
	handed   bool // likewise: given to the executor's Start
}

// Cause returns why the run is being stopped (ErrCancelled or ErrTimeout),
// or nil while nobody asked it to stop. Executors check it after registering
// a run in Start, since Cancel may come before Start.
func (r *Run) Cause() error {
	if p := r.cause.Load(); p != nil {
		return *p
	}
	return nil
}

// SetMachine tells where the run went, for an executor whose node is a
// front for other machines (a drove scheduler, which places each run on
// one of its nodes): call it before reporting the run Started or Done.
// The task's node name (Task.NodeName), the task events, NodeTasks and
// the stats then name the machine instead of the node (see
// Scheduler.SetMachines).
func (r *Run) SetMachine(name string) {
	if name != "" {
		r.machine.Store(&name)
	}
}

// machineName returns what SetMachine set, or "".
func (r *Run) machineName() string {
	if p := r.machine.Load(); p != nil {
		return *p
	}
	return ""
}

// Outcome is how an attempt ended, as the executor saw it.
type Outcome uint8

// Outcomes.
const (
	// OK: the job ran to completion and produced Output.
	OK Outcome = iota
	// Failed: the job returned an error, panicked, or its process died.
	Failed
	// Killed: the executor stopped the job after Cancel.
	Killed
	// Lost: the node failed or went away; the job may not have completed.
	Lost
	// NotStarted: a run queued ahead (see Prefetcher) is given back without
	// having started, and is queued again as it was.
	NotStarted
)

// Result is what an executor reports at the end of a run, and what a task
// keeps once final.
type Result struct {
	Outcome  Outcome
	Output   []byte // encoded output
	Err      error  // the job's error, if any
	Stdout   []byte
	Stderr   []byte
	Start    time.Time // when the job started and ended on the node
	End      time.Time
	Sent     int64 // bytes sent to the node for this run
	Received int64 // bytes received from it
}
