package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drove-dev/drove/internal/filesink"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// Computation is one client's computation on the daemon: a tenant of the
// daemon's scheduler, with the executors its Machines give it, and the
// events for the client. Machines see it through its exported methods.
type Computation struct {
	n        *Node
	id       string
	clientID string
	dir      string
	slots    int
	hb       time.Duration
	req      *drovev1.SetupRequest
	ten      *sched.Tenant // set by Machines.Open
	files    *filesink.Dir
	root     *os.Root // of out/, for the file forwarder
	out      *outbox
	done     chan struct{} // closed by close
	once     sync.Once
	// fileAcks: the client answers each File event with FileDone, and a
	// job's SendFile waits for that answer (fileWait, by event sequence
	// number). closing ends the waits when the computation closes.
	fileAcks bool
	closing  chan struct{}
	fileMu   sync.Mutex
	fileWait map[uint64]chan string
	// order serialises submit, cancel and close, so that a cancel never
	// meets a job registered but not yet given to the scheduler.
	order sync.Mutex
	// closed is set by close, with closeWhy before it.
	closed   atomic.Bool
	closeWhy string

	// st keeps the computation for a daemon started again on it
	// (Config.State; durable.go), nil without one. frozen ends the
	// writes: the computation is forgotten, or kept as it was while the
	// daemon stops. savedAck is the highest acknowledgement kept.
	st       *state.DB
	frozen   atomic.Bool
	savedAck atomic.Uint64

	mu       sync.Mutex
	jobs     map[uint64]*job // submitted, result not yet pushed
	maxRunID uint64
	drained  chan struct{} // closed once closed and jobs is empty
}

// job is a client's job: a task of the computation's tenant until its
// result is pushed to the client.
type job struct {
	c      *Computation
	runID  uint64
	jobID  int64 // the user's job id, given back in events
	task   *sched.Task
	recall atomic.Bool // the client wants it back if it has not begun
	begun  atomic.Bool // the executor reported it Started
	// res is the executor's report of the run that ended the task, sent
	// to the client as it is (the scheduler's own result wraps its errors).
	res atomic.Pointer[sched.Result]
	// adopted: restored from the state as gone to a machine, and not a
	// task of the scheduler (see Adopter); guarded by c.mu.
	adopted bool
}

func jobOf(r *sched.Run) *job { return r.Task.Ref.(*job) }

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validClientID keeps client ids usable as directory names.
func validClientID(s string) bool {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Done implements local.Reporter and process.Reporter: the executor's
// report goes to the scheduler, which decides what becomes of the task
// (a run given back unstarted is queued again); the final result reaches
// the client through onTask.
func (c *Computation) Done(r *sched.Run, res sched.Result) {
	if c.closed.Load() && res.Outcome != sched.OK {
		// Stopped because the computation closed under it (the node is
		// stopping, or the client went away): that says nothing about
		// the job, which may run again elsewhere.
		res = sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s stopped the job: %s", sched.ErrNodeLost, c.n.cfg.Name, c.closeWhy)}
	}
	if j := jobOf(r); res.Outcome != sched.NotStarted || j.recall.Load() {
		j.res.Store(&res)
	}
	c.n.sched.Done(r, res)
}

// Started implements local.Reporter: a run queued behind a worker began.
func (c *Computation) Started(r *sched.Run, at time.Time) {
	j := jobOf(r)
	j.begun.Store(true)
	c.n.sched.Started(r, at)
	ev := &drovev1.Event{RunId: j.runID, JobId: j.jobID, Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: at.UnixNano()}}
	if c.n.relay != nil {
		ev.Machine = r.Node
	}
	c.out.push(ev)
	// Counted once the event is queued, so that a client that acknowledged
	// every event (drove_node_unacked_events is 0) knows of the start.
	c.n.met.jobsStarted.Inc()
}

// Provisional implements local.Reporter.
func (c *Computation) Provisional(r *sched.Run, output []byte) {
	j := jobOf(r)
	c.out.push(&drovev1.Event{RunId: j.runID, JobId: j.jobID, Kind: &drovev1.Event_Provisional{Provisional: output}})
}

