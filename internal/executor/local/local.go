// Package local is the executor that runs Go functions on this machine, in
// warm worker processes started from an executable that calls drove.Main
// (one per slot, reused across jobs). Programs and shell commands, a
// process per job, are internal/executor/process.
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
	"github.com/drove-dev/drove/internal/jobdir"
	"github.com/drove-dev/drove/internal/proc"
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
type Depend = jobdir.Depend

// Config configures an Executor.
type Config struct {
	// Slots is how many jobs run at once; it must be positive.
	Slots int
	// Func is the registered function to serve.
	Func string
	// Setup is the registered setup hook to run in each worker, or "".
	Setup string
	// Executable is the worker binary for Func; "" means this process's own
	// executable.
	Executable string
	// Fingerprint is the registry fingerprint a worker must announce.
	Fingerprint string
	// Env is added to the environment of workers.
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
	// the function's context is cancelled, then the worker gets SIGTERM,
	// then SIGKILL (proc.Escalate). Zero means proc.DefaultGrace.
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

// Executor runs Go functions on this machine. It implements sched.Executor
// and sched.Prefetcher: each worker holds its running job and the next ones,
// already in its pipe.
type Executor struct {
	cfg Config
	rep Reporter
	log *slog.Logger

	mu      sync.Mutex
	nextDir int
	closed  bool
	wg      sync.WaitGroup // goroutines reading workers and starting slots

	// The worker slots, live or starting.
	workers []*slot
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

// New returns an executor. It starts every worker now, so that a binary that does not know the function, a fingerprint mismatch or a
// failing setup is an error here rather than on the first job.
func New(ctx context.Context, cfg Config, rep Reporter) (*Executor, error) {
	if cfg.Slots <= 0 {
		return nil, fmt.Errorf("drove: local executor needs at least one slot, got %d", cfg.Slots)
	}
	if cfg.Func == "" {
		return nil, errors.New("drove: local executor needs a function")
	}
	cfg.Grace = proc.Grace(cfg.Grace)
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Executable == "" {
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
// (see steal), so a short job does not wait behind a long one.
//
// Large inputs queue only 2 deep: 16 queued inputs of many megabytes each
// would fill the workers' memory for no gain, since a job that reads that
// much costs more than a wake-up.
func (e *Executor) Prefetch() int {
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

// slot is one place a job runs: a job directory and its output files, and
// the warm worker process.
type slot struct {
	*jobdir.Dir
	w    *workerProc
	stop *proc.Stop // stopping the running job, if asked to
}

// newDir makes a job directory with the depends staged and its output files.
func (e *Executor) newDir() (*jobdir.Dir, error) {
	e.mu.Lock()
	e.nextDir++
	dir := filepath.Join(e.cfg.Dir, fmt.Sprintf("slot-%d", e.nextDir))
	e.mu.Unlock()
	return jobdir.Make(dir, e.cfg.Blobs, e.cfg.Depends)
}

// Start implements sched.Executor.
func (e *Executor) Start(r *sched.Run) { e.startFunc(r) }

// Cancel implements sched.Executor.
func (e *Executor) Cancel(r *sched.Run) { e.cancelFunc(r) }

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
	for r, s := range e.running {
		if s.stop == nil && s.w.ready && s.w.head() == r {
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
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.mu.Lock()
		for _, s := range e.workers {
			s.w.signal(syscall.SIGKILL)
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

// newEscalation starts stopping r, the running head of s's worker, by
// proc.Escalate: its context is cancelled, then the worker gets SIGTERM,
// then SIGKILL. The caller holds e.mu.
func (e *Executor) newEscalation(s *slot, r *sched.Run) *proc.Stop {
	w := s.w
	id := w.idOf(r)
	return proc.Escalate(e.cfg.Grace, func() { w.sendCancel(id) }, w.signal)
}
