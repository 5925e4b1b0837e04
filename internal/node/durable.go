package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// A daemon with Config.State (drove scheduler --state) keeps its
// computations in it: each computation's set-up request when it is set
// up, its jobs (with their inputs) before the answer to the Submit that
// brought them, each job's result event when its result is final, until
// the client acknowledges it. Started on the same state after it was
// killed, it takes its computations up again as open computations (not
// closed, as restore.go does for a plain node): jobs that were queued are
// queued again, results are delivered to the client when it comes back,
// and jobs that had gone to a machine are given to the Machines to get
// back (Adopter), not run again.

// Adopter is implemented by Machines that can get back the outcomes of
// jobs an earlier daemon process on the same state gave to a machine
// (package scheduler: from the node computations they went to). Adopt is
// called once per restored computation, after Open, with its jobs that
// had gone to a machine and the machines' computations kept for it
// (Saved.Nodes); each job must end with FinishAdopted, or be given to the
// scheduler again with Requeue.
//
// CancelAdopted passes the client's cancel of such jobs (run ids) on to
// their machines; each still ends with FinishAdopted.
type Adopter interface {
	Adopt(c *Computation, jobs []state.Job, nodes map[string]string)
	CancelAdopted(c *Computation, runs []uint64)
}

// seqGap is added to the highest sequence number kept for a computation
// when it is restored: events that are not kept (Started, Provisional,
// File) may have taken numbers above it, which the client has seen, and
// every event from now on must be numbered above those (see
// outbox.restore).
const seqGap = 1 << 32

// restoreState takes up the computations kept in Config.State. A
// computation that cannot be taken up is forgotten, with a warning; its
// client finds it gone. Directories of computations that are not kept
// are removed.
func (n *Node) restoreState(ctx context.Context) {
	st := n.cfg.State
	saved, bad, err := st.Load()
	if err != nil {
		n.log.Error("cannot read the scheduler's state: starting without it", "err", err)
		return
	}
	for id, err := range bad {
		n.log.Warn("forgetting a computation whose state cannot be read", "computation", id, "err", err)
		st.DeleteComputation(id)
	}
	keep := map[string]bool{}
	for _, s := range saved {
		if err := n.restoreComp(ctx, s); err != nil {
			n.log.Warn("forgetting a computation that cannot be taken up again", "computation", s.ID, "client", s.ClientID, "err", err)
			st.DeleteComputation(s.ID)
			continue
		}
		keep[filepath.Join(n.cfg.Dir, "comp", s.ClientID, s.ID)] = true
	}
	if err := st.Sync(); err != nil {
		n.log.Warn("scheduler state", "err", err)
	}
	// What else is there was closed, or never kept.
	clients, _ := os.ReadDir(filepath.Join(n.cfg.Dir, "comp"))
	for _, cl := range clients {
		dir := filepath.Join(n.cfg.Dir, "comp", cl.Name())
		comps, _ := os.ReadDir(dir)
		for _, d := range comps {
			if p := filepath.Join(dir, d.Name()); !keep[p] {
				n.removeLeftover(p)
			}
		}
		_ = os.Remove(dir)
	}
}

