package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/internal/worker"
)

// ErrFingerprint is wrapped by the error for a worker whose function
// registry differs from the client's: it was built from other code, and
// never runs a job.
var ErrFingerprint = errors.New("drove: worker registry fingerprint mismatch")

// workerProc is a warm worker process serving one slot.
type workerProc struct {
	e   *Executor
	cmd *exec.Cmd
	wmu sync.Mutex
	w   *wire.Writer
	in  *os.File // our end of its fd 3
	r   *wire.Reader
	out *os.File // our end of its fd 4
	pid int

	// Guarded by e.mu. The worker runs its queue in order: the head is
	// running (once ready), the rest wait in its pipe.
	queue  []*entry
	nextID uint64
	ready  bool // handshake done: runs may be sent
	dead   bool

	// exited is closed by the reader once the process has been waited for;
	// only the reader waits, as os/exec allows one Wait.
	exited    chan struct{}
	waitErr   error
	cleanExit bool // it was asked to stop, not killed

	// fileErrs holds the first error of each file being received, told
	// to the worker with its last chunk. Only the reader uses it.
	fileErrs map[string]error
}

// entry is a run queued at a worker.
type entry struct {
	r  *sched.Run
	id uint64
	// cancelled: it was cancelled before it started and has been reported;
	// the worker skips it.
	cancelled bool
	// recalled: taken back for the scheduler (Recall, steal) and the
	// worker told to skip it (wire.Skip), but not reported yet: the worker
	// may have begun it already (it runs ahead of the results it holds
	// back, see internal/worker), and then goes on, so only its answer
	// says whether the run never started (NotStarted) or ran.
	recalled bool
}

// head returns the run at the head of the queue, or nil. The caller holds
// e.mu.
func (w *workerProc) head() *sched.Run {
	if len(w.queue) == 0 || w.queue[0].cancelled || w.queue[0].recalled {
		return nil
	}
	return w.queue[0].r
}

// idOf returns the wire id of r's entry. The caller holds e.mu.
func (w *workerProc) idOf(r *sched.Run) uint64 {
	for _, ent := range w.queue {
		if ent.r == r {
			return ent.id
		}
	}
	return 0
}

// active counts the queued runs not cancelled. The caller holds e.mu.
func (w *workerProc) active() int {
	n := 0
	for _, ent := range w.queue {
		if !ent.cancelled {
			n++
		}
	}
	return n
}

