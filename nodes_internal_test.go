package drove

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// startTestNode runs a node daemon in this process on a loopback port.
func startTestNode(t *testing.T, name string, mut func(*node.Config)) *node.Node {
	t.Helper()
	n, _ := nodetest.Start(t, func(c *node.Config) {
		c.Name = name
		if mut != nil {
			mut(c)
		}
	})
	return n
}

func squareTasks(t *testing.T, s *sched.Scheduler, n int) []*sched.Task {
	t.Helper()
	var ts []*sched.Task
	for i := range n {
		in, err := gobEncode(i)
		if err != nil {
			t.Fatal(err)
		}
		tk := &sched.Task{ID: int64(i), Input: in}
		if err := s.Submit(t.Context(), tk); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tk)
	}
	return ts
}

func checkSquares(t *testing.T, ts []*sched.Task) {
	t.Helper()
	for i, tk := range ts {
		if tk.State() != sched.Finished {
			t.Fatalf("task %d: %v %v", i, tk.State(), tk.Result().Err)
		}
		got, err := gobDecode[int](tk.Result().Output)
		if err != nil || got != i*i {
			t.Fatalf("task %d: %d %v", i, got, err)
		}
	}
}

func TestRemoteNodes(t *testing.T) {
	a := startTestNode(t, "a", nil)
	b := startTestNode(t, "b", nil)
	s := sched.New(sched.Config{})
	c := &Cluster[int, int]{fn: &Function[int, int]{name: "test.square"}, cfg: config{nodes: []string{a.Addr().String(), b.Addr().String()}}}
	rc := c.remoteConfig()
	rc.Heartbeat = 50 * time.Millisecond
	r, err := startRemoteNodes(t.Context(), s, rc)
	if err != nil {
		t.Fatal(err)
	}
	ts := squareTasks(t, s, 200)
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkSquares(t, ts)
	st := s.Stats()
	if len(st.Nodes) != 2 || st.Nodes[0].Jobs == 0 || st.Nodes[1].Jobs == 0 {
		t.Errorf("jobs not spread over both nodes: %+v", st.Nodes)
	}
	ns := r.status()
	if len(ns) != 2 {
		t.Fatalf("status %+v", ns)
	}
	for _, n := range ns {
		if !n.Up || n.CPUs != 2 || n.MemoryAvailable == 0 || n.DiskAvailable == 0 || (n.Name != "a" && n.Name != "b") {
			t.Errorf("node status %+v", n)
		}
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.close()
}

func TestRemoteNodesUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	_, err = startRemoteNodes(t.Context(), s, remoteConfig{Nodes: []string{addr}, Func: "test.square"})
	if err == nil {
		t.Fatal("no error for an unreachable node")
	}
	t.Log(err)
}

func TestRemoteNodesDiscovery(t *testing.T) {
	n := startTestNode(t, "disc", func(c *node.Config) {
		c.Discovery = true
		c.Secret = "cluster-1"
		c.AnnounceTo = []*net.UDPAddr{}
	})
	// A node of another cluster on the same LAN never joins.
	other := startTestNode(t, "other", func(c *node.Config) {
		c.Discovery = true
		c.Secret = "cluster-2"
		c.AnnounceTo = []*net.UDPAddr{}
	})
	port := n.Addr().(*net.TCPAddr).Port
	oport := other.Addr().(*net.TCPAddr).Port
	s := sched.New(sched.Config{})
	r, err := startRemoteNodes(t.Context(), s, remoteConfig{
		Nodes:  []string{"127.0.0.*"},
		Secret: "cluster-1",
		Func:   "test.square",
		Discovery: discovery.ClientConfig{
			Targets:    []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: port}, {IP: net.IPv4(127, 0, 0, 1), Port: oport}},
			Wait:       300 * time.Millisecond,
			ListenAddr: "127.0.0.1:0",
		},
		Heartbeat: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if len(st.Nodes) != 1 || st.Nodes[0].Name != "disc" {
		t.Fatalf("discovered %+v, want node disc only", st.Nodes)
	}
	ts := squareTasks(t, s, 10)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkSquares(t, ts)
	r.close()
}

