package drove

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/testutil/promtest"
)

// failSome fails for inputs that are 5 modulo 6: 3 of 0..19.
var failSome = Func("test.metrics.failsome", func(ctx context.Context, n int) (int, error) {
	if n%6 == 5 {
		return 0, fmt.Errorf("%d fails", n)
	}
	return n * n, nil
})

const (
	metricJobs   = 20
	metricFailed = 3 // of failSome's inputs 0..19
)

// runFailSome runs failSome on 0..19 on c and checks that exactly the
// expected ones failed.
func runFailSome(t *testing.T, c *Cluster[int, int]) {
	t.Helper()
	var jobs []*Job[int]
	for i := range metricJobs {
		j, err := c.Submit(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	failed := 0
	for _, j := range jobs {
		if _, err := j.Result(t.Context()); err != nil {
			failed++
		}
	}
	if failed != metricFailed {
		t.Fatalf("%d jobs failed, want %d", failed, metricFailed)
	}
}

// executableSize is the size of the client's executable, which a Go
// function computation ships to every node.
func executableSize(t *testing.T) float64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	return float64(fi.Size())
}

// checkJobMetrics checks the job metrics every user of the core has
// against failSome's run: what the client saw, what a node or a
// scheduler ran.
func checkJobMetrics(t *testing.T, who string, m promtest.Families) {
	t.Helper()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"drove_jobs_total", []string{"status", "finished"}, metricJobs - metricFailed},
		{"drove_jobs_total", []string{"status", "terminated"}, metricFailed},
		{"drove_jobs_total", []string{"status", "cancelled"}, 0},
		{"drove_jobs_total", []string{"status", "abandoned"}, 0},
		{"drove_job_run_seconds", nil, metricJobs},
		{"drove_job_queue_wait_seconds", nil, metricJobs},
		{"drove_jobs_pending", nil, 0},
		{"drove_jobs_running", nil, 0},
	} {
		got, found := m.Value(c.name, c.labels...)
		if !found || got != c.want {
			t.Errorf("%s: %s%v = %v (found %v), want %v", who, c.name, c.labels, got, found, c.want)
		}
	}
	// A run queued ahead at a worker and given back unstarted (taken by
	// another worker that ran dry) is dispatched again.
	if got := m.Get("drove_jobs_dispatched_total"); got < metricJobs || got > 2*metricJobs {
		t.Errorf("%s: drove_jobs_dispatched_total = %v, want %d or a few more", who, got, metricJobs)
	}
	for name, typ := range map[string]string{
		"drove_jobs_total": "counter", "drove_jobs_dispatched_total": "counter",
		"drove_job_run_seconds": "histogram", "drove_job_queue_wait_seconds": "histogram",
		"drove_jobs_pending": "gauge", "drove_jobs_running": "gauge", "drove_nodes": "gauge",
	} {
		if got := m.Type(name); got != typ {
			t.Errorf("%s: %s is a %q, want %s", who, name, got, typ)
		}
	}
}

