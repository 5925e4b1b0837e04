package drove_test

import (
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/scheduler"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// TestSchedulerHungNode: a node of the scheduler that hangs (SIGSTOP: its
// kernel still accepts connections, nothing answers) holds up no client
// of the scheduler: each sets its computation up through the scheduler
// in less than its connect timeout and closes it at once, and jobs run
// on the node that answers.
func TestSchedulerHungNode(t *testing.T) {
	bin := nodetest.Build(t)
	a := nodetest.StartProcess(t, bin, nil, "--name", "a", "--cpus", "1")
	b := nodetest.StartProcess(t, bin, nil, "--name", "b", "--cpus", "1")
	sched, _ := nodetest.StartScheduler(t, []string{a.Addr, b.Addr}, func(_ *node.Config, mc *scheduler.Config) { mc.ConnectTimeout = 6 * time.Second })
	freeze(t, b.Cmd.Process)

	// The scheduler gives up setting a computation up on a node after
	// 6s, the client after 3s.
	open := func() *drove.Cluster[[]string, int] {
		t.Helper()
		c, err := drove.NewCluster(t.Context(), drove.Program("echo"), drove.WithScheduler(sched.Addr().String()), drove.WithConnectTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closeFast := func(c *drove.Cluster[[]string, int]) {
		t.Helper()
		start := time.Now()
		if err := c.Close(t.Context()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Close took %v", d)
		}
	}

	// Closed while the scheduler still waits for the hung node.
	closeFast(open())

	c := open()
	for i := range 4 {
		j := submit(t, c, []string{"hello"})
		if code, err := result(t, j); err != nil || code != 0 || string(j.Stdout()) != "hello\n" {
			t.Fatalf("job %d: exit %d, %v, stdout %q", i, code, err, j.Stdout())
		}
	}
	closeFast(c)
}
