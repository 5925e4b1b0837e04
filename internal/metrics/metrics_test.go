package metrics_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/promtest"
)

// exec runs each task for 10 ms and fails those whose ID is 5 modulo 6,
// after they ran 10 ms.
type exec struct {
	s  *sched.Scheduler
	wg sync.WaitGroup
}

func (e *exec) Start(r *sched.Run) {
	e.wg.Go(func() {
		res := sched.Result{Outcome: sched.OK, Start: time.Now(), Sent: 100, Received: 10}
		time.Sleep(10 * time.Millisecond)
		if r.Task.ID%6 == 5 {
			res.Outcome, res.Err = sched.Failed, errors.New("fails")
		}
		res.End = time.Now()
		e.s.Done(r, res)
	})
}

func (e *exec) Cancel(*sched.Run) {}

func (e *exec) Close(context.Context) error { e.wg.Wait(); return nil }

// TestJobs drives a scheduler with Jobs as its observer and checks every
// metric against what it did: 20 tasks (3 fail, one retried once) on two
// nodes, one cancelled while queued, a node down, one given up, the rest
// closed with the scheduler.
func TestJobs(t *testing.T) {
	reg := prometheus.NewRegistry()
	j := metrics.NewJobs(reg)
	s := sched.New(sched.Config{Observer: j})
	j.Bind(s)
	get := func(name string, labels ...string) float64 {
		return promtest.Gather(t, reg).Get(name, labels...)
	}

	// Queued with no node: pending, then cancelled.
	queued := &sched.Task{ID: 100}
	if err := s.Submit(t.Context(), queued); err != nil {
		t.Fatal(err)
	}
	if got := get("drove_jobs_pending"); got != 1 {
		t.Errorf("drove_jobs_pending = %v with one task queued, want 1", got)
	}
	s.Cancel(queued)

	for _, n := range []string{"a", "b", "c"} {
		if err := s.AddNode(n, 2, &exec{s: s}); err != nil {
			t.Fatal(err)
		}
	}
	if got := get("drove_nodes", "state", "up"); got != 3 {
		t.Errorf("drove_nodes{up} = %v, want 3", got)
	}
	for i := range 20 {
		tk := &sched.Task{ID: int64(i)}
		if i == 5 {
			tk.Retries = 1 // fails twice: two dispatches, one job
		}
		if err := s.Submit(t.Context(), tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.NodeDown("b", errors.New("gone silent"))
	s.ReportNode(sched.NodeEvent{Node: "c", Kind: sched.NodeUnreachable})
	m := promtest.Gather(t, reg)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"drove_jobs_total", []string{"status", "finished"}, 17},
		{"drove_jobs_total", []string{"status", "terminated"}, 3},
		{"drove_jobs_total", []string{"status", "cancelled"}, 1},
		{"drove_jobs_total", []string{"status", "abandoned"}, 0},
		{"drove_job_run_seconds", nil, 20},                        // the cancelled one never ran
		{"drove_job_queue_wait_seconds", nil, 21},                 // every start, the retry's too
		{"drove_jobs_dispatched_total", nil, 21},                  // likewise
		{"drove_job_sent_bytes_total", nil, 21 * 100},             // every run's
		{"drove_job_received_bytes_total", nil, 21 * 10},          // likewise
		{"drove_jobs_pending", nil, 0},                            // all ended
		{"drove_jobs_running", nil, 0},                            // likewise
		{"drove_nodes", []string{"state", "up"}, 1},               // a
		{"drove_nodes", []string{"state", "lost"}, 2},             // b down, c unreachable
		{"drove_nodes_lost_total", nil, 1},                        // b: c was not lost, only unreachable
		{"drove_jobs_dispatched_total", []string{"node", "x"}, 0}, // no such node
	} {
		if got := m.Get(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if mf := m["drove_job_run_seconds"]; mf != nil {
		if sum := mf.GetMetric()[0].GetHistogram().GetSampleSum(); sum < 20*0.010 {
			t.Errorf("drove_job_run_seconds_sum = %v, want at least 20 runs of 10 ms", sum)
		}
	}

	s.ReportNode(sched.NodeEvent{Node: "b", Kind: sched.NodeGone})
	if got := get("drove_nodes", "state", "lost"); got != 1 {
		t.Errorf("drove_nodes{lost} = %v after b was given up, want 1", got)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := get("drove_nodes", "state", "up"); got != 0 {
		t.Errorf("drove_nodes{up} = %v after Close, want 0", got)
	}
}

// TestLinks checks that a nil *Links counts nothing and does not
// panic, and that BlobsOnly leaves heartbeats out.
func TestLinks(t *testing.T) {
	var none *metrics.Links
	none.BlobSent(1)
	none.BlobReceived(1)
	none.HeartbeatMiss()
	if none.BlobsOnly() != nil {
		t.Error("BlobsOnly of nil is not nil")
	}
	reg := prometheus.NewRegistry()
	l := metrics.NewLinks(reg)
	l.BlobSent(1000)
	l.BlobReceived(10)
	l.HeartbeatMiss()
	b := l.BlobsOnly()
	b.BlobSent(24)
	b.HeartbeatMiss()
	m := promtest.Gather(t, reg)
	for name, want := range map[string]float64{
		"drove_blob_sent_bytes_total":     1024,
		"drove_blob_received_bytes_total": 10,
		"drove_heartbeat_misses_total":    1,
	} {
		if got := m.Get(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
