package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// With Config.State the scheduler keeps, beside what the daemon keeps
// (node.Config.State: computations, jobs, results for clients), where
// each job went: before a batch of jobs goes to a node, the node, the
// computation there and each job's run id there are kept (onSubmit). A
// result a node gives is kept before the node is told it was received
// (keepResult, then beforeAck before every acknowledgement), because the
// node forgets what is acknowledged. So a scheduler killed at any point
// and started again on the same state finds each job either queued (never
// sent: queued again), with its result (delivered to the client), or sent
// to a node computation, whose outcome it gets back from that node
// (Adopt): the node kept the results of its client, the scheduler, while
// it was away, under the scheduler's stable id.

var _ node.Adopter = (*Machines)(nil)

// onSubmit returns the nodeexec hook that keeps where a batch of c's jobs
// goes, before it goes; nil without a state.
func (m *Machines) onSubmit(c *node.Computation, addr string) func(string, []*drovev1.Job) {
	st := m.cfg.State
	if st == nil {
		return nil
	}
	return func(nodeComp string, jobs []*drovev1.Job) {
		ds := make([]state.Dispatch, len(jobs))
		for i, j := range jobs {
			// The node's job id is the scheduler's task id, the client's
			// run id.
			ds[i] = state.Dispatch{RunID: uint64(j.JobId), NodeRun: j.RunId}
		}
		st.Dispatched(c.ID(), addr, nodeComp, ds)
		if err := st.Sync(); err != nil {
			m.log.Warn("scheduler state: cannot keep where jobs went", "computation", c.ID(), "err", err)
		}
	}
}

// beforeAck returns the nodeexec hook that waits until the results
// received so far are kept; nil without a state.
func (m *Machines) beforeAck() func() {
	st := m.cfg.State
	if st == nil {
		return nil
	}
	return func() {
		if err := st.Sync(); err != nil {
			m.log.Warn("scheduler state", "err", err)
		}
	}
}

// keepNode keeps that c is ex's computation on the node at addr.
func (m *Machines) keepNode(c *node.Computation, addr string, ex *nodeexec.Executor) {
	if m.cfg.State != nil {
		m.cfg.State.PutNode(c.ID(), addr, ex.ComputationID())
	}
}

// keepResult keeps the result a node gave run of c, until the daemon
// makes it an event for the client; a run given back unstarted is queued
// again, and has none.
func keepResult(st *state.DB, c *node.Computation, run *sched.Run, res sched.Result) {
	if st == nil || res.Outcome == sched.NotStarted || !c.Keeping() {
		return
	}
	b, err := proto.Marshal(nodeproto.ResultProto(res))
	if err != nil {
		return
	}
	st.Result(c.ID(), uint64(run.Task.ID), b)
}

// reclaims are a restored computation's reclaims of its jobs from nodes.
type reclaims struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// where each job being reclaimed went, by client run id; fixed by
	// Adopt.
	where map[uint64]state.Job
}