// onTask receives the scheduler's task events: a final one is the job's
// result for the client.
func (n *Node) onTask(ev sched.TaskEvent) {
	n.observe(ev)
	if !ev.State.Final() {
		return
	}
	j := ev.Task.Ref.(*job)
	c := j.c
	var res *drovev1.Result
	raw := j.res.Load()
	switch {
	case raw != nil:
		res = nodeproto.ResultProto(*raw)
		n.met.jobsDone.WithLabelValues(outcomeName(raw.Outcome)).Inc()
	case c.closed.Load():
		// Queued when the computation closed: not run, and may run
		// elsewhere.
		res = nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s stopped the job: %s", sched.ErrNodeLost, n.cfg.Name, c.closeWhy)})
	case ev.State == sched.Cancelled && j.recall.Load():
		res = &drovev1.Result{Outcome: drovev1.Outcome_OUTCOME_NOT_STARTED}
	case ev.State == sched.Cancelled:
		res = &drovev1.Result{
			Outcome: drovev1.Outcome_OUTCOME_KILLED,
			Error:   &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_OTHER, Message: "drove: job cancelled before it started"},
		}
	default:
		res = nodeproto.ResultProto(*ev.Task.Result())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Pushed under the lock that guards jobs, so that a heartbeat's pending
	// count and last sequence number agree (a returning client relies on
	// that).
	machine := ""
	if n.relay != nil {
		machine = ev.Node
	}
	c.pushResultLocked(j, res, machine)
	c.forgetLocked(j)
}

// forgetLocked drops j from the jobs the client waits for.
func (c *Computation) forgetLocked(j *job) {
	delete(c.jobs, j.runID)
	if len(c.jobs) == 0 && c.closed.Load() {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
	}
}

// tenantExec is what the scheduler drives for a computation: its
// executor, with the client's recall, and Started reports for an executor
// that does not make them.
type tenantExec struct {
	c     *Computation
	inner sched.Executor
	// reportsStarted: inner reports Started itself (it queues runs
	// behind its slots).
	reportsStarted bool
}

// Start implements sched.Executor.
func (x *tenantExec) Start(r *sched.Run) {
	x.c.n.met.jobsHanded.Inc()
	if !x.reportsStarted {
		// The process executor starts a run at once and does not report
		// Started; the machine queues ahead, so the scheduler holds the
		// run Created until told.
		x.c.Started(r, time.Now())
	}
	x.inner.Start(r)
}

// Cancel implements sched.Executor. A run the client recalls is only
// given back if it has not begun; one that has goes on.
func (x *tenantExec) Cancel(r *sched.Run) {
	if jobOf(r).recall.Load() {
		x.Recall(r)
		return
	}
	x.inner.Cancel(r)
}

// Recall implements sched.Prefetcher, which the scheduler requires of
// tenant executors on a machine that queues ahead. The local executor
// gives back a run still queued behind a worker. The process executor has
// nothing to give back: its tenant's Slots are its slots, so it never
// holds a run it has not started, and a run the scheduler recalls is
// already running (Start reported it Started), which a recall lets go on.
func (x *tenantExec) Recall(r *sched.Run) {
	if p, ok := x.inner.(sched.Prefetcher); ok {
		p.Recall(r)
	}
}

// Prefetch implements sched.Prefetcher. The scheduler asks the machine's
// executor (machineExec), never a tenant's.
func (x *tenantExec) Prefetch() int { return 0 }

// Close implements sched.Executor.
func (x *tenantExec) Close(ctx context.Context) error { return x.inner.Close(ctx) }

// submit queues jobs. Run ids at or below the highest seen are dropped: a
// client that lost the answer to a Submit sends the batch again.
func (c *Computation) submit(jobs []*drovev1.Job) error {
	c.order.Lock()
	defer c.order.Unlock()
	if c.closed.Load() {
		return errCompClosed
	}
	var add []*job
	c.mu.Lock()
	for _, pj := range jobs {
		if pj.RunId <= c.maxRunID {
			continue
		}
		c.maxRunID = pj.RunId
		// The run id is the task's ID; the user's job id rides along, for
		// events a returning client can match.
		j := &job{c: c, runID: pj.RunId, jobID: pj.JobId}
		j.task = &sched.Task{ID: int64(pj.RunId), Input: pj.Input, Ref: j, Tenant: c.ten}
		c.jobs[pj.RunId] = j
		add = append(add, j)
	}
	c.saveJobsLocked(add)
	c.mu.Unlock()
	for i, j := range add {
		if err := c.n.sched.Submit(context.Background(), j.task); err != nil {
			c.mu.Lock()
			for _, j := range add[i:] {
				c.forgetLocked(j)
			}
			c.mu.Unlock()
			return fmt.Errorf("%w: %w", errCompClosed, err)
		}
	}
	return nil
}