// startWorkers starts every slot's worker at once.
func (e *Executor) startWorkers(ctx context.Context) error {
	errc := make(chan error, e.cfg.Slots)
	e.mu.Lock()
	for range e.cfg.Slots {
		s := e.addWorkerLocked()
		go func() { errc <- e.bringUp(ctx, s) }()
	}
	e.mu.Unlock()
	var errs []error
	for range e.cfg.Slots {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// addWorkerLocked adds a slot whose worker is not started yet; bringUp
// starts it. The caller holds e.mu.
func (e *Executor) addWorkerLocked() *slot {
	s := &slot{w: &workerProc{e: e, exited: make(chan struct{})}}
	e.workers = append(e.workers, s)
	return s
}

// bringUp makes the slot's directory, starts its worker and sends it the
// runs queued meanwhile. On failure the slot is dropped and its runs fail.
func (e *Executor) bringUp(ctx context.Context, s *slot) error {
	err := e.startWorker(ctx, s)
	e.mu.Lock()
	w := s.w
	if err != nil {
		w.dead = true
		e.dropWorkerLocked(s)
		queued := w.queue
		w.queue = nil
		for _, ent := range queued {
			if !ent.cancelled {
				delete(e.running, ent.r)
			}
		}
		e.mu.Unlock()
		close(w.exited)
		for _, ent := range queued {
			if !ent.cancelled {
				e.rep.Done(ent.r, sched.Result{Outcome: sched.Failed, Err: err})
			}
		}
		return err
	}
	w.ready = true
	var send []*entry
	for _, ent := range w.queue {
		if !ent.cancelled {
			send = append(send, ent)
		}
	}
	w.queue = send
	head := w.head()
	if head != nil && head.Cause() != nil && s.stop == nil {
		s.stop = e.newEscalation(s, head)
	}
	if e.closed && len(w.queue) == 0 {
		w.in.Close()
	}
	w.wmu.Lock() // before any Start can send behind these: see startFunc
	e.mu.Unlock()
	if head != nil {
		e.rep.Started(head, time.Now())
	}
	for _, ent := range send {
		w.sendRunLocked(ent)
	}
	w.wmu.Unlock()
	return nil
}

func (e *Executor) dropWorkerLocked(s *slot) {
	for i, x := range e.workers {
		if x == s {
			e.workers = append(e.workers[:i], e.workers[i+1:]...)
			return
		}
	}
}

func (e *Executor) startWorker(ctx context.Context, s *slot) error {
	d, err := e.newDir()
	if err != nil {
		return err
	}
	s.Dir = d
	w := s.w
	jobsR, jobsW, err := os.Pipe()
	if err != nil {
		s.Release()
		return err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		jobsR.Close()
		jobsW.Close()
		s.Release()
		return err
	}
	cmd := exec.Command(e.cfg.Executable)
	cmd.Dir = s.Path
	cmd.Env = append(append(os.Environ(), e.cfg.Env...), worker.EnvMode+"=1")
	if os.Getenv("GORACE") == "" {
		// A binary built with -race sleeps a second at exit unless told
		// not to; workers exit at every Close.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Stdout = s.Stdout
	cmd.Stderr = s.Stderr
	cmd.ExtraFiles = []*os.File{jobsR, resW} // fds 3 and 4
	// Its own process group: a terminal's Ctrl-C reaches the client, which
	// stops jobs in order, not every worker at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	jobsR.Close()
	resW.Close()
	if err != nil {
		jobsW.Close()
		resR.Close()
		s.Release()
		return fmt.Errorf("drove: starting worker %s: %w", e.cfg.Executable, err)
	}
	e.mu.Lock()
	w.cmd, w.in, w.w, w.out, w.r, w.pid = cmd, jobsW, wire.NewWriter(jobsW), resR, wire.NewReader(resR, 0), cmd.Process.Pid
	e.mu.Unlock()
	if err := w.handshake(ctx, s); err != nil {
		w.signal(syscall.SIGKILL)
		w.in.Close()
		w.out.Close()
		_ = cmd.Wait()
		s.Release()
		return err
	}
	e.wg.Add(1)
	go w.read(s)
	return nil
}

func (w *workerProc) handshake(ctx context.Context, s *slot) error {
	e := w.e
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			m, err := w.r.Read()
			if err != nil {
				return fmt.Errorf("drove: worker %s did not say hello: %w%s", e.cfg.Executable, err, stderrNote(s))
			}
			hello, ok := m.(*wire.Hello)
			if !ok {
				return fmt.Errorf("drove: worker sent %s before hello", m.Type())
			}
			if hello.Version != wire.Version {
				return fmt.Errorf("drove: worker speaks protocol version %d, this client %d", hello.Version, wire.Version)
			}
			if hello.Fingerprint != e.cfg.Fingerprint {
				return fmt.Errorf("%w: worker %s has %s, client has %s (was the binary rebuilt or replaced?)",
					ErrFingerprint, e.cfg.Executable, hello.Fingerprint, e.cfg.Fingerprint)
			}
			if err := w.w.Send(&wire.Setup{Func: e.cfg.Func, Setup: e.cfg.Setup}); err != nil {
				return fmt.Errorf("drove: sending setup: %w", err)
			}
			m, err = w.r.Read()
			if err != nil {
				return fmt.Errorf("drove: worker died during setup: %w%s", err, stderrNote(s))
			}
			ready, ok := m.(*wire.Ready)
			if !ok {
				return fmt.Errorf("drove: worker sent %s instead of ready", m.Type())
			}
			if ready.Err != "" {
				return fmt.Errorf("drove: %s", ready.Err)
			}
			return nil
		}()
	}()
	timer := time.NewTimer(e.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		w.signal(syscall.SIGKILL)
		<-done
		return ctx.Err()
	case <-timer.C:
		w.signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("drove: worker did not start within %v", e.cfg.StartTimeout)
	}
}

func stderrNote(s *slot) string {
	if b := worker.TakeOutput(s.Stderr); len(b) > 0 {
		return "; its stderr: " + string(tail(b, 2048))
	}
	return ""
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startFunc queues r at the least busy worker and, if the worker is
// ready, sends it at once: a busy worker reads it as soon as it is free.
//
// After Close, r is reported Lost before startFunc returns (the scheduler
// allows reports from inside Start), so no goroutine outlives the executor.
func (e *Executor) startFunc(r *sched.Run) {
	e.noteInput(len(r.Task.Input))
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: ErrClosed})
		return
	}
	var s *slot
	live := 0
	for _, x := range e.workers {
		if x.w.dead {
			continue
		}
		live++
		if s == nil || x.w.active() < s.w.active() {
			s = x
		}
	}
	if (s == nil || s.w.active() > 0) && live < e.cfg.Slots {
		// A worker died: start its replacement and queue r there.
		s = e.addWorkerLocked()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			_ = e.bringUp(context.Background(), s)
		}()
	}
	w := s.w
	w.nextID++
	ent := &entry{r: r, id: w.nextID}
	w.queue = append(w.queue, ent)
	e.running[r] = s
	if !w.ready {
		e.mu.Unlock()
		return // bringUp sends it
	}
	isHead := w.head() == r
	// The worker runs frames in the order they arrive, which must be the
	// queue's: take the write lock before letting another Start queue.
	w.wmu.Lock()
	e.mu.Unlock()
	if isHead {
		// Before the frame goes: the job's own reports may follow at once.
		e.rep.Started(r, time.Now())
	}
	w.sendRunLocked(ent)
	w.wmu.Unlock()
	if r.Cause() != nil {
		e.cancelFunc(r)
	}
}

