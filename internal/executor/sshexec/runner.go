package sshexec

import (
	"context"
	"errors"
	"sync"

	"github.com/drove-dev/drove/internal/sched"
)

// runner is what Local and Executor share: it keeps each running command's
// cancel function and slot number ({%}), and gives both executors the same
// Start, Cancel and stop. execute runs one command; report hands its result
// on (to the scheduler, and for SSH hosts also reports a lost node).
type runner struct {
	execute func(ctx context.Context, r *sched.Run, slot int) sched.Result
	report  func(r *sched.Run, res sched.Result)

	mu     sync.Mutex
	runs   map[*sched.Run]context.CancelCauseFunc
	slots  slotSet
	closed bool
	wg     sync.WaitGroup
}

// Start begins r in its own goroutine. After stop, r is reported Lost
// before Start returns (the scheduler allows reports from inside Start), so
// no goroutine outlives the executor.
func (x *runner) Start(r *sched.Run) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		x.report(r, sched.Result{Outcome: sched.Lost, Err: ErrClosed})
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

// Cancel stops r's process group: SIGTERM, then SIGKILL after the grace.
func (x *runner) Cancel(r *sched.Run) {
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

// stop stops every run and waits for them, or for ctx.
func (x *runner) stop(ctx context.Context) error {
	x.mu.Lock()
	x.closed = true
	for _, cancel := range x.runs {
		cancel(ErrClosed)
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

func (x *runner) run(ctx context.Context, r *sched.Run, slot int) {
	defer x.wg.Done()
	res := x.execute(ctx, r, slot)
	x.mu.Lock()
	cancel := x.runs[r]
	delete(x.runs, r)
	x.slots.put(slot)
	x.mu.Unlock()
	cause := context.Cause(ctx)
	cancel(nil)
	// Stopped by Close, not by the scheduler: the command was lost, not
	// cancelled.
	if res.Outcome == sched.Killed && errors.Is(cause, ErrClosed) && r.Cause() == nil {
		res.Outcome = sched.Lost
	}
	x.report(r, res)
}
