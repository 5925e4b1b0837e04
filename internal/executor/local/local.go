// Package local is the executor that runs jobs on this machine: Go functions
// in warm worker processes started from an executable that calls drove.Main
// (one per slot, reused across jobs), or a program started once per job.
//
// The embedded cluster of drove.NewCluster is one scheduler driving one of
// these; a drove node daemon runs its jobs with the same executor.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/sched"
)

// Slots resolves a CPU setting as drove does everywhere (dispy's -c): 0
// means all of total, a negative n leaves -n free, and at least one is used.
func Slots(n, total int) int {
	switch {
	case n == 0:
		return total
	case n < 0:
		return max(1, total+n)
	default:
		return n
	}
}

// Reporter receives what runs produce; *sched.Scheduler implements it.
type Reporter interface {
	Started(r *sched.Run, at time.Time)
	Done(r *sched.Run, res sched.Result)
	Provisional(r *sched.Run, output []byte)
}

// Depend is a file staged into every job directory.
type Depend struct {
	Name string // path relative to the job directory
	Sum  string // blob holding its contents
	Mode os.FileMode
}

// Config configures an Executor.
type Config struct {
	// Slots is how many jobs run at once; it must be positive.
	Slots int
	// Func is the registered function to serve. Exactly one of Func and
	// Program is set.
	Func string
	// Setup is the registered setup hook to run in each worker, or "".
	Setup string
	// Program is the path of an executable run once per job.
	Program string
	// Executable is the worker binary for Func; "" means this process's own
	// executable.
	Executable string
	// Fingerprint is the registry fingerprint a worker must announce.
	Fingerprint string
	// Env is added to the environment of workers and programs.
	Env []string
	// Dir is where per-slot job directories are made; it must exist.
	Dir string
	// Blobs holds the Depends' contents.
	Blobs blob.Store
	// Depends are staged into each job directory.
	Depends []Depend
	// Files receives files that jobs send back; nil refuses them.
	Files FileSink
	// Grace is how long each step of stopping a job waits before the next:
	// cancel (or SIGINT), then SIGTERM, then SIGKILL. Default 5s.
	Grace time.Duration
	// StartTimeout bounds a worker's start-up handshake. Default 30s.
	StartTimeout time.Duration
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// FileSink stores files sent back by jobs.
type FileSink interface {
	// WriteChunk writes data at offset of the file name, truncating it at
	// offset 0; last marks the end of the file.
	WriteChunk(name string, mode os.FileMode, offset int64, data []byte, last bool) error
}

// Executor runs jobs on this machine. It implements sched.Executor, and for
// functions sched.Prefetcher: each worker holds its running job and the next
// ones, already in its pipe.
type Executor struct {
	cfg Config
	rep Reporter
	log *slog.Logger

	mu      sync.Mutex
	nextDir int
	closed  bool
	wg      sync.WaitGroup // goroutines reading workers, starting slots, running programs

	// Functions: the worker slots, live or starting.
	workers []*slot
	// Programs: idle slots and how many exist.
	idle    []*slot
	count   int
	running map[*sched.Run]*slot

	// While a reader handles results that arrived together (corked > 0),
	// runs written to workers wait in their buffers (dirty) and go out
	// with one write per worker when the last of them is handled.
	corkMu sync.Mutex
	corked int
	dirty  []*workerProc

	avgInput atomic.Int64 // bytes, see noteInput
}

var (
	_ sched.Executor   = (*Executor)(nil)
	_ sched.Prefetcher = (*Executor)(nil)
)

// ErrClosed is reported for runs started after Close.
var ErrClosed = errors.New("drove: executor closed")

// New returns an executor. For a Func it starts every worker now, so that
// a binary that does not know the function, a fingerprint mismatch or a
// failing setup is an error here rather than on the first job.
func New(ctx context.Context, cfg Config, rep Reporter) (*Executor, error) {
	if cfg.Slots <= 0 {
		return nil, fmt.Errorf("drove: local executor needs at least one slot, got %d", cfg.Slots)
	}
	if (cfg.Func == "") == (cfg.Program == "") {
		return nil, errors.New("drove: local executor needs exactly one of a function and a program")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Func != "" && cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("drove: finding this executable: %w", err)
		}
		cfg.Executable = exe
	}
	e := &Executor{cfg: cfg, rep: rep, log: cfg.Logger, running: map[*sched.Run]*slot{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Func == "" {
		return e, nil
	}
	if err := e.startWorkers(ctx); err != nil {
		_ = e.Close(ctx)
		return nil, err
	}
	return e, nil
}

// Prefetch implements sched.Prefetcher: up to 16 jobs queued behind each
// worker's running one, so a worker never waits for the scheduler, and
// short jobs' results and their successors travel many to a write (see
// worker.sendResult and cork): each write that wakes another process costs
// tens of microseconds on a virtual machine, more than a no-op job. 2, 4, 8
// and 16 per worker gave 24k, 33k, 40k and 44k no-op jobs/s on a 2-vCPU VM.
// A worker that runs out of work takes back a job still waiting at another
// (see steal), so a short job does not wait behind a long one. Programs
// start on demand and queue nothing.
//
// Large inputs queue only 2 deep: 16 queued inputs of many megabytes each
// would fill the workers' memory for no gain, since a job that reads that
// much costs more than a wake-up.
func (e *Executor) Prefetch() int {
	if e.cfg.Func == "" {
		return 0
	}
	if e.avgInput.Load() > largeInput {
		return 2 * e.cfg.Slots
	}
	return prefetchPerWorker * e.cfg.Slots
}

const (
	prefetchPerWorker = 16
	largeInput        = 64 << 10
)

// noteInput keeps avgInput, a running average of the inputs' sizes. Lost
// updates between concurrent Starts only blur an estimate.
func (e *Executor) noteInput(n int) {
	avg := e.avgInput.Load()
	e.avgInput.Store(avg + (int64(n)-avg)/8)
}

// slot is one place a job runs: a job directory and its output files, plus
// for functions the warm worker process.
type slot struct {
	dir            string
	stdout, stderr *os.File
	w              *workerProc // nil for programs
	proc           *os.Process // the running program, for programs
	stop           *escalation // stopping the running job, if asked to
}

// newDir makes a job directory with the depends staged and its output files.
func (e *Executor) newDir() (*slot, error) {
	e.mu.Lock()
	e.nextDir++
	dir := filepath.Join(e.cfg.Dir, fmt.Sprintf("slot-%d", e.nextDir))
	e.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("drove: job directory: %w", err)
	}
	for _, d := range e.cfg.Depends {
		if err := e.cfg.Blobs.Link(d.Sum, filepath.Join(dir, d.Name), d.Mode); err != nil {
			return nil, fmt.Errorf("drove: staging %s: %w", d.Name, err)
		}
	}
	s := &slot{dir: dir}
	var err error
	if s.stdout, err = openCapture(dir, ".stdout"); err != nil {
		return nil, err
	}
	if s.stderr, err = openCapture(dir, ".stderr"); err != nil {
		s.stdout.Close()
		return nil, err
	}
	return s, nil
}

// openCapture opens an output file for appending, so the writer's offset
// follows truncation, and unlinks it: only the descriptors keep it.
func openCapture(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("drove: output file: %w", err)
	}
	_ = os.Remove(path)
	return f, nil
}

