package nodeexec

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/sched"
)

// Prefetch implements sched.Prefetcher: Config.Prefetch if set, else as
// many jobs per slot as run in aheadTime (at least 2, at most 128), plus
// 16. A node's slot frees in the time a job runs, and its next job comes
// from the client a round trip later: short jobs need a deep queue at the
// node, or its workers wait for the network (with 2 per slot, a node of 2
// slots ran 9,000 no-op jobs/s on a loaded 2-vCPU VM, 13,000–19,000 with
// 32). Deeper still, the batches each way grow (about 30 jobs per Submit
// and 16 events per Results message at 32 per slot, 45–50 and 26–34 at
// 128), which took the CPU of a no-op job (client, node and workers)
// down by a fifth. Long jobs keep it shallow, so a node never holds more
// than aheadTime of work per slot that another node, going idle, could
// have run. Until the first result the depth is the shallow one.
func (e *Executor) Prefetch() int {
	if e.cfg.Prefetch > 0 {
		return e.cfg.Prefetch
	}
	per := minAheadPerSlot
	if avg := e.avgRun.Load(); avg > 0 {
		per = int(min(max(int64(aheadTime)/avg, minAheadPerSlot), maxAheadPerSlot))
	}
	return per*e.slots + 16
}

const (
	aheadTime       = 5 * time.Millisecond
	minAheadPerSlot = 2
	maxAheadPerSlot = 128
)

// noteRun keeps avgRun, a running average of the jobs' run times on the
// node (its own clock at both ends). Lost updates between concurrent
// results only blur an estimate.
func (e *Executor) noteRun(start, end int64) {
	if start <= 0 || end < start {
		return
	}
	d := max(end-start, 1)
	avg := e.avgRun.Load()
	if avg == 0 {
		e.avgRun.Store(d)
		return
	}
	e.avgRun.Store(avg + (d-avg)/8)
}

// Start implements sched.Executor. A run it cannot take (the executor is
// closed or its node down, or the run was cancelled already) is reported
// before Start returns, which the scheduler allows, so no goroutine
// outlives the call.
func (e *Executor) Start(r *sched.Run) {
	e.mu.Lock()
	if e.closed || e.down {
		e.mu.Unlock()
		e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s", ErrClosed, e.cfg.Addr)})
		return
	}
	if r.Cause() != nil {
		e.mu.Unlock()
		e.rep.Done(r, sched.Result{Outcome: sched.Killed})
		return
	}
	e.nextID++
	id := e.nextID
	e.runs[id] = &run{r: r, sent: int64(len(r.Task.Input))}
	e.byRun[r] = id
	e.pending = append(e.pending, &drovev1.Job{RunId: id, Input: r.Task.Input, JobId: r.Task.ID})
	e.mu.Unlock()
	e.poke()
}

func (e *Executor) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Cancel implements sched.Executor.
func (e *Executor) Cancel(r *sched.Run) { e.stop(r, false) }

// Recall implements sched.Prefetcher.
func (e *Executor) Recall(r *sched.Run) { e.stop(r, true) }

func (e *Executor) stop(r *sched.Run, recall bool) {
	e.mu.Lock()
	id, ok := e.byRun[r]
	if !ok {
		e.mu.Unlock()
		return
	}
	for i, j := range e.pending {
		if j.RunId == id {
			// Not sent yet: it ends here.
			e.pending = append(e.pending[:i], e.pending[i+1:]...)
			delete(e.runs, id)
			delete(e.byRun, r)
			e.mu.Unlock()
			out := sched.Killed
			if recall {
				out = sched.NotStarted
			}
			e.rep.Done(r, sched.Result{Outcome: out})
			return
		}
	}
	if recall {
		e.recalls = append(e.recalls, id)
		e.mu.Unlock()
		e.poke()
		return
	}
	e.cancels = append(e.cancels, id)
	e.mu.Unlock()
	e.poke()
}

