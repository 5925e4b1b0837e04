package parallel

import (
	"context"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/promtest"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestMetrics runs 20 commands, 3 of which exit non-zero, on two SSH
// hosts and checks drove run's registry against them: commands by how
// they ended, run-time histogram, dispatches to each host, hosts up while
// it ran (each got commands) and none after.
func TestMetrics(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	pool, err := sshconn.NewPool(sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	var args []string
	for i := range 20 {
		args = append(args, strconv.Itoa(i))
	}
	sum, err := Run(context.Background(), Config{
		Template: "exit $(( {} % 6 == 5 ))",
		Sources:  []Source{{Args: args}},
		Logins:   []hostset.Login{{Host: s.Aliases[0], Slots: 2}, {Host: s.Aliases[1], Slots: 2}},
		Pool:     pool,
		Metrics:  NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Jobs != 20 || sum.Failed != 3 {
		t.Fatalf("summary %+v, want 20 jobs of which 3 failed", sum)
	}
	m := promtest.Gather(t, reg)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"drove_jobs_total", []string{"status", "finished"}, 17},
		{"drove_jobs_total", []string{"status", "terminated"}, 3},
		{"drove_jobs_total", []string{"status", "abandoned"}, 0},
		{"drove_job_run_seconds", nil, 20},
		{"drove_job_queue_wait_seconds", nil, 20},
		{"drove_jobs_dispatched_total", nil, 20},
		{"drove_jobs_pending", nil, 0},
		{"drove_jobs_running", nil, 0},
		{"drove_nodes_lost_total", nil, 0},
		// Closed with the run.
		{"drove_nodes", []string{"state", "up"}, 0},
		{"drove_nodes", []string{"state", "lost"}, 0},
	} {
		if got, found := m.Value(c.name, c.labels...); !found || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, found, c.want)
		}
	}
	for _, h := range s.Aliases[:2] {
		if got := m.Get("drove_jobs_dispatched_total", "node", h); got == 0 {
			t.Errorf("no command dispatched to host %s", h)
		}
	}
}
