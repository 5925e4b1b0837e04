// Package metrics holds the Prometheus metrics that every user of the
// scheduling core shares: jobs by final status, pending and running, run
// time and queue wait, dispatches, nodes up and lost ([Jobs], a
// sched.Observer), and what executors that reach drove nodes see: bytes of
// blobs moved and heartbeats missed ([Links]). The node and scheduler
// daemons, a Go client's Cluster and drove run each register them on a
// registry of their own (never the global one); docs/metrics.md says what
// each means.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/sched"
)

// Status label values of drove_jobs_total, as drove.Status names the final
// states (lower case).
const (
	StatusFinished   = "finished"
	StatusTerminated = "terminated"
	StatusCancelled  = "cancelled"
	StatusAbandoned  = "abandoned"
)

// Node state label values of drove_nodes.
const (
	NodeStateUp   = "up"
	NodeStateLost = "lost"
)

// Buckets of the job time histograms, in seconds: from a millisecond (short
// Go functions) to an hour.
var timeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// Jobs are the job and node metrics of one scheduling core. It implements
// sched.Observer: give it as sched.Config.Observer, then Bind the
// scheduler so that the pending and running gauges can ask it.
type Jobs struct {
	jobs       *prometheus.CounterVec
	dispatched *prometheus.CounterVec
	runTime    prometheus.Histogram
	wait       prometheus.Histogram
	nodes      *prometheus.GaugeVec
	nodesLost  prometheus.Counter
	sent, rcvd prometheus.Counter

	s atomic.Pointer[sched.Scheduler]

	// state of each node known: NodeStateLost or NodeStateUp. Guarded by
	// mu; the scheduler calls Node under its own lock, in order, but
	// several schedulers never share a Jobs.
	mu    sync.Mutex
	state map[string]string
}

var _ sched.Observer = (*Jobs)(nil)

// NewJobs makes the job and node metrics and registers them on reg.
func NewJobs(reg prometheus.Registerer) *Jobs {
	j := &Jobs{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drove_jobs_total",
			Help: "Jobs that reached a final status: finished, terminated (error, panic, crash, non-zero exit, timeout), cancelled, abandoned (node lost, no retry left).",
		}, []string{"status"}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drove_jobs_dispatched_total",
			Help: "Runs of jobs given to a node (retries and runs after a lost node count again), by node.",
		}, []string{"node"}),
		runTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drove_job_run_seconds",
			Help:    "Run time of jobs that reached a final status after running (their last run, as the node measured it).",
			Buckets: timeBuckets,
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drove_job_queue_wait_seconds",
			Help:    "Time from a job's queueing (submit, or requeue after a failed or lost run) to the start of its run.",
			Buckets: timeBuckets,
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drove_nodes",
			Help: "Nodes by state: up (taking jobs), lost (down or unreachable, still tried again).",
		}, []string{"state"}),
		nodesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_nodes_lost_total",
			Help: "Times a node that was up went down (silent, connection broken, gone).",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_job_sent_bytes_total",
			Help: "Bytes sent to where jobs run, as each executor counts them: inputs, commands, files transferred, and for drove nodes the blobs and set-up of their computation.",
		}),
		rcvd: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_job_received_bytes_total",
			Help: "Bytes received for jobs, as each executor counts them: for drove nodes results, output and files sent back; for SSH hosts files returned.",
		}),
		state: map[string]string{},
	}
	// Both states exist from the start, so that a dashboard shows 0.
	j.nodes.WithLabelValues(NodeStateUp)
	j.nodes.WithLabelValues(NodeStateLost)
	for _, st := range []string{StatusFinished, StatusTerminated, StatusCancelled, StatusAbandoned} {
		j.jobs.WithLabelValues(st)
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drove_jobs_pending",
		Help: "Jobs queued, not yet given to a node.",
	}, func() float64 { p, _ := j.load(); return float64(p) })
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drove_jobs_running",
		Help: "Jobs given to a node and not ended (queued ahead at a node's workers included).",
	}, func() float64 { _, r := j.load(); return float64(r) })
	reg.MustRegister(j.jobs, j.dispatched, j.runTime, j.wait, j.nodes, j.nodesLost, j.sent, j.rcvd, pending, running)
	return j
}