// cancelFunc stops r: the running head of a worker through the escalation;
// a run still waiting in a worker's queue at once, telling the worker to
// skip it.
func (e *Executor) cancelFunc(r *sched.Run) {
	e.mu.Lock()
	s, ok := e.running[r]
	if !ok {
		e.mu.Unlock()
		return // not queued yet: startFunc checks r.Cause
	}
	w := s.w
	if w.ready && w.head() == r {
		if s.stop == nil {
			s.stop = e.newEscalation(s, r)
		}
		e.mu.Unlock()
		return
	}
	e.takeBack(s, r, sched.Result{Outcome: sched.Killed, Err: sched.ErrCancelled})
}

// steal gives a job waiting behind another worker's running one back to
// the scheduler, which hands it to the worker that just went idle. Without
// it, a job queued ahead at a worker busy with a long job would wait for it
// while other workers sit idle.
func (e *Executor) steal() {
	e.mu.Lock()
	var victim *slot
	var r *sched.Run
	for _, s := range e.workers {
		w := s.w
		if !w.ready || w.dead {
			continue
		}
		for i := len(w.queue) - 1; i >= 1; i-- {
			if ent := w.queue[i]; !ent.cancelled && !ent.recalled {
				victim, r = s, ent.r
				break
			}
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		e.mu.Unlock()
		return
	}
	e.recallLocked(victim, r)
}

// recallLocked asks s's worker to skip r, which waits in its queue; the
// worker's answer reports it (see entry.recalled). The caller holds e.mu;
// recallLocked releases it.
func (e *Executor) recallLocked(s *slot, r *sched.Run) {
	w := s.w
	id := w.idOf(r)
	for _, ent := range w.queue {
		if ent.r == r {
			ent.recalled = true
		}
	}
	ready := w.ready
	e.mu.Unlock()
	if ready {
		w.sendSkip(id)
	}
}

// takeBack removes r, which waits unstarted in s's queue, tells the worker
// to skip it, and reports res. The caller holds e.mu; takeBack releases it.
func (e *Executor) takeBack(s *slot, r *sched.Run, res sched.Result) {
	w := s.w
	id := w.idOf(r)
	for _, ent := range w.queue {
		if ent.r == r {
			ent.cancelled = true
		}
	}
	delete(e.running, r)
	ready := w.ready
	e.mu.Unlock()
	if ready {
		w.sendCancel(id)
	}
	e.rep.Done(r, res)
}

// Recall implements sched.Prefetcher: a run still waiting in a worker's
// queue is taken back unstarted, and the worker told to skip it.
func (e *Executor) Recall(r *sched.Run) {
	e.mu.Lock()
	s, ok := e.running[r]
	if !ok || (s.w.ready && s.w.head() == r) {
		e.mu.Unlock()
		return // started (or gone) meanwhile
	}
	for _, ent := range s.w.queue {
		if ent.r == r && (ent.recalled || ent.cancelled) {
			e.mu.Unlock()
			return // on its way back
		}
	}
	if !s.w.ready {
		// Not sent to the worker yet (bringUp sends it): it is simply
		// taken back.
		e.takeBack(s, r, sched.Result{Outcome: sched.NotStarted})
		return
	}
	e.recallLocked(s, r)
}

// sendRunLocked sends ent's run, or leaves it buffered while the executor
// is corked; the caller holds w.wmu.
func (w *workerProc) sendRunLocked(ent *entry) {
	err := w.w.Write(&wire.Run{ID: ent.id, Input: ent.r.Task.Input})
	if err == nil && !w.e.holdWrite(w) {
		err = w.w.Flush()
	}
	if err != nil {
		// The reader sees the worker die and reports its runs.
		w.signal(syscall.SIGKILL)
	}
}

// cork holds back the flushing of runs written to workers until the
// matching uncork, so that the runs started in answer to several results
// read at once leave in one write per worker.
func (e *Executor) cork() {
	e.corkMu.Lock()
	e.corked++
	e.corkMu.Unlock()
}

func (e *Executor) uncork() {
	e.corkMu.Lock()
	e.corked--
	var dirty []*workerProc
	if e.corked == 0 {
		dirty, e.dirty = e.dirty, nil
	}
	e.corkMu.Unlock()
	for _, w := range dirty {
		w.wmu.Lock()
		if err := w.w.Flush(); err != nil {
			w.signal(syscall.SIGKILL)
		}
		w.wmu.Unlock()
	}
}

// holdWrite reports whether w's buffered frames may wait for uncork, and
// if so records w to be flushed then. The caller holds w.wmu, so an
// uncork running meanwhile flushes w only after the frame is written.
func (e *Executor) holdWrite(w *workerProc) bool {
	e.corkMu.Lock()
	defer e.corkMu.Unlock()
	if e.corked == 0 {
		return false
	}
	if !slices.Contains(e.dirty, w) {
		e.dirty = append(e.dirty, w)
	}
	return true
}

func (w *workerProc) sendSkip(id uint64) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.w.Send(&wire.Skip{ID: id})
}

