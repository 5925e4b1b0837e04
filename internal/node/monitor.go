package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/sched"
)

// The daemon's web monitor (package monitor) is served at / on the
// daemon's port, behind the same authentication as its API; with a
// secret, a browser signs in with it (monitor.Sessions). Its jobs are the
// latest the daemon's scheduler reported (n.rec, fed by onTask), its
// nodes and computations the scheduler's stats.

// MachineDescriber is implemented by Machines that know more of a machine
// than the scheduler does: its address and what it has free.
type MachineDescriber interface {
	// Describe fills in what it knows of mn, found by mn.Name.
	Describe(mn *monitor.Node)
}

// NodeAdder is implemented by Machines to which nodes can be added by
// address while the daemon runs (the monitor's "add nodes").
type NodeAdder interface {
	AddNode(ctx context.Context, addr string) error
}

// monSource is the daemon as the monitor's Source and Actions.
type monSource struct{ n *Node }

var (
	_ monitor.Source  = monSource{}
	_ monitor.Actions = monSource{}
)

// Monitor returns the daemon's monitor handler (served at / by the
// daemon itself).
func (n *Node) Monitor() *monitor.Handler { return n.mon }

func (n *Node) kind() string {
	if n.cfg.Machines != nil {
		return "scheduler"
	}
	return "node"
}

// Snapshot implements monitor.Source.
func (s monSource) Snapshot(ctx context.Context, q monitor.Query) (monitor.Status, error) {
	n := s.n
	now := time.Now()
	st := monitor.Status{Kind: n.kind(), Name: n.cfg.Name, Time: now}
	sc := n.sched
	if sc == nil {
		return st, nil // not running yet
	}
	monitor.FromStats(&st, sc.Stats(), false)
	if d, ok := n.machines.(MachineDescriber); ok {
		for i := range st.Nodes {
			d.Describe(&st.Nodes[i])
		}
	}
	n.mu.Lock()
	for i := range st.Computations {
		mc := &st.Computations[i]
		if c := n.comps[mc.ID]; c != nil {
			mc.Client = c.clientID
			mc.What = c.req.GetFuncName()
			if mc.What == "" {
				mc.What = filepath.Base(c.req.GetProgramName())
			}
		}
	}
	n.mu.Unlock()
	st.Jobs, st.JobsTotal = n.rec.Jobs(q, now)
	st.JobsSeen = n.rec.Seen()
	return st, nil
}

// Job implements monitor.Source.
func (s monSource) Job(ctx context.Context, id int64) (monitor.JobDetail, error) {
	return s.n.rec.Job(ctx, id)
}

// Subscribe implements monitor.Source.
func (s monSource) Subscribe(ctx context.Context) <-chan struct{} { return s.n.rec.Subscribe(ctx) }

// Supported implements monitor.Actions.
func (s monSource) Supported() []string {
	acts := []string{monitor.ActCancel, monitor.ActSetCPUs, monitor.ActAllocate, monitor.ActDeallocate}
	if _, ok := s.n.machines.(NodeAdder); ok {
		acts = append(acts, monitor.ActAddNode)
	}
	return acts
}

// Do implements monitor.Actions. A job is cancelled as its client's
// cancel does (the computation's own path, in order with its submits); a
// node's CPUs and allocation are the scheduler's.
func (s monSource) Do(ctx context.Context, a monitor.Action) error {
	n := s.n
	if n.sched == nil {
		return errors.New("drove: monitor: the daemon is not running yet")
	}
	switch a.Kind {
	case monitor.ActCancel:
		t, _, ok := n.rec.Task(a.Job)
		if !ok {
			return monitor.ErrNotFound
		}
		j, ok := t.Ref.(*job)
		if !ok {
			return monitor.ErrNotFound
		}
		n.log.Info("job cancelled from the monitor", "computation", j.c.id, "job", j.jobID)
		j.c.cancel([]uint64{j.runID}, false)
		return nil
	case monitor.ActSetCPUs:
		if a.CPUs < 0 {
			return fmt.Errorf("drove: monitor: negative CPUs %d", a.CPUs)
		}
		return n.sched.SetSlots(a.Node, a.CPUs)
	case monitor.ActAllocate:
		return n.sched.Allocate(a.Node)
	case monitor.ActDeallocate:
		return n.sched.Deallocate(a.Node)
	case monitor.ActAddNode:
		if ad, ok := n.machines.(NodeAdder); ok {
			if a.Address == "" {
				return errors.New("drove: monitor: no address")
			}
			return ad.AddNode(ctx, a.Address)
		}
	}
	return monitor.ErrUnsupported
}

// Describe implements MachineDescriber for this machine: its address and
// what it has free.
func (m *thisMachine) Describe(mn *monitor.Node) {
	n := m.n
	if mn.Name != n.cfg.Name {
		return
	}
	mn.Address = n.cfg.ExtHost
	if mn.Address == "" && len(n.lns) > 0 && n.oneLn == nil {
		mn.Address = n.Addr().String()
	}
	DescribeAvail(mn, n.info.cached())
}

// DescribeAvail fills in what a node said it has free.
func DescribeAvail(mn *monitor.Node, a *drovev1.AvailInfo) {
	if a == nil {
		return
	}
	cpu, mem, disk, swap := a.CpuFreePercent, a.MemoryAvailable, a.DiskAvailable, a.SwapUsedPercent
	mn.CPUFree, mn.MemFree, mn.DiskFree, mn.SwapUsed = &cpu, &mem, &disk, &swap
}

// observe records a task event for the monitor.
func (n *Node) observe(ev sched.TaskEvent) {
	comp := ""
	if j, ok := ev.Task.Ref.(*job); ok {
		comp = j.c.id
	}
	n.rec.Observe(ev, comp)
}
