package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/executor/process"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/sched"
)

// Machines run a daemon's jobs: they are the nodes of the daemon's
// scheduler and give each computation a client sets up its executors. A
// drove node's machine is the one it runs on (the default); a drove
// scheduler's are the drove nodes it drives (package internal/scheduler).
// Everything else — the API, blobs, authentication, the events kept for
// clients — is the daemon's, the same for both.
type Machines interface {
	// Start adds the machines to s, before the daemon serves clients,
	// and starts whatever keeps them (redialling nodes that went down)
	// until ctx ends or Stop.
	Start(ctx context.Context, s *sched.Scheduler) error
	// Stop ends what Start started and waits for it. The daemon calls it
	// once every computation is closed, before it closes s.
	Stop()
	// Slots is how many jobs of a computation the machines run at once
	// when it asks for cpus on each machine (0: all of them); it is also
	// what the daemon's Info reports, with cpus 0.
	Slots(cpus int) int
	// Open creates c's tenant of the scheduler and the executors that run
	// its jobs. An error is the client's: wrap it with connect's codes.
	Open(ctx context.Context, c *Computation) (*sched.Tenant, error)
	// Close releases what Open made for c, after its tenant is closed
	// (sched.Scheduler.CloseTenant closes the executors set with
	// SetTenantExecutor). It is also called for computations restored from
	// disk, which were never opened.
	Close(ctx context.Context, c *Computation)
}

// Relay is implemented by Machines that are other daemons (a drove
// scheduler's nodes): the daemon's events then name the machine each job
// went to (Event.machine), its Info lists the machines, and a client may
// bound its computation on one of them (SetCPUs).
type Relay interface {
	// List describes the machines, for Info.
	List() []*drovev1.Machine
	// SetCPUs bounds how many of c's jobs run at once on the named
	// machine; a negative cpus removes the bound. An unknown machine is
	// an error wrapping sched.ErrNoNode.
	SetCPUs(c *Computation, machine string, cpus int) error
}

// Tenant returns the computation's tenant of the daemon's scheduler.
func (c *Computation) Tenant() *sched.Tenant { return c.ten }

// ID returns the computation's id, unique on the daemon.
func (c *Computation) ID() string { return c.id }

// ClientID returns the id of the client that set the computation up.
func (c *Computation) ClientID() string { return c.clientID }

// Request returns the client's Setup request; its blobs are in Blobs.
func (c *Computation) Request() *drovev1.SetupRequest { return c.req }

// Slots returns how many of its jobs run at once (Machines.Slots).
func (c *Computation) Slots() int { return c.slots }

// JobsDir returns the directory for the computation's job directories.
func (c *Computation) JobsDir() string { return filepath.Join(c.dir, "jobs") }

// Blobs returns the daemon's blob store.
func (c *Computation) Blobs() blob.Store { return c.n.blobs }

// Files returns where files its jobs send back go: to the client.
func (c *Computation) Files() local.FileSink {
	return &fileForwarder{c: c, dir: filepath.Join(c.dir, "out"), root: c.root}
}

// Logger returns the daemon's logger for the computation.
func (c *Computation) Logger() *slog.Logger { return c.n.log.With("computation", c.id) }

// Grace returns the time between the steps of stopping a job.
func (c *Computation) Grace() time.Duration { return time.Duration(c.req.GraceMs) * time.Millisecond }

// Executor wraps ex, an executor of the computation on one machine that
// reports to c (Started, Done, Provisional), for the scheduler: a run the
// client recalls is given back only if it has not begun, and a run of an
// executor that does not report Started (reportsStarted false) is started
// as it is given.
func (c *Computation) Executor(ex sched.Executor, reportsStarted bool) sched.Executor {
	return &tenantExec{c: c, inner: ex, reportsStarted: reportsStarted}
}

// thisMachine runs jobs on the daemon's own machine: a drove node, Config.CPUs
// slots, each computation with its own local executor (functions) or
// process executor (programs).
type thisMachine struct {
	n *Node

	// lone is the local executor of the only computation with an open
	// tenant, if that is a function computation; noComps is set while no
	// computation has one. machineExec.Prefetch reads them under the
	// scheduler's lock, hence atomics; syncAheadLocked sets them.
	lone    atomic.Pointer[local.Executor]
	noComps atomic.Bool

	mu    sync.Mutex
	execs map[*Computation]sched.Executor // computations whose tenant is open
}

func newThisMachine(n *Node) *thisMachine {
	m := &thisMachine{n: n, execs: map[*Computation]sched.Executor{}}
	m.noComps.Store(true)
	return m
}

// Start implements Machines.
func (m *thisMachine) Start(ctx context.Context, s *sched.Scheduler) error {
	return s.AddNode(m.n.cfg.Name, m.n.cpus, machineExec{m})
}

// Stop implements Machines.
func (m *thisMachine) Stop() {}

// Slots implements Machines.
func (m *thisMachine) Slots(cpus int) int {
	if cpus > 0 {
		return min(m.n.cpus, cpus)
	}
	return m.n.cpus
}