func (w *workerProc) sendCancel(id uint64) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.w.Send(&wire.Cancel{ID: id})
}

func (w *workerProc) signal(sig syscall.Signal) {
	if w.pid > 0 {
		_ = syscall.Kill(-w.pid, sig)
	}
}

// wait reaps the process; only the reader goroutine calls it.
func (w *workerProc) wait() {
	w.waitErr = w.cmd.Wait()
	w.out.Close()
	close(w.exited)
}

// read handles the worker's frames until it exits.
func (w *workerProc) read(s *slot) {
	e := w.e
	defer e.wg.Done()
	corked := false
	for {
		m, err := w.r.Read()
		if err != nil {
			if corked {
				e.uncork()
			}
			w.died(s, err)
			return
		}
		// More frames at hand: hold the runs started in answer until
		// the last of them is handled.
		more := w.r.Buffered()
		if more && !corked {
			e.cork()
			corked = true
		}
		w.handle(s, m)
		if !more && corked {
			e.uncork()
			corked = false
		}
	}
}

// handle acts on one frame from the worker.
func (w *workerProc) handle(s *slot, m wire.Message) {
	e := w.e
	switch m := m.(type) {
	case *wire.Result:
		if !w.result(s, m) {
			w.signal(syscall.SIGKILL)
		}
	case *wire.Provisional:
		e.mu.Lock()
		var r *sched.Run
		if len(w.queue) > 0 && w.queue[0].id == m.ID && !w.queue[0].cancelled {
			r = w.queue[0].r
		}
		e.mu.Unlock()
		if r != nil {
			e.rep.Provisional(r, m.Output)
		}
	case *wire.File:
		w.receiveFile(m)
	case *wire.Begun:
		w.begun(s, m.ID)
	default:
		e.log.Warn("unexpected frame from worker", "type", m.Type())
		w.signal(syscall.SIGKILL)
	}
}