// TestRemoteNodeRestart: a node that stops is reported down; started again
// on its address, running clients pick it up again.
func TestRemoteNodeRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := func(port int) node.Config {
		return node.Config{Hosts: []string{"127.0.0.1"}, Port: port, Name: "phoenix", Dir: dir, CPUs: 1, PingInterval: 50 * time.Millisecond}
	}
	run := func(n *node.Node) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	n1, err := node.New(cfg(0))
	if err != nil {
		t.Fatal(err)
	}
	port := n1.Addr().(*net.TCPAddr).Port
	stop1 := run(n1)
	s := sched.New(sched.Config{Reentrant: true})
	defer s.Close(context.Background())
	r, err := startRemoteNodes(t.Context(), s, remoteConfig{
		Nodes: []string{n1.Addr().String()}, Func: "test.square",
		Heartbeat: 50 * time.Millisecond, Misses: 3, Retry: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	stop1()
	waitFor(t, func() bool { st := s.Stats(); return len(st.Nodes) == 1 && st.Nodes[0].Down })
	ts := squareTasks(t, s, 5) // queued while no node is up
	n2, err := node.New(cfg(port))
	if err != nil {
		t.Fatal(err)
	}
	defer run(n2)()
	waitFor(t, func() bool { st := s.Stats(); return len(st.Nodes) == 1 && !st.Nodes[0].Down })
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkSquares(t, ts)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPermanent(t *testing.T) {
	a := startTestNode(t, "sec", func(c *node.Config) { c.Secret = "k" })
	s := sched.New(sched.Config{})
	defer s.Close(context.Background())
	_, err := startRemoteNodes(t.Context(), s, remoteConfig{Nodes: []string{a.Addr().String()}, Secret: "wrong", Func: "test.square"})
	if err == nil || !nodeexec.Permanent(err) {
		t.Errorf("wrong secret not permanent: %v", err)
	}
	_, err = startRemoteNodes(t.Context(), s, remoteConfig{Nodes: []string{"127.0.0.1:1"}, Func: "test.square"})
	if err == nil || nodeexec.Permanent(err) {
		t.Errorf("unreachable node permanent: %v", err)
	}
}

// TestDiscoverNodesPattern: DiscoverNodes with a pattern adds the nodes
// that answer discovery and match it, and only those.
func TestDiscoverNodesPattern(t *testing.T) {
	a := startTestNode(t, "a", func(c *node.Config) { c.Secret = "k" })
	// b listens on 127.0.0.2 only, and answers discovery with that
	// address although the ping reaches it on 127.0.0.1.
	b := startTestNode(t, "b", func(c *node.Config) {
		c.Hosts = []string{"127.0.0.2"}
		c.Discovery = true
		c.Secret = "k"
		c.AnnounceTo = []*net.UDPAddr{}
	})
	s := sched.New(sched.Config{})
	defer s.Close(context.Background())
	r, err := startRemoteNodes(t.Context(), s, remoteConfig{
		Nodes:  []string{a.Addr().String()},
		Secret: "k",
		Func:   "test.square",
		Discovery: discovery.ClientConfig{
			Targets: []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: b.Addr().(*net.TCPAddr).Port}},
			Wait:    300 * time.Millisecond,
		},
		Heartbeat: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	c := &Cluster[int, int]{remote: r}
	names := func() []string {
		var out []string
		for _, n := range c.remote.status() {
			out = append(out, n.Name)
		}
		return out
	}
	// b answers, but from an address the pattern does not match.
	if err := c.DiscoverNodes(t.Context(), "10.*"); err != nil {
		t.Fatal(err)
	}
	if got := names(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after DiscoverNodes(10.*): %v, want only a", got)
	}
	if err := c.DiscoverNodes(t.Context(), "127.0.0.2"+":*"); err != nil {
		t.Fatal(err)
	}
	if got := names(); len(got) != 2 || got[1] != "b" {
		t.Fatalf("after DiscoverNodes(127.0.0.2:*): %v, want a and b", got)
	}
	if st := s.Stats(); len(st.Nodes) != 2 {
		t.Errorf("scheduler nodes %+v, want 2", st.Nodes)
	}
}
