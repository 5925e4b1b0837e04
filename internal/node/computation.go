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
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/filesink"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
)

// computation is one client's computation on the node: a local executor
// with its slots, the jobs queued for them, and the events for the client.
type computation struct {
	n        *Node
	prefetch int // runs the executor takes beyond its slots
	id       string
	clientID string
	dir      string
	slots    int
	hb       time.Duration
	ex       sched.Executor // local (functions) or process (programs)
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
	// startMu serialises Start calls: the local executor queues a run at
	// a worker under its lock but writes it to the worker's pipe after,
	// so two concurrent Starts could reach one worker out of order.
	startMu sync.Mutex

	// Guarded by n.mu.
	queue    []*nrun
	runs     map[uint64]*nrun
	running  int // runs handed to the executor
	maxRunID uint64
	closed   bool
	closeWhy string
}

// nrun is a job of the computation, queued or running.
type nrun struct {
	id      uint64
	r       *sched.Run
	started bool // handed to the executor
	recall  bool // the client wants it back if it has not begun
	begun   bool // the executor reported it Started
}

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

// Done implements local.Reporter.
func (c *computation) Done(r *sched.Run, res sched.Result) {
	n := c.n
	id := uint64(r.Task.ID)
	n.mu.Lock()
	nr := c.runs[id]
	if nr == nil || nr.r != r {
		n.mu.Unlock()
		return
	}
	if nr.started {
		c.running--
		n.busy--
	}
	if res.Outcome == sched.NotStarted && !nr.recall {
		// The executor gave it back (its worker died): it goes first again.
		nr.started = false
		nr.r = &sched.Run{Task: nr.r.Task, Node: nr.r.Node}
		if !c.closed {
			c.queue = append([]*nrun{nr}, c.queue...)
		}
		starts := n.dispatchLocked()
		n.mu.Unlock()
		n.startAll(starts)
		return
	}
	delete(c.runs, id)
	if c.closed && res.Outcome != sched.OK {
		// Stopped because the computation closed under it (the node is
		// stopping, or the client went away): that says nothing about
		// the job, which may run again elsewhere.
		res = sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s stopped the job: %s", sched.ErrNodeLost, n.cfg.Name, c.closeWhy)}
	}
	// Pushed under the node's lock, so that a heartbeat's pending count and
	// last sequence number agree (a returning client relies on that).
	c.out.push(&drovev1.Event{RunId: id, JobId: jobID(r), Kind: &drovev1.Event_Result{Result: nodeproto.ResultProto(res)}})
	starts := n.dispatchLocked()
	n.mu.Unlock()
	n.met.jobsDone.WithLabelValues(outcomeName(res.Outcome)).Inc()
	n.startAll(starts)
}

// Started implements local.Reporter: a run queued behind a worker began.
func (c *computation) Started(r *sched.Run, at time.Time) {
	c.n.mu.Lock()
	if nr := c.runs[uint64(r.Task.ID)]; nr != nil && nr.r == r {
		nr.begun = true
	}
	c.n.mu.Unlock()
	c.out.push(&drovev1.Event{RunId: uint64(r.Task.ID), JobId: jobID(r), Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: at.UnixNano()}})
}

// Provisional implements local.Reporter.
func (c *computation) Provisional(r *sched.Run, output []byte) {
	c.out.push(&drovev1.Event{RunId: uint64(r.Task.ID), JobId: jobID(r), Kind: &drovev1.Event_Provisional{Provisional: output}})
}

// jobID is the user's job id of a run.
func jobID(r *sched.Run) int64 {
	id, _ := r.Task.Ref.(int64)
	return id
}

type start struct {
	c  *computation
	nr *nrun
}

// dispatchLocked hands jobs round-robin to the executors of computations
// with queued jobs and room in their slots (plus what the executor queues
// ahead). While several computations have work, at most the node's CPUs
// worth of jobs are with executors, so they split the CPUs; a computation
// alone gets its prefetch on top.
func (n *Node) dispatchLocked() []start {
	var starts []start
	budget := n.cpus
	active := 0
	for _, c := range n.order {
		if c.running > 0 || len(c.queue) > 0 {
			active++
		}
	}
	if active <= 1 {
		budget = 2 * n.cpus
	}
	for n.busy < budget && len(n.order) > 0 {
		progress := false
		for i := 0; i < len(n.order) && n.busy < budget; i++ {
			c := n.order[(n.rr+i)%len(n.order)]
			if len(c.queue) == 0 || c.running >= c.slots+c.prefetch {
				continue
			}
			nr := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			nr.started = true
			c.running++
			n.busy++
			starts = append(starts, start{c, nr})
			progress = true
		}
		n.rr++
		if !progress {
			break
		}
	}
	return starts
}

func (n *Node) startAll(starts []start) {
	now := time.Now().UnixNano()
	for _, s := range starts {
		n.met.jobsStarted.Inc()
		if s.c.prefetch == 0 {
			// An executor that queues nothing ahead starts runs at once
			// and does not report Started.
			s.c.out.push(&drovev1.Event{RunId: s.nr.id, JobId: jobID(s.nr.r), Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: now}})
		}
		s.c.startMu.Lock()
		s.c.ex.Start(s.nr.r)
		s.c.startMu.Unlock()
	}
}