// waitMetrics scrapes addr until ok holds, for at most a minute, and
// returns the last scrape.
func waitMetrics(t *testing.T, addr, what string, ok func(promtest.Families) bool) promtest.Families {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		m, err := promtest.TryScrape(addr)
		if err == nil && ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute (last error %v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func done(m promtest.Families) bool {
	return m.Get("drove_jobs_total") == metricJobs && m.Get("drove_jobs_pending") == 0 && m.Get("drove_jobs_running") == 0
}

// TestMetricsNodeAndClient runs 20 jobs, 3 of which fail, on a real drove
// node process and checks the node's /metrics, scraped over HTTP, and the
// client's registry against them.
func TestMetricsNodeAndClient(t *testing.T) {
	bin := nodetest.Build(t)
	p := nodetest.StartProcess(t, bin, nil, "--cpus", "2")
	c, err := NewCluster(t.Context(), failSome, WithNodes(p.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	runFailSome(t, c)
	exe := executableSize(t)

	m := waitMetrics(t, p.Addr, "the node's jobs all ended", done)
	checkJobMetrics(t, "node", m)
	if got := m.Get("drove_node_blob_received_bytes_total"); got < exe {
		t.Errorf("node: drove_node_blob_received_bytes_total = %v, want at least the executable's %v", got, exe)
	}
	if got := m.Get("drove_nodes", "state", "up"); got != 1 {
		t.Errorf("node: drove_nodes{up} = %v, want 1 (this machine)", got)
	}
	if got := m.Get("drove_node_jobs_done_total"); got != metricJobs {
		t.Errorf("node: drove_node_jobs_done_total = %v, want %d", got, metricJobs)
	}

	cm := promtest.Gather(t, c.metricsReg)
	checkJobMetrics(t, "client", cm)
	for _, x := range []struct {
		name   string
		labels []string
		min    float64
		max    float64
	}{
		{"drove_nodes", []string{"state", "up"}, 1, 1},
		{"drove_nodes", []string{"state", "lost"}, 0, 0},
		{"drove_nodes_lost_total", nil, 0, 0},
		{"drove_jobs_dispatched_total", []string{"node", c.Stats().Nodes[0].Name}, metricJobs, 2 * metricJobs},
		{"drove_blob_sent_bytes_total", nil, exe, exe},
		{"drove_job_sent_bytes_total", nil, exe, 1 << 40},
		{"drove_job_received_bytes_total", nil, 1, 1 << 40},
		{"drove_heartbeat_misses_total", nil, 0, 0},
	} {
		if got, found := cm.Value(x.name, x.labels...); !found || got < x.min || got > x.max {
			t.Errorf("client: %s%v = %v (found %v), want in [%v, %v]", x.name, x.labels, got, found, x.min, x.max)
		}
	}
}

// TestMetricsScheduler runs 20 jobs, 3 of which fail, through a drove
// scheduler over two real drove node processes, and checks the
// scheduler's /metrics: jobs, nodes, dispatches to them, blob bytes
// shipped; then one node is stopped (SIGSTOP) and the scheduler counts its
// missed heartbeats and the node lost.
func TestMetricsScheduler(t *testing.T) {
	bin := nodetest.Build(t)
	a := nodetest.StartProcess(t, bin, nil, "--cpus", "2")
	b := nodetest.StartProcess(t, bin, nil, "--cpus", "2")
	s, _ := nodetest.StartScheduler(t, []string{a.Addr, b.Addr}, nil)
	addr := s.Addr().String()
	waitMetrics(t, addr, "both nodes up at the scheduler", func(m promtest.Families) bool {
		return m.Get("drove_nodes", "state", "up") == 2
	})
	c, err := NewCluster(t.Context(), failSome, WithScheduler(addr))
	if err != nil {
		t.Fatal(err)
	}
	runFailSome(t, c)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	exe := executableSize(t)

	m := waitMetrics(t, addr, "the scheduler's jobs all ended", done)
	checkJobMetrics(t, "scheduler", m)
	names := map[string]bool{}
	for _, mt := range m["drove_jobs_dispatched_total"].GetMetric() {
		for _, lp := range mt.GetLabel() {
			names[lp.GetValue()] = true
		}
	}
	if len(names) == 0 || len(names) > 2 {
		t.Errorf("scheduler: dispatched to nodes %v, want one or both of the two", names)
	}
	// Each node the computation was set up on got the executable from
	// the scheduler, and only that.
	if got := m.Get("drove_blob_sent_bytes_total"); got != exe && got != 2*exe {
		t.Errorf("scheduler: drove_blob_sent_bytes_total = %v, want the executable's %v once or twice", got, exe)
	}
	if got := m.Get("drove_node_blob_received_bytes_total"); got < exe {
		t.Errorf("scheduler: drove_node_blob_received_bytes_total = %v, want at least the executable's %v", got, exe)
	}
	if got := m.Get("drove_heartbeat_misses_total"); got != 0 {
		// Not an error on a loaded machine, but worth seeing.
		t.Logf("scheduler: %v heartbeats missed before any node was stopped", got)
	}

	// A stopped node answers nothing: the scheduler counts the intervals
	// it stays silent and then gives it up.
	if err := b.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer b.Cmd.Process.Signal(syscall.SIGCONT)
	before := m.Get("drove_heartbeat_misses_total")
	m = waitMetrics(t, addr, "the stopped node lost", func(m promtest.Families) bool {
		return m.Get("drove_nodes", "state", "lost") == 1
	})
	if got := m.Get("drove_heartbeat_misses_total"); got < before+1 {
		t.Errorf("scheduler: drove_heartbeat_misses_total = %v after a node stopped, want more than %v", got, before)
	}
	if got := m.Get("drove_nodes_lost_total"); got != 1 {
		t.Errorf("scheduler: drove_nodes_lost_total = %v, want 1", got)
	}
	if got := m.Get("drove_nodes", "state", "up"); got != 1 {
		t.Errorf("scheduler: drove_nodes{up} = %v, want 1", got)
	}
	// Woken, it is dialled again and up.
	if err := b.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, addr, "the woken node up again", func(m promtest.Families) bool {
		return m.Get("drove_nodes", "state", "up") == 2 && m.Get("drove_nodes", "state", "lost") == 0
	})
}
