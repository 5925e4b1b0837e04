package node

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	dmetrics "github.com/drove-dev/drove/internal/metrics"
)

// metrics are the node's Prometheus metrics, in a registry of its own so
// that several nodes in one process (tests) do not collide.
type metrics struct {
	reg          *prometheus.Registry
	jobsHanded   prometheus.Counter
	jobsStarted  prometheus.Counter
	jobsDone     *prometheus.CounterVec
	computations prometheus.Gauge
	streams      prometheus.Gauge
	blobBytesIn  prometheus.Counter
	blobBytesOut prometheus.Counter
	authFailures prometheus.Counter
	conns        prometheus.Gauge
	dropped      *prometheus.CounterVec
	// jobs are the scheduling core's job and node metrics, shared with
	// every other user of the core (internal/metrics).
	jobs *dmetrics.Jobs
}

// newMetrics makes the node's metrics; unacked, if not nil, counts the
// events the node holds that their clients have not acknowledged, and
// jobs, if not nil, returns the jobs queued and running.
func newMetrics(unacked func() float64, jobs func() (queued, running int)) *metrics {
	if unacked == nil {
		unacked = func() float64 { return 0 }
	}
	if jobs == nil {
		jobs = func() (int, int) { return 0, 0 }
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		jobsHanded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_node_jobs_handed_total",
			Help: "Jobs handed to where they run: more than started while a lone computation's jobs queue ahead at its workers.",
		}),
		jobsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_node_jobs_started_total", Help: "Jobs started on the node.",
		}),
		jobsDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drove_node_jobs_done_total", Help: "Jobs ended on the node, by outcome.",
		}, []string{"outcome"}),
		computations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drove_node_computations", Help: "Computations open on the node.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drove_node_result_streams", Help: "Clients connected for results.",
		}),
		blobBytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_node_blob_received_bytes_total", Help: "Bytes of blobs received and stored (a refused upload does not count).",
		}),
		blobBytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_node_blob_sent_bytes_total", Help: "Bytes of blobs sent.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drove_node_refused_requests_total", Help: "Requests refused for authentication.",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drove_node_connections", Help: "TCP connections open.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drove_node_dropped_connections_total",
			Help: "TCP connections closed by the node's bounds, by reason: bound (had not authenticated, closed to make room), unauth (did not authenticate in time), refuse (new one refused: every one at the bound had authenticated).",
		}, []string{"reason"}),
	}
	// A client acknowledges the events it received with its next
	// heartbeat: a count that stays up means a client that is slow, away,
	// or gone.
	unackedEvents := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drove_node_unacked_events",
		Help: "Events (job started, results, files) held for clients that have not acknowledged them yet.",
	}, unacked)
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drove_node_jobs_queued",
		Help: "Jobs received and not yet handed to where they run (on a scheduler: to a node).",
	}, func() float64 { q, _ := jobs(); return float64(q) })
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "drove_node_jobs_running",
		Help: "Jobs handed to where they run and not ended (queued ahead at workers or nodes included).",
	}, func() float64 { _, r := jobs(); return float64(r) })
	m.reg.MustRegister(unackedEvents, queued, running, m.jobsHanded, m.jobsStarted, m.jobsDone, m.computations, m.streams, m.blobBytesIn, m.blobBytesOut, m.authFailures, m.conns, m.dropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.jobs = dmetrics.NewJobs(m.reg)
	return m
}

// MetricsRegisterer is implemented by Machines that have metrics of their
// own (a scheduler's: blob bytes sent to its nodes, heartbeats they
// missed): New registers them on the daemon's registry.
type MetricsRegisterer interface {
	RegisterMetrics(reg prometheus.Registerer)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