// Adopt implements node.Adopter: the jobs of a restored computation that
// had gone to nodes are reclaimed from each node computation they went to
// (reclaim), and the node computations that hold none of them are closed.
func (m *Machines) Adopt(c *node.Computation, jobs []state.Job, nodes map[string]string) {
	type where struct{ addr, comp string }
	groups := map[where][]state.Job{}
	for _, j := range jobs {
		w := where{j.Node, j.NodeComp}
		groups[w] = append(groups[w], j)
	}
	for addr, comp := range nodes {
		if _, ok := groups[where{addr, comp}]; !ok {
			groups[where{addr, comp}] = nil
		}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	rc := &reclaims{cancel: cancel, where: map[uint64]state.Job{}}
	for _, j := range jobs {
		rc.where[j.RunID] = j
	}
	m.mu.Lock()
	m.reclaims[c] = rc
	m.mu.Unlock()
	for w, js := range groups {
		rc.wg.Add(1)
		m.wg.Go(func() {
			defer rc.wg.Done()
			m.reclaim(ctx, c, w.addr, w.comp, js)
		})
	}
}

// reclaim gets back the outcomes of jobs, which went to computation
// nodeComp on the node at addr before the scheduler restarted: each
// result is delivered to the client, a job that never began there is
// queued again, and if the node lost the computation its jobs end Lost
// (their client runs them again if they are reentrant). A node that does
// not answer is tried again every Retry until the computation closes.
func (m *Machines) reclaim(ctx context.Context, c *node.Computation, addr, nodeComp string, jobs []state.Job) {
	runs := map[uint64]bool{}
	client := map[uint64]uint64{} // client run id by node run id
	for _, j := range jobs {
		runs[j.NodeRun] = true
		client[j.NodeRun] = j.RunID
	}
	cfg := nodeexec.Config{Addr: addr, Secret: m.cfg.Secret, TLS: m.cfg.TLS, ClientID: m.cfg.ClientID, BeforeAck: m.beforeAck()}
	log := m.log.With("computation", c.ID(), "addr", addr, "node_computation", nodeComp)
	if len(jobs) > 0 {
		log.Info("reclaiming jobs sent to a node before the scheduler restarted", "jobs", len(jobs))
	}
	for {
		unseen, err := nodeexec.Reclaim(ctx, cfg, nodeComp, runs, func(nr uint64, res sched.Result) {
			delete(runs, nr)
			if res.Outcome == sched.NotStarted {
				c.Requeue(client[nr])
				return
			}
			c.FinishAdopted(client[nr], res)
		})
		switch {
		case err == nil:
			for _, nr := range unseen {
				// Never reached the node: it runs now, once.
				c.Requeue(client[nr])
			}
			if len(jobs) > 0 {
				log.Info("reclaimed the jobs sent to a node", "requeued", len(unseen))
			}
			return
		case errors.Is(err, nodeexec.ErrGone):
			for nr := range runs {
				c.FinishAdopted(client[nr], sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: node %s lost the job's computation while the scheduler was away: %w", sched.ErrNodeLost, addr, err)})
			}
			log.Warn("node lost the jobs it had when the scheduler restarted", "jobs", len(runs), "err", err)
			return
		case ctx.Err() != nil:
			m.endReclaim(c, cfg, nodeComp, runs, client)
			return
		}
		log.Warn("cannot reach a node to reclaim jobs; will retry", "jobs", len(runs), "err", err)
		select {
		case <-ctx.Done():
			m.endReclaim(c, cfg, nodeComp, runs, client)
			return
		case <-time.After(m.cfg.Retry):
		}
	}
}

// endReclaim ends the reclaim of runs as their computation closes: they
// end Lost, and unless the daemon is stopping (it keeps them for its next
// start), the node computation is closed, stopping them.
func (m *Machines) endReclaim(c *node.Computation, cfg nodeexec.Config, nodeComp string, runs map[uint64]bool, client map[uint64]uint64) {
	if !c.Kept() {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ConnectTimeout)
		if err := nodeexec.CloseComputation(ctx, cfg, nodeComp, true); err != nil {
			m.log.Warn("closing a node computation", "addr", cfg.Addr, "node_computation", nodeComp, "err", err)
		}
		cancel()
	}
	for nr := range runs {
		c.FinishAdopted(client[nr], sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: the computation closed", sched.ErrNodeLost)})
	}
}

// CancelAdopted implements node.Adopter: the cancel goes to the node
// computation each job went to; the job's result comes back through its
// reclaim. A node that does not answer keeps the job (it is reclaimed as
// it ends).
func (m *Machines) CancelAdopted(c *node.Computation, runs []uint64) {
	m.mu.Lock()
	rc := m.reclaims[c]
	m.mu.Unlock()
	if rc == nil {
		return
	}
	type where struct{ addr, comp string }
	byNode := map[where][]uint64{}
	for _, r := range runs {
		if j, ok := rc.where[r]; ok {
			w := where{j.Node, j.NodeComp}
			byNode[w] = append(byNode[w], j.NodeRun)
		}
	}
	for w, nrs := range byNode {
		m.wg.Go(func() {
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.ConnectTimeout)
			defer cancel()
			cfg := nodeexec.Config{Addr: w.addr, Secret: m.cfg.Secret, TLS: m.cfg.TLS, ClientID: m.cfg.ClientID}
			if err := nodeexec.CancelRuns(ctx, cfg, w.comp, nrs); err != nil {
				m.log.Warn("passing a cancel on to a node", "computation", c.ID(), "addr", w.addr, "err", err)
			}
		})
	}
}

// endReclaims stops c's reclaims, if it has any, and waits for them.
func (m *Machines) endReclaims(c *node.Computation) {
	m.mu.Lock()
	rc := m.reclaims[c]
	delete(m.reclaims, c)
	m.mu.Unlock()
	if rc != nil {
		rc.cancel()
		rc.wg.Wait()
	}
}

// detach lets go of the pair's computation on the node without closing it
// (nodeexec.Executor.Detach), once its set-up has ended.
func (p *pair) detach(ctx context.Context) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return
	}
	if p.ex != nil {
		p.ex.Detach()
	}
}