var errCompClosed = errors.New("drove: computation closed")

// cancel stops jobs through the scheduler: queued ones end at once
// (Killed), running ones are stopped by the executor, which reports them.
// With recall, jobs that have not begun are given back (NotStarted) and
// the others go on.
func (c *Computation) cancel(ids []uint64, recall bool) {
	c.order.Lock()
	defer c.order.Unlock()
	var tasks []*sched.Task
	var adopted []uint64
	c.mu.Lock()
	for _, id := range ids {
		j := c.jobs[id]
		if j == nil {
			continue
		}
		if j.adopted {
			// Not the scheduler's: its machine has it (durable.go). A
			// recall leaves it, as one that has begun.
			if !recall {
				adopted = append(adopted, id)
			}
			continue
		}
		if recall {
			if j.begun.Load() || j.task.State() != sched.Created {
				continue
			}
		}
		j.recall.Store(recall)
		tasks = append(tasks, j.task)
	}
	c.mu.Unlock()
	if !recall {
		c.saveCancelled(tasks)
	}
	for _, t := range tasks {
		c.n.sched.Cancel(t)
	}
	if a, ok := c.n.machines.(Adopter); ok && len(adopted) > 0 {
		a.CancelAdopted(c, adopted)
	}
}

// zombie reports whether the client has been away longer than iv.
func (c *Computation) zombie(now time.Time, iv time.Duration) bool {
	return c.out.awaySince(now) > iv
}

// close ends the computation: its jobs are stopped (terminate; otherwise
// queued ones are and running ones waited for within ctx), its workers
// stop, its files are removed.
func (c *Computation) close(ctx context.Context, terminate bool, why string) {
	c.once.Do(func() {
		n := c.n
		// Workers waiting in SendFile for the client must not keep the
		// executor from closing.
		close(c.closing)
		n.mu.Lock()
		delete(n.comps, c.id)
		n.mu.Unlock()
		c.order.Lock()
		c.closeWhy = why
		c.forgetState(why)
		c.closed.Store(true)
		// A daemon that stops with a state keeps the computation for its
		// next start (durable.go): its jobs are left to its machines,
		// which let go of them first, and nothing is stopped.
		kept := c.Kept()
		// Queued jobs first, so none takes the CPU a stopped one frees.
		var stop, running []*sched.Task
		c.mu.Lock()
		for _, j := range c.jobs {
			switch {
			case kept:
			case j.task.State() == sched.Created:
				stop = append(stop, j.task)
			case terminate:
				running = append(running, j.task)
			}
		}
		stop = append(stop, running...)
		if len(c.jobs) == 0 {
			close(c.drained)
		}
		c.mu.Unlock()
		for _, t := range stop {
			n.sched.Cancel(t)
		}
		c.order.Unlock()
		if kept {
			n.machines.Close(ctx, c)
		}
		if c.ten != nil { // nil for a computation restored from disk
			if err := n.sched.CloseTenant(ctx, c.ten); err != nil {
				n.log.Warn("closing computation", "computation", c.id, "err", err)
			}
		}
		// Only now: until its runs have ended they hold CPUs, and another
		// computation queueing ahead meanwhile could run more than the
		// node's CPUs at once.
		if !kept {
			n.machines.Close(ctx, c)
		}
		// The results come from the scheduler's event goroutine: let them
		// reach the outbox before it closes.
		select {
		case <-c.drained:
		case <-ctx.Done():
		}
		n.mu.Lock()
		if n.cfg.Serve > 0 && len(n.clients) >= n.cfg.Serve && len(n.comps) == 0 {
			select {
			case <-n.serveEnd:
			default:
				close(n.serveEnd)
			}
		}
		n.mu.Unlock()
		close(c.done)
		// A node that stops keeps the events its away clients have not
		// had, for the node started next on the directory (restore).
		keep := why == whyNodeStopping && c.out.spooled()
		c.out.close()
		if c.files != nil {
			c.files.Close()
			c.root.Close()
		}
		if keep {
			c.removeAllBut(metaName, spoolName)
		} else if err := os.RemoveAll(c.dir); err != nil {
			n.log.Warn("removing computation directory", "dir", c.dir, "err", err)
		}
		n.met.computations.Dec()
		n.log.Info("computation closed", "computation", c.id, "client", c.clientID, "reason", why)
	})
}

