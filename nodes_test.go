package drove_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// startNodes runs a real drove node process per name on loopback ports,
// with 2 CPUs each, and returns their addresses.
func startNodes(t *testing.T, names ...string) []string {
	t.Helper()
	bin := nodetest.Build(t)
	var addrs []string
	for _, name := range names {
		addrs = append(addrs, nodetest.StartProcess(t, bin, nil, "--name", name, "--cpus", "2").Addr)
	}
	return addrs
}

func nodeCluster(t *testing.T, nodes ...string) *drove.Cluster[int, int] {
	t.Helper()
	c, err := drove.NewCluster(t.Context(), square, drove.WithNodes(nodes...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func stat[In, Out any](c *drove.Cluster[In, Out], name string) (drove.NodeStats, bool) {
	for _, n := range c.Stats().Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return drove.NodeStats{}, false
}

func TestClusterOfNodes(t *testing.T) {
	nodes := startNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	c := nodeCluster(t, a, b)
	ctx := t.Context()
	var jobs []*drove.Job[int]
	for i := range 40 {
		j, err := c.Submit(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	for i, j := range jobs {
		if r, err := j.Result(ctx); err != nil || r != i*i {
			t.Fatalf("job %d: %d %v", i, r, err)
		}
	}
	for _, n := range []string{"a", "b"} {
		st, ok := stat(c, n)
		if !ok || st.CPUs != 2 || st.Jobs == 0 || st.Sent == 0 || st.Received == 0 {
			t.Errorf("node %s: %+v", n, st)
		}
	}

	// A deallocated node takes no new jobs; allocated again, it does.
	if err := c.DeallocateNode("a"); err != nil {
		t.Fatal(err)
	}
	before, _ := stat(c, "a")
	for i := range 20 {
		j, err := c.Submit(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Result(ctx); err != nil {
			t.Fatal(err)
		}
		if j.Node() != "b" {
			t.Fatalf("job ran on %s while a was deallocated", j.Node())
		}
	}
	if after, _ := stat(c, "a"); after.Jobs != before.Jobs {
		t.Errorf("deallocated node ran jobs")
	}
	if err := c.AllocateNode("a"); err != nil {
		t.Fatal(err)
	}
	j, err := c.Submit(ctx, 7, drove.OnNode("a"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.Result(ctx); err != nil || r != 49 || j.Node() != "a" {
		t.Fatalf("pinned job: %d %v on %s", r, err, j.Node())
	}
	if err := c.SetNodeCPUs("b", 1); err != nil {
		t.Fatal(err)
	}
	if st, _ := stat(c, "b"); st.CPUs != 1 {
		t.Errorf("SetNodeCPUs: %+v", st)
	}
	if err := c.SetNodeCPUs("nope", 1); err == nil {
		t.Error("SetNodeCPUs of an unknown node")
	}
	if err := c.SetNodeCPUs("b", 3); err == nil || !strings.Contains(err.Error(), "granted this cluster 2 CPUs") {
		t.Errorf("SetNodeCPUs beyond what the node granted: %v", err)
	}
	if st, _ := stat(c, "b"); st.CPUs != 1 {
		t.Errorf("refused SetNodeCPUs changed the node: %+v", st)
	}
	if err := c.CloseNode(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if _, ok := stat(c, "a"); ok {
		t.Error("closed node still listed")
	}
	if _, err := c.Submit(ctx, 1, drove.OnNode("a")); err == nil {
		t.Error("job pinned to a closed node accepted")
	}
	j, err = c.Submit(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.Result(ctx); err != nil || r != 9 {
		t.Fatal(r, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClusterOfNodesUnreachable(t *testing.T) {
	c, err := drove.NewCluster(t.Context(), square, drove.WithNodes("127.0.0.1:1"))
	if err == nil {
		c.Close(context.Background())
		t.Fatal("a cluster whose only node is unreachable was created")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error does not name the node: %v", err)
	}
}

// TestClusterNodeJobs: NodeJobs lists the jobs running on a node, and
// none once they are done or for a node the cluster does not have.
func TestClusterNodeJobs(t *testing.T) {
	a := startNodes(t, "a")[0]
	c, err := drove.NewCluster(t.Context(), sleep, drove.WithNodes(a))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := t.Context()
	var jobs []*drove.Job[time.Duration]
	for range 2 {
		j, err := c.Submit(ctx, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	deadline := time.Now().Add(10 * time.Second)
	for jobs[0].Status() != drove.Running || jobs[1].Status() != drove.Running {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not running: %v %v", jobs[0].Status(), jobs[1].Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := map[int64]bool{}
	for _, j := range c.NodeJobs("a") {
		got[j.ID()] = true
	}
	if len(got) != 2 || !got[jobs[0].ID()] || !got[jobs[1].ID()] {
		t.Errorf("NodeJobs(a) = %v, want jobs %d and %d", got, jobs[0].ID(), jobs[1].ID())
	}
	if js := c.NodeJobs("nope"); len(js) != 0 {
		t.Errorf("NodeJobs of an unknown node: %d jobs", len(js))
	}
	for _, j := range jobs {
		if _, err := j.Result(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if js := c.NodeJobs("a"); len(js) != 0 {
		t.Errorf("NodeJobs(a) after the jobs ended: %d jobs", len(js))
	}
}

func TestClusterDiscoverAndSecret(t *testing.T) {
	a := startSecretNode(t, "a", "k1")
	b := startSecretNode(t, "b", "k1")
	c, err := drove.NewCluster(t.Context(), square, drove.WithNodes(a), drove.WithSecret("k1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.DiscoverNodes(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	ns := c.Status().Nodes
	if len(ns) != 2 || !ns[0].Up || !ns[1].Up || ns[0].CPUs != 2 {
		t.Fatalf("nodes %+v", ns)
	}
	if _, err := drove.NewCluster(t.Context(), square, drove.WithNodes(a), drove.WithSecret("wrong")); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Errorf("wrong secret: %v", err)
	}
}

func startSecretNode(t *testing.T, name, secret string) string {
	t.Helper()
	n, err := node.New(node.Config{Hosts: []string{"127.0.0.1"}, Name: name, Dir: t.TempDir(), CPUs: 2, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n.Addr().String()
}

// freeze stops a process with SIGSTOP as a hung node would be: its kernel
// still accepts connections, nothing answers. It is resumed at the end of
// the test at the latest, before the cleanups that stop it.
func freeze(t *testing.T, p *os.Process) (resume func()) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume = func() {
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	return resume
}

// TestClusterFrozenNodeAtStart: a node frozen (SIGSTOP) before the cluster
// starts does not hold it up: NewCluster returns after the connect timeout
// with the node that answered, jobs run there, and the frozen node joins
// once it is resumed.
func TestClusterFrozenNodeAtStart(t *testing.T) {
	bin := nodetest.Build(t)
	a := nodetest.StartProcess(t, bin, nil, "--name", "a", "--cpus", "2")
	b := nodetest.StartProcess(t, bin, nil, "--name", "b", "--cpus", "2")
	resume := freeze(t, b.Cmd.Process)

	events := make(chan drove.NodeEvent, 16)
	ctx := t.Context()
	c, err := drove.NewCluster(ctx, square, drove.WithNodes(a.Addr, b.Addr),
		drove.WithConnectTimeout(time.Second),
		drove.OnNodeStatus(func(ev drove.NodeEvent) {
			select {
			case events <- ev:
			default: // only b joining matters, and it comes early
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	for i := range 10 {
		j, err := c.Submit(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := j.Result(ctx); err != nil || r != i*i || j.Node() != "a" {
			t.Fatalf("job %d: %d %v on %q", i, r, err, j.Node())
		}
	}
	var slow drove.NodeInfo
	for _, n := range c.Status().Nodes {
		if n.Addr == b.Addr {
			slow = n
		}
	}
	if slow.Up || !errors.Is(slow.Err, context.DeadlineExceeded) {
		t.Errorf("frozen node's status: %+v", slow)
	}

	resume()
	for ev := range events {
		if ev.Node == "b" && ev.Status == drove.NodeInitialized {
			break
		}
	}
	j, err := c.Submit(ctx, 7, drove.OnNode("b"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.Result(ctx); err != nil || r != 49 {
		t.Fatalf("job on the resumed node: %d %v", r, err)
	}
}

// TestClusterCloseClosesLostNode: closing a cluster closes its computation
// on a node it had declared lost, here a frozen (SIGSTOP) node resumed
// while the cluster closes: the node drops the computation and its warm
// workers at once instead of after its zombie interval.
func TestClusterCloseClosesLostNode(t *testing.T) {
	bin := nodetest.Build(t)
	a := nodetest.StartProcess(t, bin, nil, "--name", "a", "--cpus", "2")
	lost := make(chan struct{}, 1)
	ctx := t.Context()
	c, err := drove.NewCluster(ctx, square, drove.WithNodes(a.Addr), drove.WithHeartbeat(50*time.Millisecond, 3),
		drove.OnNodeStatus(func(ev drove.NodeEvent) {
			if ev.Status == drove.NodeLost {
				select {
				case lost <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	j, err := c.Submit(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.Result(ctx); err != nil || r != 9 {
		t.Fatalf("job: %d %v", r, err)
	}
	computations := func() int32 {
		t.Helper()
		info, err := nodeexec.Info(ctx, nodeexec.NewHTTPClient("", nil), a.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		return info.Computations
	}
	if n := computations(); n != 1 {
		t.Fatalf("node has %d computations, want 1", n)
	}

	resume := freeze(t, a.Cmd.Process)
	<-lost
	// The node resumes while the cluster closes.
	resumed := time.AfterFunc(200*time.Millisecond, resume)
	defer resumed.Stop()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := computations(); n != 0 {
		t.Errorf("node still has %d computations of the closed cluster", n)
	}
}

// TestNodeConnError: errors.As tells a node that cannot be reached, or that
// died under a running job, from a job that failed: their errors are
// *drove.NodeConnError with the node's address, a failed job's is not.
func TestNodeConnError(t *testing.T) {
	ctx := t.Context()
	bin := nodetest.Build(t)

	// Unreachable at start: a node process that was killed.
	dead := nodetest.StartProcess(t, bin, nil, "--name", "dead")
	if err := dead.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	dead.Done <- <-dead.Done // exited; left for the cleanup that waits for it
	c, err := drove.NewCluster(ctx, square, drove.WithNodes(dead.Addr))
	if err == nil {
		c.Close(context.Background())
		t.Fatal("a cluster whose only node is dead was created")
	}
	var ce *drove.NodeConnError
	if !errors.As(err, &ce) || ce.Addr != dead.Addr {
		t.Errorf("NewCluster with a dead node: %v, want a *NodeConnError for %s", err, dead.Addr)
	}

	// Killed under a running job.
	a := nodetest.StartProcess(t, bin, nil, "--name", "a", "--cpus", "1")
	lost := make(chan drove.NodeEvent, 1)
	cl, err := drove.NewCluster(ctx, sleep, drove.WithNodes(a.Addr), drove.WithHeartbeat(50*time.Millisecond, 3),
		drove.OnNodeStatus(func(ev drove.NodeEvent) {
			if ev.Status == drove.NodeLost {
				select {
				case lost <- ev:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close(context.Background()) })
	j, err := cl.Submit(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, j, drove.Running)
	if err := a.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var ev drove.NodeEvent
	select {
	case ev = <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("killed node not reported lost within 30s")
	}
	ce = nil
	if !errors.As(ev.Err, &ce) || ce.Addr != a.Addr {
		t.Errorf("NodeLost event error %v, want a *NodeConnError for %s", ev.Err, a.Addr)
	}
	_, err = j.Result(ctx)
	ce = nil
	if !errors.Is(err, drove.ErrNodeLost) || !errors.As(err, &ce) || ce.Addr != a.Addr {
		t.Errorf("job on the killed node: %v, want ErrNodeLost and a *NodeConnError for %s", err, a.Addr)
	}

	// A job that fails is no node's fault.
	b := nodetest.StartProcess(t, bin, nil, "--name", "b", "--cpus", "1")
	fj, err := drove.NewCluster(ctx, fail, drove.WithNodes(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fj.Close(context.Background()) })
	job, err := fj.Submit(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Result(ctx); err == nil || errors.As(err, new(*drove.NodeConnError)) {
		t.Errorf("failed job: %v, want an error that is no *NodeConnError", err)
	}
}

// TestClusterUnreachableNodeReported: a listed node that cannot be reached
// is not dropped silently: OnNodeStatus gets NodeLost for it, with why,
// and Stats and Status have a row for it, lost and not up.
func TestClusterUnreachableNodeReported(t *testing.T) {
	addrs := startNodes(t, "up")
	const dead = "127.0.0.1:1" // nothing listens on port 1 of loopback
	lost := make(chan drove.NodeEvent, 1)
	c := newCluster(t, square, drove.WithNodes(addrs[0], dead), drove.OnNodeStatus(func(ev drove.NodeEvent) {
		if ev.Node == dead && ev.Status == drove.NodeLost {
			select {
			case lost <- ev:
			default:
			}
		}
	}))
	select {
	case ev := <-lost:
		if ev.Err == nil {
			t.Errorf("NodeLost for %s without an error", dead)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no NodeLost event for %s", dead)
	}
	var row *drove.NodeStats
	for _, n := range c.Stats().Nodes {
		if n.Name == dead {
			row = &n
		}
	}
	if row == nil || !row.Lost {
		t.Errorf("Stats row of %s: %+v, want one marked lost (all: %+v)", dead, row, c.Stats().Nodes)
	}
	found := false
	for _, n := range c.Status().Nodes {
		if n.Addr == dead {
			found = true
			if n.Up || n.Err == nil || n.Name != dead {
				t.Errorf("Status of %s: %+v, want not up, with why, named by its address", dead, n)
			}
		}
	}
	if !found {
		t.Errorf("Status has no row for %s: %+v", dead, c.Status().Nodes)
	}
}

// TestClusterDiscoverTimeout: with WithDiscoverTimeout, a pattern that
// finds no node makes NewCluster fail with ErrNoNodeFound, naming the
// port it pinged, after about the timeout.
func TestClusterDiscoverTimeout(t *testing.T) {
	l, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.LocalAddr().(*net.UDPAddr).Port)
	defer l.Close() // nothing answers pings there
	begin := time.Now()
	_, err = drove.NewCluster(t.Context(), square, drove.WithNodes("*:"+port), drove.WithSecret("no-such-cluster"),
		drove.WithDiscoverTimeout(time.Second))
	if !errors.Is(err, drove.ErrNoNodeFound) || !strings.Contains(err.Error(), ":"+port) {
		t.Fatalf("NewCluster: %v, want ErrNoNodeFound naming port %s", err, port)
	}
	if took := time.Since(begin); took < time.Second || took > time.Minute {
		t.Errorf("failed after %v, want about 1s", took)
	}
}
