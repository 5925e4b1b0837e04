package drove

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/sched"
)

// WithMonitor serves the cluster's web monitor at addr ("host:port", such
// as "127.0.0.1:8181"; port 0 picks a free one, see Cluster.MonitorAddr),
// as dispy's DispyHTTPServer: the nodes, the job counts and the latest
// jobs, live in a browser, with actions (cancel a job, set a node's CPUs,
// allocate, deallocate or close a node, and add drove nodes by address for
// a cluster of drove nodes). It also serves the cluster's Prometheus
// metrics at /metrics.
//
// Without a cluster secret (WithSecret or $DROVE_SECRET) addr must be a
// loopback address, and the monitor serves any client on this machine;
// with one, browsers sign in with the secret first, and addr may be any.
// The monitor stops when the cluster closes.
func WithMonitor(addr string) Option {
	return optionFunc(func(c *config) { c.monitor = addr })
}

// MonitorAddr returns the address the cluster's monitor serves on, or ""
// without WithMonitor.
func (c *Cluster[In, Out]) MonitorAddr() string {
	if c.monSrv == nil {
		return ""
	}
	return c.monSrv.Addr().String()
}

// startMonitor serves the monitor (WithMonitor).
func (c *Cluster[In, Out]) startMonitor() error {
	if c.cfg.monitor == "" {
		return nil
	}
	srv, err := monitor.Listen(monitor.ServerConfig{
		Addr:    c.cfg.monitor,
		Secret:  cmp.Or(c.cfg.secret, os.Getenv("DROVE_SECRET")),
		Monitor: monitor.Config{Source: clusterSource[In, Out]{c}},
		Extra:   map[string]http.Handler{"GET /metrics": promhttp.HandlerFor(c.metricsReg, promhttp.HandlerOpts{})},
		Logger:  c.log,
	})
	if err != nil {
		return err
	}
	c.monSrv = srv
	c.log.Info("monitor serving", "url", "http://"+srv.Addr().String()+"/")
	return nil
}

// onTaskMonitor records task events for the monitor, then calls next.
func (c *Cluster[In, Out]) onTaskMonitor(next func(sched.TaskEvent)) func(sched.TaskEvent) {
	if c.rec == nil {
		return next
	}
	return func(ev sched.TaskEvent) {
		c.rec.Observe(ev, "")
		if next != nil {
			next(ev)
		}
	}
}

// onNodeMonitor tells the monitor of node events, then calls next.
func (c *Cluster[In, Out]) onNodeMonitor(next func(sched.NodeEvent)) func(sched.NodeEvent) {
	if c.rec == nil {
		return next
	}
	return func(ev sched.NodeEvent) {
		c.rec.Notify()
		if next != nil {
			next(ev)
		}
	}
}

// clusterSource is a cluster as the monitor's Source and Actions.
type clusterSource[In, Out any] struct{ c *Cluster[In, Out] }

// Snapshot implements monitor.Source.
func (s clusterSource[In, Out]) Snapshot(ctx context.Context, q monitor.Query) (monitor.Status, error) {
	c := s.c
	now := time.Now()
	st := monitor.Status{Kind: "client", Name: c.fn.Name(), Time: now}
	monitor.FromStats(&st, c.s.Stats(), true)
	if len(st.Computations) == 1 {
		st.Computations[0].What = c.fn.Name()
		if c.remote != nil {
			st.Computations[0].ID = c.remote.clientID
		}
	}
	if c.remote != nil {
		byName := map[string]NodeInfo{}
		for _, ni := range c.remote.status() {
			byName[ni.Name] = ni
		}
		for i := range st.Nodes {
			mn := &st.Nodes[i]
			if ni, ok := byName[mn.Name]; ok {
				mn.Address = ni.Addr
				cpu, mem, disk, swap := ni.FreeCPUPercent, ni.MemoryAvailable, ni.DiskAvailable, ni.SwapUsedPercent
				mn.CPUFree, mn.MemFree, mn.DiskFree, mn.SwapUsed = &cpu, &mem, &disk, &swap
			}
		}
	}
	st.Jobs, st.JobsTotal = c.rec.Jobs(q, now)
	st.JobsSeen = c.rec.Seen()
	return st, nil
}

// Job implements monitor.Source.
func (s clusterSource[In, Out]) Job(ctx context.Context, id int64) (monitor.JobDetail, error) {
	return s.c.rec.Job(ctx, id)
}

// Subscribe implements monitor.Source.
func (s clusterSource[In, Out]) Subscribe(ctx context.Context) <-chan struct{} {
	return s.c.rec.Subscribe(ctx)
}

// Supported implements monitor.Actions.
func (s clusterSource[In, Out]) Supported() []string {
	acts := []string{monitor.ActCancel, monitor.ActSetCPUs, monitor.ActAllocate, monitor.ActDeallocate, monitor.ActClose}
	if s.c.remote != nil {
		acts = append(acts, monitor.ActAddNode)
	}
	return acts
}

// Do implements monitor.Actions with the cluster's own methods.
func (s clusterSource[In, Out]) Do(ctx context.Context, a monitor.Action) error {
	c := s.c
	switch a.Kind {
	case monitor.ActCancel:
		t, _, ok := c.rec.Task(a.Job)
		if !ok {
			return monitor.ErrNotFound
		}
		j, ok := t.Ref.(*Job[Out])
		if !ok {
			return monitor.ErrNotFound
		}
		return c.Cancel(j)
	case monitor.ActSetCPUs:
		return c.SetNodeCPUs(a.Node, a.CPUs)
	case monitor.ActAllocate:
		return c.AllocateNode(a.Node)
	case monitor.ActDeallocate:
		return c.DeallocateNode(a.Node)
	case monitor.ActClose:
		// Its running jobs finish first; the action does not wait for
		// them, Close does.
		c.monWG.Go(func() {
			if err := c.CloseNode(context.WithoutCancel(ctx), a.Node, false); err != nil {
				c.log.Warn("closing a node from the monitor", "node", a.Node, "err", err)
			}
		})
		return nil
	case monitor.ActAddNode:
		if a.Address == "" {
			return errors.New("drove: monitor: no address")
		}
		return c.DiscoverNodes(ctx, a.Address)
	}
	return monitor.ErrUnsupported
}