// begun handles the worker's answer to a Skip of a job it had begun: the
// job goes on after all, so it is running again for the scheduler. The
// worker sends it after the results of every job before it, so the entry
// is the head of the queue (or gone: its result came first).
func (w *workerProc) begun(s *slot, id uint64) {
	e := w.e
	e.mu.Lock()
	if len(w.queue) == 0 || w.queue[0].id != id || !w.queue[0].recalled {
		e.mu.Unlock()
		return
	}
	ent := w.queue[0]
	ent.recalled = false
	r := ent.r
	if ent.cancelled {
		// Reported Killed when it was cancelled, but it runs: stop it the
		// way a running job is stopped, so a job that ignores its context
		// does not hold the worker.
		if s.stop == nil {
			s.stop = e.newEscalation(s, r)
		}
		e.mu.Unlock()
		return
	}
	if r.Cause() != nil && s.stop == nil {
		s.stop = e.newEscalation(s, r)
	}
	e.mu.Unlock()
	e.rep.Started(r, time.Now())
}

// result handles the worker's result for the head of its queue and starts
// the next; false means the worker broke the protocol.
func (w *workerProc) result(s *slot, m *wire.Result) bool {
	e := w.e
	e.mu.Lock()
	if m.Kind == wire.ResultSkipped {
		// A worker answers a Skip at once, from behind the job it runs:
		// the entry may be anywhere in the queue.
		for i, ent := range w.queue {
			if i > 0 && ent.id == m.ID && ent.recalled {
				w.queue = slices.Delete(w.queue, i, i+1)
				if ent.cancelled {
					e.mu.Unlock()
					return true // reported when it was cancelled
				}
				delete(e.running, ent.r)
				e.mu.Unlock()
				e.rep.Done(ent.r, sched.Result{Outcome: sched.NotStarted})
				return true
			}
		}
	}
	if len(w.queue) == 0 || w.queue[0].id != m.ID {
		e.mu.Unlock()
		return false
	}
	ent := w.queue[0]
	w.queue = w.queue[1:]
	if s.stop != nil {
		s.stop.Halt()
		s.stop = nil
	}
	if !ent.cancelled {
		delete(e.running, ent.r)
	}
	panicked := m.Kind == wire.ResultPanic
	var next *sched.Run
	if panicked {
		// The worker exits after a panic: its queue is given back when the
		// reader sees it go, and a new worker replaces it.
		w.dead = true
		w.in.Close()
	} else if next = w.head(); next != nil && next.Cause() != nil {
		s.stop = e.newEscalation(s, next)
	}
	if e.closed && len(w.queue) == 0 {
		w.cleanExit = true
		w.in.Close()
	}
	idle := len(w.queue) == 0 && !w.dead && !e.closed
	e.mu.Unlock()
	if next != nil {
		e.rep.Started(next, time.Now())
	}
	if idle {
		defer e.steal()
	}
	if ent.cancelled {
		return true // reported when it was cancelled
	}
	if ent.recalled {
		if m.Kind == wire.ResultSkipped {
			e.rep.Done(ent.r, sched.Result{Outcome: sched.NotStarted})
			return true
		}
		// It had begun when the Skip came, and went on: its result
		// stands (it ran once). It was never reported started: its
		// Begun, which would have, comes after this result.
		e.rep.Started(ent.r, time.Unix(0, m.Start))
		res := resultOf(m)
		res.Sent = int64(len(ent.r.Task.Input))
		res.Received = int64(len(m.Output) + len(m.Stdout) + len(m.Stderr))
		e.rep.Done(ent.r, res)
		return true
	}
	if m.Kind == wire.ResultSkipped {
		// The cancel reached the worker before the run did: it never ran.
		e.rep.Done(ent.r, sched.Result{Outcome: sched.Killed, Err: sched.ErrCancelled})
		return true
	}
	res := resultOf(m)
	res.Sent = int64(len(ent.r.Task.Input))
	res.Received = int64(len(m.Output) + len(m.Stdout) + len(m.Stderr))
	e.rep.Done(ent.r, res)
	return true
}