// Open implements Machines: the computation's executor, started from its
// staged executable or program, is its tenant's executor on this machine.
func (m *thisMachine) Open(ctx context.Context, c *Computation) (*sched.Tenant, error) {
	n := m.n
	req := c.Request()
	if req.FuncName != "" && (req.Goos != runtime.GOOS || req.Goarch != runtime.GOARCH) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("drove: node %s is %s/%s, the client's executable is %s/%s: build the client for the node's platform or use nodes of the same one", n.cfg.Name, runtime.GOOS, runtime.GOARCH, req.Goos, req.Goarch))
	}
	ex, err := m.newExecutor(ctx, c)
	if err != nil {
		return nil, err
	}
	lx, isLocal := ex.(*local.Executor)
	// A tenant bounded by its slots: its executor runs no more at once. A
	// function computation may have as many again as its local executor
	// queues ahead, which it gets while it is alone (machineExec.Prefetch);
	// the process executor takes no run beyond its slots.
	tslots := c.Slots()
	if isLocal {
		tslots += lx.Prefetch()
	}
	ten := n.sched.NewTenant(sched.TenantConfig{Name: c.ID(), Slots: tslots, Exclusive: req.Exclusive})
	if err := n.sched.SetTenantExecutor(ten, n.cfg.Name, c.Executor(ex, isLocal)); err != nil {
		_ = ex.Close(context.Background())
		_ = n.sched.CloseTenant(ctx, ten)
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	m.mu.Lock()
	m.execs[c] = ex
	m.syncAheadLocked()
	m.mu.Unlock()
	return ten, nil
}

// newExecutor starts c's executor.
func (m *thisMachine) newExecutor(ctx context.Context, c *Computation) (sched.Executor, error) {
	n := m.n
	req := c.Request()
	lcfg := local.Config{
		Slots:       c.Slots(),
		Func:        req.FuncName,
		Setup:       req.Setup,
		Fingerprint: req.Fingerprint,
		Env:         req.Env,
		Dir:         c.JobsDir(),
		Blobs:       n.blobs,
		Files:       c.Files(),
		Grace:       c.Grace(),
		Logger:      c.Logger(),
	}
	for _, d := range req.Depends {
		lcfg.Depends = append(lcfg.Depends, local.Depend{Name: filepath.Clean(d.Name), Sum: d.Blob.Sum, Mode: os.FileMode(d.Blob.Mode).Perm()})
	}
	if req.FuncName == "" {
		name := filepath.Base(filepath.Clean(req.ProgramName))
		if name == "." || name == "/" || name == ".." {
			name = "program"
		}
		program := filepath.Join(c.dir, "bin", name)
		if err := stageExecutable(n.blobs.Path(req.Program.Sum), program, os.FileMode(req.Program.Mode).Perm()|0o500); err != nil {
			return nil, connect.NewError(connect.CodeInternal, err)
		}
		return process.New(process.Config{Slots: lcfg.Slots, Program: program, Env: lcfg.Env, Dir: lcfg.Dir,
			Blobs: lcfg.Blobs, Depends: lcfg.Depends, Grace: lcfg.Grace, Logger: lcfg.Logger}, c), nil
	}
	lcfg.Executable = filepath.Join(c.dir, "exe")
	if err := stageExecutable(n.blobs.Path(req.Executable.Sum), lcfg.Executable, 0o700); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	lx, err := local.New(ctx, lcfg, c)
	if err != nil {
		code := connect.CodeFailedPrecondition
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			code = connect.CodeCanceled
		}
		return nil, connect.NewError(code, err)
	}
	return lx, nil
}

// Close implements Machines.
func (m *thisMachine) Close(ctx context.Context, c *Computation) {
	m.mu.Lock()
	delete(m.execs, c)
	m.syncAheadLocked()
	m.mu.Unlock()
}

// syncAheadLocked updates what machineExec.Prefetch reads after a change
// of m.execs; the caller holds m.mu.
func (m *thisMachine) syncAheadLocked() {
	var lone *local.Executor
	if len(m.execs) == 1 {
		for _, ex := range m.execs {
			lone, _ = ex.(*local.Executor)
		}
	}
	m.lone.Store(lone)
	m.noComps.Store(len(m.execs) == 0)
}

// machineExec is the executor the node's machine is added to the scheduler
// with. Every task belongs to a computation, which has its own executor
// (sched.SetTenantExecutor), so it never gets a run; it sets how many runs
// the machine takes beyond its CPUs.
type machineExec struct{ m *thisMachine }

func (x machineExec) Start(r *sched.Run) {
	x.m.n.sched.Done(r, sched.Result{Outcome: sched.Failed, Err: errors.New("drove: node: a job of no computation")})
}
func (machineExec) Cancel(*sched.Run)           {}
func (machineExec) Close(context.Context) error { return nil }

// Recall implements sched.Prefetcher: the machine's executor has no runs.
func (machineExec) Recall(*sched.Run) {}

// Prefetch implements sched.Prefetcher: a lone function computation gets
// as many runs beyond the CPUs as its local executor queues behind its
// workers, so a warm worker never waits for the next job. With another
// computation open, or a program computation, the machine takes no more
// runs than its CPUs: a run queued behind one computation's worker would
// hold a CPU another could use, and each executor runs up to its slots, so
// runs beyond the CPUs spread over two executors would run at once. With
// no computation, the CPUs: the scheduler asks when the machine is added,
// and counts it as one that queues ahead only if the answer is positive.
//
// A change takes effect when the scheduler next asks, as a run is given
// or ends: runs queued ahead when a second computation arrives drain
// before the machine is back to its CPUs.
func (x machineExec) Prefetch() int {
	if lx := x.m.lone.Load(); lx != nil {
		return lx.Prefetch()
	}
	if x.m.noComps.Load() {
		return x.m.n.cpus
	}
	return 0
}