func (s *slot) release() {
	s.stdout.Close()
	s.stderr.Close()
	_ = os.RemoveAll(s.dir)
}

// Start implements sched.Executor.
func (e *Executor) Start(r *sched.Run) {
	if e.cfg.Func != "" {
		e.startFunc(r)
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		go e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: ErrClosed})
		return
	}
	var s *slot
	if n := len(e.idle); n > 0 {
		s = e.idle[n-1]
		e.idle = e.idle[:n-1]
	} else if e.count < e.cfg.Slots {
		e.count++
	} else {
		e.mu.Unlock()
		go e.rep.Done(r, sched.Result{Outcome: sched.Failed, Err: errors.New("drove: no free slot (scheduler overcommitted the node)")})
		return
	}
	e.running[r] = s
	e.wg.Add(1)
	e.mu.Unlock()
	// A program start forks: keep it off the caller's goroutine, which is
	// the scheduler's.
	go func() {
		defer e.wg.Done()
		if s == nil {
			ns, err := e.newDir()
			if err != nil {
				e.mu.Lock()
				e.count--
				delete(e.running, r)
				e.mu.Unlock()
				e.rep.Done(r, sched.Result{Outcome: sched.Failed, Err: err})
				return
			}
			s = ns
			e.mu.Lock()
			e.running[r] = s
			e.mu.Unlock()
		}
		e.runProgram(s, r)
	}()
}