// whyNodeStopping is why the computations of a node that stops close.
const whyNodeStopping = "node stopping"

// removeAllBut removes what c's directory holds but the files keep.
func (c *Computation) removeAllBut(keep ...string) {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		c.n.log.Warn("removing computation directory", "dir", c.dir, "err", err)
		return
	}
	for _, e := range ents {
		if slices.Contains(keep, e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
			c.n.log.Warn("removing computation directory", "dir", c.dir, "err", err)
		}
	}
}

// fileForwarder receives files sent back by jobs into the computation's
// directory (confined, size-limited) and, once complete, turns each into a
// blob and tells the client, which fetches it.
type fileForwarder struct {
	c    *Computation
	dir  string
	root *os.Root
}

// WriteChunk implements local.FileSink.
func (f *fileForwarder) WriteChunk(name string, mode os.FileMode, offset int64, data []byte, last bool) error {
	if err := f.c.files.WriteChunk(name, mode, offset, data, last); err != nil {
		return err
	}
	if !last {
		return nil
	}
	name = filepath.Clean(name)
	rf, err := f.root.Open(name)
	if err != nil {
		return err
	}
	defer rf.Close()
	h := sha256.New()
	size, err := io.Copy(h, rf)
	if err != nil {
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if !f.c.n.blobs.Has(sum) {
		if _, err := rf.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := f.c.n.blobs.Put(sum, rf); err != nil {
			return err
		}
	}
	_ = f.root.Remove(name)
	return f.c.sendFile(&drovev1.Event{Kind: &drovev1.Event_File{File: &drovev1.File{
		Name: name,
		Blob: &drovev1.Blob{Sum: sum, Mode: uint32(mode.Perm()), Size: uint64(size)},
	}}})
}

// sendFile tells the client about a file a job sent back and, if the client
// answers File events, waits for its answer: the job's SendFile returns
// it. A client that is away is waited for (it gets the event when it comes
// back), for as long as the computation is open.
func (c *Computation) sendFile(ev *drovev1.Event) error {
	if !c.fileAcks {
		c.out.push(ev)
		return nil
	}
	done := make(chan string, 1)
	c.fileMu.Lock()
	// Registered under fileMu with the push, so that an answer cannot
	// come before its waiter.
	seq := c.out.push(ev)
	if seq != 0 {
		c.fileWait[seq] = done
	}
	c.fileMu.Unlock()
	if seq == 0 {
		return errCompClosed
	}
	defer func() {
		c.fileMu.Lock()
		delete(c.fileWait, seq)
		c.fileMu.Unlock()
	}()
	select {
	case msg := <-done:
		if msg != "" {
			return errors.New(msg) // the client's words, for the job
		}
		return nil
	case <-c.closing:
		return errCompClosed
	}
}

// fileDone passes the client's answer about the File event seq to the job
// waiting for it; an answer nobody waits for (sent again) is dropped.
func (c *Computation) fileDone(seq uint64, msg string) {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	if done := c.fileWait[seq]; done != nil {
		delete(c.fileWait, seq)
		done <- msg // buffered, one answer per waiter
	}
}

func outcomeName(o sched.Outcome) string {
	switch o {
	case sched.OK:
		return "ok"
	case sched.Failed:
		return "failed"
	case sched.Killed:
		return "killed"
	case sched.Lost:
		return "lost"
	}
	return "other"
}
