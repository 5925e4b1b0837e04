package process

import (
	"context"
	"errors"
	"sync"

	"github.com/drove-dev/drove/internal/sched"
)

// Runner is the part of an executor that runs each job in a goroutine of
// its own by calling Execute, as http.HandlerFunc adapts a function: it
// keeps each running job's cancel function and slot number ({%}), and
// gives the executors that embed it (this package's and sshexec's) the
// same Start, Cancel and Stop. Set Execute, Report and Closed before the
// first Start.
type Runner struct {
	// Execute runs one job in slot (1 … the number running at once); ctx
	// ends, with the cause, when the run is cancelled or the executor
	// closed.
	Execute func(ctx context.Context, r *sched.Run, slot int) sched.Result
	// Report hands a result on (to the scheduler, and for SSH hosts also
	// reports a lost node).
	Report func(r *sched.Run, res sched.Result)
	// Closed is the error of runs started after Stop, and the cause of the
	// stop of those running then.
	Closed error

	mu     sync.Mutex
	runs   map[*sched.Run]context.CancelCauseFunc
	slots  slotSet
	closed bool
	wg     sync.WaitGroup
}

// Start begins r in its own goroutine. After Stop, r is reported Lost
// before Start returns (the scheduler allows reports from inside Start), so
// no goroutine outlives the executor.
func (x *Runner) Start(r *sched.Run) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		x.Report(r, sched.Result{Outcome: sched.Lost, Err: x.Closed})
		return
	}
	if x.runs == nil {
		x.runs = map[*sched.Run]context.CancelCauseFunc{}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	x.runs[r] = cancel
	slot := x.slots.take()
	x.wg.Add(1)
	x.mu.Unlock()
	if c := r.Cause(); c != nil {
		cancel(c)
	}
	go x.run(ctx, r, slot)
}

// Cancel stops r: its context ends with r's cause.
func (x *Runner) Cancel(r *sched.Run) {
	x.mu.Lock()
	cancel := x.runs[r]
	x.mu.Unlock()
	if cancel != nil {
		cause := r.Cause()
		if cause == nil {
			cause = sched.ErrCancelled
		}
		cancel(cause)
	}
}

// Stop stops every run and waits for them, or for ctx; a run stopped so
// is reported Lost.
func (x *Runner) Stop(ctx context.Context) error {
	x.mu.Lock()
	x.closed = true
	for _, cancel := range x.runs {
		cancel(x.Closed)
	}
	x.mu.Unlock()
	done := make(chan struct{})
	go func() { x.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait waits for the runs to end.
func (x *Runner) Wait() { x.wg.Wait() }

func (x *Runner) run(ctx context.Context, r *sched.Run, slot int) {
	defer x.wg.Done()
	res := x.Execute(ctx, r, slot)
	x.mu.Lock()
	cancel := x.runs[r]
	delete(x.runs, r)
	x.slots.put(slot)
	x.mu.Unlock()
	cause := context.Cause(ctx)
	cancel(nil)
	// Stopped by Close, not by the scheduler: the command was lost, not
	// cancelled.
	if res.Outcome == sched.Killed && errors.Is(cause, x.Closed) && r.Cause() == nil {
		res.Outcome = sched.Lost
	}
	x.Report(r, res)
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