// Cancel implements sched.Executor.
func (e *Executor) Cancel(r *sched.Run) {
	if e.cfg.Func != "" {
		e.cancelFunc(r)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.running[r]
	if !ok || s == nil || s.stop != nil {
		return // not started yet (runProgram checks r.Cause), or already stopping
	}
	s.stop = e.newEscalation(s, r)
}

// finishProgram returns a program slot to the idle list and reports r.
func (e *Executor) finishProgram(s *slot, r *sched.Run, res sched.Result) {
	e.mu.Lock()
	delete(e.running, r)
	if s.stop != nil {
		s.stop.halt()
		s.stop = nil
	}
	if e.closed {
		e.count--
		defer s.release()
	} else {
		e.idle = append(e.idle, s)
	}
	e.mu.Unlock()
	e.rep.Done(r, res)
}

// Close implements sched.Executor: it stops the workers (they run their
// cleanup), waits for them and for running programs, and kills what is
// still alive when ctx ends.
func (e *Executor) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	idle := e.idle
	e.idle = nil
	e.count -= len(idle)
	for r, s := range e.running {
		if s == nil || s.stop != nil {
			continue
		}
		if s.w == nil || (s.w.ready && s.w.head() == r) {
			s.stop = e.newEscalation(s, r)
		}
	}
	workers := append([]*slot(nil), e.workers...)
	for _, s := range workers {
		if w := s.w; w.ready && !w.dead && len(w.queue) == 0 {
			w.cleanExit = true
			w.in.Close() // the worker runs its cleanup and exits
		}
	}
	e.mu.Unlock()
	for _, s := range idle {
		s.release()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.mu.Lock()
		for _, s := range e.running {
			if s != nil {
				s.kill()
			}
		}
		for _, s := range e.workers {
			s.kill()
		}
		e.mu.Unlock()
		<-done
		return ctx.Err()
	}
	var errs []error
	for _, s := range workers {
		if err := s.w.waitErr; err != nil && s.w.cleanExit {
			errs = append(errs, fmt.Errorf("drove: worker %d: %w", s.w.pid, err))
		}
	}
	return errors.Join(errs...)
}

// kill ends whatever runs in s at once. The caller holds e.mu.
func (s *slot) kill() {
	if s.w != nil {
		s.w.signal(syscall.SIGKILL)
	} else if s.proc != nil {
		_ = syscall.Kill(-s.proc.Pid, syscall.SIGKILL)
	}
}

// escalation stops a running job step by step: a polite request (the
// function's context is cancelled, a program gets SIGINT), SIGTERM, then
// SIGKILL, each after the grace period.
type escalation struct {
	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

// newEscalation starts stopping r in s. The caller holds e.mu. It returns
// nil for a program not started yet: runProgram checks r.Cause once it is.
func (e *Executor) newEscalation(s *slot, r *sched.Run) *escalation {
	var signal func(syscall.Signal)
	var ask func()
	if w := s.w; w != nil {
		id := w.idOf(r)
		signal = w.signal
		ask = func() { w.sendCancel(id) }
	} else {
		if s.proc == nil {
			return nil
		}
		pgid := s.proc.Pid
		signal = func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }
		ask = func() { signal(syscall.SIGINT) }
	}
	esc := &escalation{}
	steps := []func(){ask, func() { signal(syscall.SIGTERM) }, func() { signal(syscall.SIGKILL) }}
	var step func(i int)
	step = func(i int) {
		esc.mu.Lock()
		defer esc.mu.Unlock()
		if esc.done {
			return
		}
		steps[i]()
		if i+1 < len(steps) {
			esc.timer = time.AfterFunc(e.cfg.Grace, func() { step(i + 1) })
		}
	}
	go step(0)
	return esc
}

func (esc *escalation) halt() {
	esc.mu.Lock()
	esc.done = true
	if esc.timer != nil {
		esc.timer.Stop()
	}
	esc.mu.Unlock()
}