// sender sends queued jobs and cancellations in batches, in order: a
// batch that failed is sent again (the node drops run ids it has seen).
func (e *Executor) sender() {
	defer e.wg.Done()
	const maxJobs = 4096
	// Batches stay well under the node's message limit.
	maxBytes := 16 << 20
	if m := int(e.info.MaxMessage); m > 0 {
		maxBytes = min(maxBytes, m/2)
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.wake:
		}
		for {
			e.mu.Lock()
			var jobs []*drovev1.Job
			var tooBig []*run
			size := 0
			for len(e.pending) > 0 && len(jobs) < maxJobs {
				j := e.pending[0]
				if len(j.Input) > maxBytes {
					// It can never be sent: fail it rather than retry.
					if r := e.runs[j.RunId]; r != nil {
						delete(e.runs, j.RunId)
						delete(e.byRun, r.r)
						tooBig = append(tooBig, r)
					}
					e.pending = e.pending[1:]
					continue
				}
				if len(jobs) > 0 && size+len(j.Input) > maxBytes {
					break
				}
				size += len(j.Input)
				jobs = append(jobs, j)
				e.pending = e.pending[1:]
			}
			if len(e.pending) == 0 {
				e.pending = nil
			}
			cancels, recalls := e.cancels, e.recalls
			e.cancels, e.recalls = nil, nil
			e.mu.Unlock()
			for _, r := range tooBig {
				e.rep.Done(r.r, sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("%w: input of %d bytes over the limit of %d for node %s", ErrTooLarge, len(r.r.Task.Input), maxBytes, e.Name())})
			}
			if len(jobs) == 0 && len(cancels) == 0 && len(recalls) == 0 {
				break
			}
			if len(jobs) > 0 && e.cfg.OnSubmit != nil {
				e.cfg.OnSubmit(e.compID, jobs)
			}
			if len(jobs) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Submit(ctx, connect.NewRequest(&drovev1.SubmitRequest{ComputationId: e.compID, Jobs: jobs}))
				return err
			}) {
				return
			}
			if len(cancels) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Cancel(ctx, connect.NewRequest(&drovev1.CancelRequest{ComputationId: e.compID, RunIds: cancels}))
				return err
			}) {
				return
			}
			if len(recalls) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Cancel(ctx, connect.NewRequest(&drovev1.CancelRequest{ComputationId: e.compID, RunIds: recalls, Recall: true}))
				return err
			}) {
				return
			}
		}
	}
}

// nodeDown reports the node failed, once, and stops talking to it. The
// scheduler ends or requeues its runs; late reports about them are dropped.
func (e *Executor) nodeDown(err error) {
	err = &ConnError{Addr: e.cfg.Addr, Err: err}
	e.downOnce.Do(func() {
		e.mu.Lock()
		e.down = true
		e.downErr = err
		closed := e.closed
		e.runs = map[uint64]*run{}
		e.byRun = map[*sched.Run]uint64{}
		e.pending = nil
		e.cancels = nil
		e.recalls = nil
		e.mu.Unlock()
		e.cancel()
		close(e.downCh)
		if !closed {
			e.log.Warn("node down", "node", e.Name(), "addr", e.cfg.Addr, "err", err)
			e.rep.NodeDown(e.Name(), err)
		}
	})
}

// Close implements sched.Executor: it closes the computation on the node
// (stopping jobs still running there) and reports the runs left as Lost.
func (e *Executor) Close(ctx context.Context) error {
	left, down, ok := e.closeRuns()
	if !ok {
		return nil
	}
	var err error
	if !down {
		_, err = e.api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: e.compID, Terminate: len(left) > 0}))
		if err != nil && e.cfg.Lost != nil {
			// A node whose channel ended (the same event may have failed
			// the request) took the computation with it: nothing is left
			// to close.
			select {
			case <-e.cfg.Lost:
				err = nil
			case <-time.After(time.Second):
			}
		}
		if err != nil {
			err = &ConnError{Addr: e.cfg.Addr, Err: err}
		}
	}
	e.stopAndLose(left, "")
	if e.cfg.Closer != nil {
		_ = e.cfg.Closer.Close()
	}
	return err
}

// Detach stops talking to the node and leaves the computation there as it
// is, its jobs running, for a later Reclaim by the same client id; the
// runs the executor had are reported Lost here. A scheduler that stops
// with its state (drove scheduler --state) detaches.
func (e *Executor) Detach() {
	left, _, ok := e.closeRuns()
	if !ok {
		return
	}
	e.stopAndLose(left, " (detached)")
}

// closeRuns marks the executor closed and takes the runs it holds; ok is
// false if it was closed already. down reports a node already down.
func (e *Executor) closeRuns() (left []*sched.Run, down, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, false, false
	}
	e.closed = true
	left = make([]*sched.Run, 0, len(e.runs))
	for _, r := range e.runs {
		left = append(left, r.r)
	}
	e.runs = map[uint64]*run{}
	e.byRun = map[*sched.Run]uint64{}
	return left, e.down, true
}

// stopAndLose stops the executor's goroutines and reports the runs left
// Lost (why, if not empty, is added to the error).
func (e *Executor) stopAndLose(left []*sched.Run, why string) {
	e.cancel()
	e.wg.Wait()
	for _, r := range left {
		e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s%s", ErrClosed, e.cfg.Addr, why)})
	}
	e.hc.CloseIdleConnections()
	e.bulk.CloseIdleConnections()
}

// CloseStale closes a computation the client left on a node (one reported
// down that may be alive after all), stopping its jobs. A node that no
// longer has it (it restarted, or closed it already) counts as success; on
// another error the caller may try again later, or leave it to the node's
// zombie reaper.
func (e *Executor) CloseStale(ctx context.Context) error {
	_, err := e.api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: e.compID, Terminate: true}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return &ConnError{Addr: e.cfg.Addr, Err: err}
	}
	return nil
}
