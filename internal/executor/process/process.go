// Package process is the executor that runs each job as a process of its
// own on this machine, in its own process group: a program started once per
// job (drove.Program), or a shell command line (drove run's ":" login,
// drove.Shell without hosts). Go functions run in warm workers instead
// (internal/executor/local); shell commands on SSH hosts in
// internal/executor/sshexec, which shares this package's [Job] and
// [Runner].
//
// A job is stopped by [proc.Escalate] on its process group (SIGINT,
// SIGTERM, then SIGKILL, Config.Grace apart), and how it ended becomes its
// result by [proc.Classify].
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/jobdir"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
)

// Reporter receives the end of runs; *sched.Scheduler implements it.
type Reporter interface {
	Done(r *sched.Run, res sched.Result)
}

// Config configures an [Executor].
type Config struct {
	// Slots is how many jobs run at once; zero (or less) means the CPU
	// count.
	Slots int
	// Program, if set, is the path of an executable run once per job, with
	// the job's Input (wire strings) as its arguments, in a job directory
	// (under Dir, with Depends staged and the directory first in PATH). Its
	// exit code is the job's result, its output is collected, and one that
	// exits with a status of its own after SIGINT has that result (as a
	// function that returns its best result when cancelled).
	//
	// Without a Program, each job is a shell command line (its Input, or
	// the [Job] of its Ref's [Spec]) run by Shell.
	Program string
	// Shell runs the command lines; empty means /bin/sh.
	Shell string
	// Env is added to the environment of every job.
	Env []string
	// Dir is where a Program's job directories are made; it must exist.
	Dir string
	// Blobs holds the Depends' contents.
	Blobs blob.Store
	// Depends are staged into each job directory of a Program.
	Depends []jobdir.Depend
	// NonZeroIsResult makes a shell command's non-zero exit a result (OK,
	// the code in Output), not a failure. A Program's always is.
	NonZeroIsResult bool
	// Grace is how long each step of stopping a job waits before the next:
	// SIGINT, SIGTERM, then SIGKILL to its process group. Zero means
	// [proc.DefaultGrace].
	Grace time.Duration
	// BaseFiles are copied into BaseDir before the first shell job that
	// runs there, when BaseDir is set (a workdir: see [Executor]); without
	// one the files are already here. CleanupBase removes the copies at
	// Close.
	BaseFiles   []string
	BaseDir     string
	CleanupBase bool
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Executor runs each job as a process on this machine. It implements
// sched.Executor.
//
// A shell job with a Dir is treated as on any host: a relative Dir is
// relative to the home directory (the login directory of an SSH host),
// Transfer files are copied into it and Return files copied back from it to
// the current directory, and Cleanup and RemoveDir remove the copies. A job
// without a Dir runs in the current directory, where its files already
// are: transfers and returns are no-ops and nothing is removed.
type Executor struct {
	Runner
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	dirs map[int]*jobdir.Dir // a Program's job directory per slot
	pgs  map[int]proc.Group  // the running process groups, per slot

	baseOnce sync.Once
	baseDir  string // where the base files were copied; "" if not
	baseErr  error
}

var _ sched.Executor = (*Executor)(nil)

// ErrClosed is the error of runs started after Close.
var ErrClosed = errors.New("drove: executor closed")

// New returns an executor reporting to rep.
func New(cfg Config, rep Reporter) *Executor {
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	cfg.Grace = proc.Grace(cfg.Grace)
	e := &Executor{cfg: cfg, log: cfg.Logger, dirs: map[int]*jobdir.Dir{}, pgs: map[int]proc.Group{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.Execute, e.Report, e.Closed = e.execute, rep.Done, ErrClosed
	return e
}

// Slots returns the number of jobs run at once.
func (e *Executor) Slots() int { return e.cfg.Slots }

func (e *Executor) execute(ctx context.Context, r *sched.Run, slot int) sched.Result {
	if slot > e.cfg.Slots {
		return sched.Result{Outcome: sched.Failed, Err: errors.New("drove: no free slot (scheduler overcommitted the node)")}
	}
	if e.cfg.Program != "" {
		return e.runProgram(ctx, r, slot)
	}
	return e.runShell(ctx, r, slot)
}

// started records the process group running in slot, for Close.
func (e *Executor) started(slot int, g proc.Group) {
	e.mu.Lock()
	e.pgs[slot] = g
	e.mu.Unlock()
}

// ended forgets slot's group and kills what is left of it: children that
// outlived the job must not hold its output or leak into the next job.
func (e *Executor) ended(slot int, g proc.Group) {
	e.mu.Lock()
	delete(e.pgs, slot)
	e.mu.Unlock()
	g.Kill()
}

// wait waits for the process started as group g to end, stopping g by
// proc.Escalate once ctx ends; it reports whether it did.
func (e *Executor) wait(ctx context.Context, g proc.Group, wait func() error) (werr error, stopped bool) {
	waited := make(chan error, 1)
	go func() { waited <- wait() }()
	select {
	case werr = <-waited:
		return werr, false
	case <-ctx.Done():
	}
	stop := proc.Escalate(e.cfg.Grace, nil, g.Signal)
	werr = <-waited
	stop.Halt()
	return werr, true
}

// Close stops all runs (by the escalation) and waits for them; when ctx
// ends first it kills them and returns ctx's error. It removes the job
// directories, and with CleanupBase the base files.
func (e *Executor) Close(ctx context.Context) error {
	err := e.Stop(ctx)
	if err != nil {
		e.mu.Lock()
		for _, g := range e.pgs {
			g.Kill()
		}
		e.mu.Unlock()
		e.Wait()
	}
	e.mu.Lock()
	for _, d := range e.dirs {
		d.Release()
	}
	e.dirs = nil
	e.mu.Unlock()
	// Runs have stopped: baseDir is no longer written.
	e.baseOnce.Do(func() {})
	if e.cfg.CleanupBase && e.baseDir != "" {
		localCleanup(e.log, &Job{Transfer: e.cfg.BaseFiles, Cleanup: true}, e.baseDir)
	}
	if err != nil {
		return fmt.Errorf("drove: process executor: close: %w", err)
	}
	return nil
}