// Bind makes s the scheduler whose pending and running jobs the gauges
// report; before it they report 0.
func (j *Jobs) Bind(s *sched.Scheduler) { j.s.Store(s) }

func (j *Jobs) load() (pending, running int) {
	s := j.s.Load()
	if s == nil {
		return 0, 0
	}
	st := s.Stats()
	return st.Pending, st.Running
}

// Dispatched implements sched.Observer.
func (j *Jobs) Dispatched(node string) { j.dispatched.WithLabelValues(node).Inc() }

// Started implements sched.Observer.
func (j *Jobs) Started(_ string, wait time.Duration) { j.wait.Observe(wait.Seconds()) }

// RunEnded implements sched.Observer.
func (j *Jobs) RunEnded(_ string, res *sched.Result) {
	if res.Sent > 0 {
		j.sent.Add(float64(res.Sent))
	}
	if res.Received > 0 {
		j.rcvd.Add(float64(res.Received))
	}
}

// Finished implements sched.Observer.
func (j *Jobs) Finished(st sched.State, res *sched.Result) {
	j.jobs.WithLabelValues(StatusName(st)).Inc()
	if !res.Start.IsZero() && !res.End.IsZero() {
		j.runTime.Observe(max(0, res.End.Sub(res.Start).Seconds()))
	}
}

// Node implements sched.Observer.
func (j *Jobs) Node(ev sched.NodeEvent) {
	j.mu.Lock()
	defer j.mu.Unlock()
	old := j.state[ev.Node]
	var now string
	switch ev.Kind {
	case sched.NodeUp:
		now = NodeStateUp
	case sched.NodeDown:
		now = NodeStateLost
		j.nodesLost.Inc()
	case sched.NodeUnreachable:
		now = NodeStateLost
	case sched.NodeRemoved, sched.NodeGone:
		now = ""
	}
	if old == now {
		return
	}
	if old != "" {
		j.nodes.WithLabelValues(old).Dec()
	}
	if now == "" {
		delete(j.state, ev.Node)
		return
	}
	j.state[ev.Node] = now
	j.nodes.WithLabelValues(now).Inc()
}

// StatusName is the status label value of a final state.
func StatusName(st sched.State) string {
	switch st {
	case sched.Finished:
		return StatusFinished
	case sched.Terminated:
		return StatusTerminated
	case sched.Cancelled:
		return StatusCancelled
	case sched.Abandoned:
		return StatusAbandoned
	}
	return "unknown"
}

// Links are the metrics of executors that reach drove nodes (a client's
// and a scheduler's nodeexec): bytes of blobs shipped and fetched, and
// heartbeats missed. A nil *Links counts nothing.
type Links struct {
	blobSent, blobRcvd prometheus.Counter
	misses             prometheus.Counter
}

// NewLinks makes the link metrics and registers them on reg.
func NewLinks(reg prometheus.Registerer) *Links {
	l := &Links{
		blobSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_blob_sent_bytes_total",
			Help: "Bytes of blobs (executables, programs, depends) sent to drove nodes that lacked them.",
		}),
		blobRcvd: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_blob_received_bytes_total",
			Help: "Bytes of blobs (files jobs sent back) fetched from drove nodes.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_heartbeat_misses_total",
			Help: "Heartbeat intervals at whose end a drove node had been silent for more than two intervals.",
		}),
	}
	reg.MustRegister(l.blobSent, l.blobRcvd, l.misses)
	return l
}

// BlobSent counts n bytes of blobs sent.
func (l *Links) BlobSent(n int64) {
	if l != nil && n > 0 {
		l.blobSent.Add(float64(n))
	}
}

// BlobReceived counts n bytes of blobs received.
func (l *Links) BlobReceived(n int64) {
	if l != nil && n > 0 {
		l.blobRcvd.Add(float64(n))
	}
}

// HeartbeatMiss counts a missed heartbeat.
func (l *Links) HeartbeatMiss() {
	if l != nil && l.misses != nil {
		l.misses.Inc()
	}
}

// BlobsOnly returns links that count the same blob bytes but no
// heartbeats: for executors whose node is watched by something else that
// counts the misses once per node (a scheduler's node watch), not once
// per computation.
func (l *Links) BlobsOnly() *Links {
	if l == nil {
		return nil
	}
	return &Links{blobSent: l.blobSent, blobRcvd: l.blobRcvd}
}