// restoreComp takes up one kept computation.
func (n *Node) restoreComp(ctx context.Context, s state.Saved) error {
	req := &drovev1.SetupRequest{}
	if err := proto.Unmarshal(s.Setup, req); err != nil {
		return fmt.Errorf("its set-up request: %w", err)
	}
	if !validClientID(s.ClientID) || !validClientID(s.ID) {
		return fmt.Errorf("bad client or computation id")
	}
	for _, b := range append([]*drovev1.Blob{req.Executable, req.Program}, depBlobs(req)...) {
		if b != nil && !n.blobs.Has(b.Sum) {
			return fmt.Errorf("blob %s is gone from %s", b.Sum, n.blobs.Dir)
		}
	}
	c := &Computation{
		n:        n,
		id:       s.ID,
		clientID: s.ClientID,
		req:      req,
		slots:    s.Slots,
		hb:       time.Duration(s.HeartbeatMs) * time.Millisecond,
		jobs:     map[uint64]*job{},
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
		fileAcks: req.FileAcks,
		closing:  make(chan struct{}),
		fileWait: map[uint64]chan string{},
		maxRunID: s.MaxRunID,
		st:       n.cfg.State,
	}
	c.dir = filepath.Join(n.cfg.Dir, "comp", s.ClientID, s.ID)
	// The spool an earlier process left holds events the state has too
	// (those that matter) or that are stale: the outbox starts from the
	// state's.
	_ = os.Remove(filepath.Join(c.dir, spoolName))
	if err := c.prepare(ctx, req); err != nil {
		return err
	}
	evs := make([]*drovev1.Event, 0, len(s.Events))
	for _, e := range s.Events {
		ev := &drovev1.Event{}
		if err := proto.Unmarshal(e.Data, ev); err != nil || ev.Seq != e.Seq {
			c.discard()
			return fmt.Errorf("event %d: %w", e.Seq, errors.Join(err, errors.New("malformed")))
		}
		evs = append(evs, ev)
	}
	c.st.SetSeq(c.id, c.out.restore(s.Seq, evs))
	ten, err := n.machines.Open(ctx, c)
	if err != nil {
		c.discard()
		return err
	}
	c.ten = ten
	n.mu.Lock()
	n.clients[c.clientID] = true
	n.comps[c.id] = c
	n.mu.Unlock()
	n.met.computations.Inc()

	var queued, gone []*job
	var adopt []state.Job
	for _, sj := range s.Jobs {
		j := &job{c: c, runID: sj.RunID, jobID: sj.JobID}
		j.task = &sched.Task{ID: int64(sj.RunID), Input: sj.Input, Ref: j, Tenant: c.ten}
		c.mu.Lock()
		c.jobs[sj.RunID] = j
		c.mu.Unlock()
		switch {
		case sj.Result != nil:
			res := &drovev1.Result{}
			if err := proto.Unmarshal(sj.Result, res); err != nil {
				res = nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: its result was kept damaged: %w", sched.ErrNodeLost, err)})
			}
			c.finishProto(j, res)
		case sj.Node != "":
			c.mu.Lock()
			j.adopted = true
			c.mu.Unlock()
			adopt = append(adopt, sj)
			gone = append(gone, j)
		default:
			queued = append(queued, j)
		}
	}
	if a, ok := n.machines.(Adopter); ok {
		a.Adopt(c, adopt, s.Nodes)
	} else {
		for _, j := range gone {
			c.FinishAdopted(j.runID, sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s restarted while the job ran", sched.ErrNodeLost, n.cfg.Name)})
		}
	}
	for _, j := range queued {
		if err := n.sched.Submit(context.Background(), j.task); err != nil {
			c.finishProto(j, nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %w", sched.ErrNodeLost, err)}))
		}
	}
	n.log.Info("computation taken up again from the state", "computation", c.id, "client", c.clientID,
		"queued", len(queued), "on_machines", len(adopt), "results", len(s.Events))
	return nil
}

func depBlobs(req *drovev1.SetupRequest) []*drovev1.Blob {
	var out []*drovev1.Blob
	for _, d := range req.Depends {
		out = append(out, d.Blob)
	}
	return out
}

// Kept reports whether the computation closes because the daemon stops,
// with a state that keeps it for the daemon's next start: Machines.Close
// is then called before its tenant closes, and should let go of what its
// machines hold for it without stopping it (the next start reclaims it).
func (c *Computation) Kept() bool {
	return c.st != nil && c.frozen.Load() && c.closeWhy == whyNodeStopping
}

// Keeping reports whether the daemon's state keeps what happens to the
// computation: it has a state, and the computation is neither forgotten
// nor frozen as the daemon stops.
func (c *Computation) Keeping() bool { return c.st != nil && !c.frozen.Load() }

// FinishAdopted ends job run, one given to Machines.Adopt, with res.
func (c *Computation) FinishAdopted(run uint64, res sched.Result) {
	c.mu.Lock()
	j := c.jobs[run]
	ok := j != nil && j.adopted
	c.mu.Unlock()
	if !ok {
		return
	}
	c.n.met.jobsDone.WithLabelValues(outcomeName(res.Outcome)).Inc()
	c.finishProto(j, nodeproto.ResultProto(res))
}

// Requeue gives job run, one given to Machines.Adopt that never began on
// its machine, to the scheduler again.
func (c *Computation) Requeue(run uint64) {
	c.order.Lock()
	defer c.order.Unlock()
	c.mu.Lock()
	j := c.jobs[run]
	ok := j != nil && j.adopted
	if ok {
		j.adopted = false
	}
	c.mu.Unlock()
	if !ok {
		return
	}
	if c.st != nil && !c.frozen.Load() {
		c.st.Undispatched(c.id, run)
	}
	if c.closed.Load() {
		c.finishProto(j, nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s stopped the job: %s", sched.ErrNodeLost, c.n.cfg.Name, c.closeWhy)}))
		return
	}
	if err := c.n.sched.Submit(context.Background(), j.task); err != nil {
		c.finishProto(j, nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %w", sched.ErrNodeLost, err)}))
	}
}

// finishProto pushes res as j's result for the client, outside the
// scheduler.
func (c *Computation) finishProto(j *job, res *drovev1.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[j.runID] != j {
		return
	}
	c.pushResultLocked(j, res, "")
	c.forgetLocked(j)
}

// pushResultLocked pushes j's result event, and keeps it in the state
// until the client acknowledges it; the caller holds c.mu. machine is
// where it ran, for a daemon whose machines are other daemons (Relay). A
// computation kept while the daemon stops pushes nothing: what the stop
// does to its jobs is not theirs, and the next start takes them up.
func (c *Computation) pushResultLocked(j *job, res *drovev1.Result, machine string) {
	if c.Kept() {
		return
	}
	ev := &drovev1.Event{RunId: j.runID, JobId: j.jobID, Machine: machine, Kind: &drovev1.Event_Result{Result: res}}
	seq := c.out.push(ev)
	if c.st == nil || c.frozen.Load() || seq == 0 {
		return
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		c.n.log.Warn("scheduler state: cannot encode a result", "computation", c.id, "err", err)
		return
	}
	c.st.Finish(c.id, j.runID, state.Event{Seq: seq, Data: b})
}

// saveComp keeps a new computation in the state before its client hears
// of it.
func (c *Computation) saveComp() error {
	if c.st == nil {
		return nil
	}
	b, err := proto.Marshal(c.req)
	if err != nil {
		return err
	}
	c.st.PutComputation(state.Computation{ID: c.id, ClientID: c.clientID, HeartbeatMs: c.hb.Milliseconds(), Slots: c.slots, Setup: b})
	return c.st.Sync()
}

// saveJobs queues keeping jobs just taken (see syncState).
func (c *Computation) saveJobsLocked(add []*job) {
	if c.st == nil || len(add) == 0 {
		return
	}
	jobs := make([]state.Job, len(add))
	for i, j := range add {
		jobs[i] = state.Job{RunID: j.runID, JobID: j.jobID, Input: j.task.Input}
	}
	c.st.AddJobs(c.id, c.maxRunID, jobs)
}

// syncState waits until what was queued for the state is on disk, before
// the client is told (the answer to a Submit).
func (c *Computation) syncState() error {
	if c.st == nil {
		return nil
	}
	return c.st.Sync()
}

// saveAck forgets, in the state, the events the client acknowledged.
func (c *Computation) saveAck(seq uint64) {
	if c.st == nil || c.frozen.Load() {
		return
	}
	for {
		old := c.savedAck.Load()
		if seq <= old {
			return
		}
		if c.savedAck.CompareAndSwap(old, seq) {
			break
		}
	}
	c.st.Ack(c.id, seq)
}

// forgetState forgets c in the state as it closes. A daemon that stops
// keeps it, as it was, for its next start: what its stopping does to the
// jobs is not kept.
func (c *Computation) forgetState(why string) {
	if c.st == nil {
		return
	}
	if why == whyNodeStopping {
		c.frozen.Store(true)
		return
	}
	if !c.frozen.Swap(true) {
		c.st.DeleteComputation(c.id)
	}
}

// restore sets a restored computation's outbox: the client is away, and
// its events (kept, numbered up to seq) wait in the spool. They are
// followed by an event with nothing in it numbered seq+seqGap: a client
// that saw numbers above seq from the earlier process (events that were
// not kept) skips nothing from now on, and one that collects results
// (Recover) reads up to the last number.
func (o *outbox) restore(seq uint64, evs []*drovev1.Event) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(evs) > 0 {
		o.acked = evs[0].Seq - 1
	} else {
		o.acked = seq
	}
	o.seq = seq + seqGap
	evs = append(evs, &drovev1.Event{Seq: o.seq})
	o.spoolLocked(evs)
	return o.seq
}

// keepsOnStop reports whether the daemon is stopping with a state, which
// keeps its computations for its next start.
func (n *Node) keepsOnStop() bool { return n.cfg.State != nil && n.stopping.Load() }

// errStopping is the answer about a computation a daemon that stops keeps
// for its next start: Unavailable, which its client retries.
func errStopping(name string) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("drove: %s is stopping; it keeps the computation for its next start", name))
}

// saveCancelled keeps, before the jobs of tasks are cancelled, that they
// end Killed: a queued job's cancel ends it at once, and its result event
// for the client is committed later, so a daemon killed meanwhile would
// otherwise find it queued and run it, though the client may have heard
// it was cancelled. A job that runs gets its own result, which replaces
// this one.
func (c *Computation) saveCancelled(tasks []*sched.Task) {
	if !c.Keeping() || len(tasks) == 0 {
		return
	}
	b, err := proto.Marshal(nodeproto.ResultProto(sched.Result{Outcome: sched.Killed, Err: errors.New("drove: job cancelled before it started")}))
	if err != nil {
		return
	}
	for _, t := range tasks {
		c.st.Result(c.id, uint64(t.ID), b)
	}
	if err := c.st.Sync(); err != nil {
		c.n.log.Warn("scheduler state: cannot keep a cancel", "computation", c.id, "err", err)
	}
}