// receiveFile writes a chunk of a file the job sends back and, after the
// last one, tells the worker whether the file arrived: its SendFile
// returns the first error any chunk met.
func (w *workerProc) receiveFile(m *wire.File) {
	e := w.e
	if w.fileErrs == nil {
		w.fileErrs = map[string]error{}
	}
	if m.Offset == 0 {
		delete(w.fileErrs, m.Name)
	}
	if err := e.receiveFile(m); err != nil {
		if _, failed := w.fileErrs[m.Name]; !failed {
			e.log.Warn("file from job refused", "file", m.Name, "err", err)
			w.fileErrs[m.Name] = err
		}
	}
	if !m.Last {
		return
	}
	done := &wire.FileDone{ID: m.ID, Name: m.Name}
	if err := w.fileErrs[m.Name]; err != nil {
		done.Err = err.Error()
	}
	delete(w.fileErrs, m.Name)
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.w.Send(done); err != nil {
		// The reader sees the worker die and reports its runs.
		w.signal(syscall.SIGKILL)
	}
}

func (e *Executor) receiveFile(m *wire.File) error {
	if e.cfg.Files == nil {
		return errors.New("this cluster takes no files")
	}
	if m.Offset > 1<<62 {
		return errors.New("offset out of range")
	}
	return e.cfg.Files.WriteChunk(m.Name, os.FileMode(m.Mode)&os.ModePerm, int64(m.Offset), m.Data, m.Last)
}

// died handles the end of the worker's frame stream: the process exited or
// was killed, or sent garbage. The running job fails with the exit status
// and the output it left; the jobs queued behind it go back unstarted.
func (w *workerProc) died(s *slot, readErr error) {
	e := w.e
	if !errors.Is(readErr, io.EOF) && !errors.Is(readErr, os.ErrClosed) {
		w.signal(syscall.SIGKILL)
	}
	w.in.Close()
	w.wait()
	e.mu.Lock()
	w.dead = true
	e.dropWorkerLocked(s)
	queued := w.queue
	w.queue = nil
	if s.stop != nil {
		s.stop.Halt()
		s.stop = nil
	}
	for _, ent := range queued {
		if !ent.cancelled {
			delete(e.running, ent.r)
		}
	}
	e.mu.Unlock()
	stdout, stderr := worker.TakeOutput(s.Stdout), worker.TakeOutput(s.Stderr)
	s.Release()
	for i, ent := range queued {
		if ent.cancelled {
			continue
		}
		if i > 0 {
			e.rep.Done(ent.r, sched.Result{Outcome: sched.NotStarted})
			continue
		}
		res := sched.Result{Outcome: sched.Failed, Stdout: stdout, Stderr: stderr, End: time.Now(), Sent: int64(len(ent.r.Task.Input))}
		if errors.Is(readErr, wire.ErrMalformed) || errors.Is(readErr, wire.ErrTooLarge) {
			res.Err = fmt.Errorf("drove: worker protocol error: %w", readErr)
		} else {
			code, sig := proc.StateOf(w.cmd.ProcessState)
			res.Err = &proc.ExitError{Code: code, Signal: sig, Stderr: proc.Tail(stderr, proc.StderrTail)}
		}
		if ent.r.Cause() != nil {
			res.Outcome = sched.Killed
		}
		e.rep.Done(ent.r, res)
	}
}

func resultOf(m *wire.Result) sched.Result {
	res := sched.Result{
		Output: m.Output,
		Stdout: m.Stdout,
		Stderr: m.Stderr,
		Start:  time.Unix(0, m.Start),
		End:    time.Unix(0, m.End),
	}
	switch m.Kind {
	case wire.ResultOK:
		res.Outcome = sched.OK
	case wire.ResultError:
		res.Outcome = sched.Failed
		res.Err = &joberr.RemoteError{Msg: m.Err}
	case wire.ResultPanic:
		res.Outcome = sched.Failed
		res.Err = &joberr.PanicError{Value: m.Err, Stack: m.Stack}
	}
	return res
}