// submit queues jobs. Run ids at or below the highest seen are dropped: a
// client that lost the answer to a Submit sends the batch again.
func (c *computation) submit(jobs []*drovev1.Job) error {
	n := c.n
	n.mu.Lock()
	if c.closed {
		n.mu.Unlock()
		return errCompClosed
	}
	for _, j := range jobs {
		if j.RunId <= c.maxRunID {
			continue
		}
		c.maxRunID = j.RunId
		// The run id is the task's ID for the executor; the user's job id
		// rides along in Ref, for events a returning client can match.
		nr := &nrun{id: j.RunId, r: &sched.Run{Task: &sched.Task{ID: int64(j.RunId), Input: j.Input, Ref: j.JobId}, Node: n.cfg.Name}}
		c.runs[j.RunId] = nr
		c.queue = append(c.queue, nr)
	}
	starts := n.dispatchLocked()
	n.mu.Unlock()
	n.startAll(starts)
	return nil
}

var errCompClosed = errors.New("drove: computation closed")

// cancel stops jobs: queued ones end at once (Killed), running ones are
// stopped by the executor, which reports them. With recall, jobs that have
// not begun are given back (NotStarted) and the others go on.
func (c *computation) cancel(ids []uint64, recall bool) {
	n := c.n
	var stop []*sched.Run
	var killed []*nrun
	n.mu.Lock()
	for _, id := range ids {
		nr := c.runs[id]
		if nr == nil || (recall && nr.begun) {
			continue
		}
		if nr.started {
			if recall {
				nr.recall = true
			}
			stop = append(stop, nr.r)
			continue
		}
		delete(c.runs, id)
		for i, q := range c.queue {
			if q == nr {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		killed = append(killed, nr)
	}
	for _, k := range killed {
		res := &drovev1.Result{
			Outcome: drovev1.Outcome_OUTCOME_KILLED,
			Error:   &drovev1.JobError{Kind: drovev1.ErrorKind_ERROR_KIND_OTHER, Message: "drove: job cancelled before it started"},
		}
		if recall {
			res = &drovev1.Result{Outcome: drovev1.Outcome_OUTCOME_NOT_STARTED}
		}
		c.out.push(&drovev1.Event{RunId: k.id, JobId: jobID(k.r), Kind: &drovev1.Event_Result{Result: res}})
	}
	n.mu.Unlock()
	for _, r := range stop {
		if recall {
			if p, ok := c.ex.(sched.Prefetcher); ok {
				p.Recall(r)
			}
		} else {
			c.ex.Cancel(r)
		}
	}
}

// zombie reports whether the client has been away longer than iv.
func (c *computation) zombie(now time.Time, iv time.Duration) bool {
	return c.out.awaySince(now) > iv
}

// close ends the computation: its jobs are stopped (terminate) or waited for
// within ctx, its workers stop, its files are removed.
func (c *computation) close(ctx context.Context, terminate bool, why string) {
	c.once.Do(func() {
		n := c.n
		// Workers waiting in SendFile for the client must not keep the
		// executor from closing.
		close(c.closing)
		n.mu.Lock()
		c.closed = true
		c.closeWhy = why
		c.queue = nil
		delete(n.comps, c.id)
		for i, o := range n.order {
			if o == c {
				n.order = append(n.order[:i], n.order[i+1:]...)
				break
			}
		}
		var running []*sched.Run
		for _, nr := range c.runs {
			if nr.started {
				running = append(running, nr.r)
			}
		}
		n.mu.Unlock()
		if terminate {
			for _, r := range running {
				c.ex.Cancel(r)
			}
		}
		if err := c.ex.Close(ctx); err != nil {
			n.log.Warn("closing computation", "computation", c.id, "err", err)
		}
		n.mu.Lock()
		// Runs the executor reported are gone; what is left never ran to
		// its end, and its CPUs are free again.
		for _, nr := range c.runs {
			if nr.started {
				n.busy--
			}
		}
		c.runs = nil
		starts := n.dispatchLocked()
		if n.cfg.Serve > 0 && len(n.clients) >= n.cfg.Serve && len(n.comps) == 0 {
			select {
			case <-n.serveEnd:
			default:
				close(n.serveEnd)
			}
		}
		n.mu.Unlock()
		n.startAll(starts)
		close(c.done)
		c.out.close()
		c.files.Close()
		c.root.Close()
		if err := os.RemoveAll(c.dir); err != nil {
			n.log.Warn("removing computation directory", "dir", c.dir, "err", err)
		}
		n.met.computations.Dec()
		n.log.Info("computation closed", "computation", c.id, "client", c.clientID, "reason", why)
	})
}

// fileForwarder receives files sent back by jobs into the computation's
// directory (confined, size-limited) and, once complete, turns each into a
// blob and tells the client, which fetches it.
type fileForwarder struct {
	c    *computation
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
func (c *computation) sendFile(ev *drovev1.Event) error {
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
func (c *computation) fileDone(seq uint64, msg string) {
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
