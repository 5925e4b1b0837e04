package nodeexec_test

import (
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// proxy forwards TCP connections to a node and can cut the link: every
// connection is dropped and new ones are refused until it is restored.
type proxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.cut.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) Cut()     { p.cut.Store(true); p.drop() }
func (p *proxy) Restore() { p.cut.Store(false) }

// TestLinkCut cuts the link to the node while jobs run and finish: the
// node keeps their results (on disk while the client is away) and delivers
// them when the link is back; every job ends exactly once and none is lost.
func TestLinkCut(t *testing.T) {
	n := startNode(t, nil)
	px := newProxy(t, n.addr)
	var mu sync.Mutex
	finals := map[int64]int{}
	s := sched.New(sched.Config{OnTask: func(ev sched.TaskEvent) {
		if ev.State.Final() {
			mu.Lock()
			finals[ev.Task.ID]++
			mu.Unlock()
		}
	}})
	dial(t, s, nodeexec.Config{Addr: px.ln.Addr().String(), Heartbeat: 100 * time.Millisecond, Misses: 30}, funcComp(t, "sleep"))
	ts := submit(t, s, 60, func(i int) []byte { return enc(15) })
	time.Sleep(100 * time.Millisecond)
	px.Cut()
	time.Sleep(time.Second) // the node finishes the jobs it holds meanwhile
	if d := spooled(t, n); d == 0 {
		t.Error("no events spooled to disk while the client was away")
	}
	px.Restore()
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts {
		if tk.State() != sched.Finished {
			t.Errorf("task %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range finals {
		if c != 1 {
			t.Errorf("task %d ended %d times", id, c)
		}
	}
	if len(finals) != len(ts) {
		t.Errorf("%d tasks ended, want %d", len(finals), len(ts))
	}
	if s.Stats().Nodes[0].Down {
		t.Error("node declared down for a cut shorter than its heartbeat allowance")
	}
}

// TestTwoClients runs two clients' computations on one 2-CPU node at once
// (dispy serves one at a time): both get all their results, their jobs run
// at the same time, and the node splits its CPUs between them: never more
// than its 2 jobs at once in all, one each while both have work.
func TestTwoClients(t *testing.T) {
	const cpus = 2
	n := nodetest.StartProcess(t, nodetest.Build(t), nil, "--cpus", strconv.Itoa(cpus)) // a real drove node process
	const jobs, ms = 8, 150
	scheds := make([]*sched.Scheduler, 2)
	for c := range scheds {
		scheds[c] = sched.New(sched.Config{})
		dial(t, scheds[c], nodeexec.Config{Addr: n.Addr, ClientID: []string{"alice", "bob"}[c]}, funcComp(t, "sleep"))
	}
	tasks := make([][]*sched.Task, 2)
	var wg sync.WaitGroup
	for c := range scheds {
		wg.Go(func() {
			tasks[c] = submit(t, scheds[c], jobs, func(i int) []byte { return enc(ms) })
			if err := scheds[c].Close(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	type edge struct {
		at     time.Time
		client int
		delta  int
	}
	var edges []edge
	for c, ts := range tasks {
		for i, tk := range ts {
			r := tk.Result()
			if tk.State() != sched.Finished || u64(r.Output) != ms {
				t.Fatalf("client %d task %d: %v %v", c, i, tk.State(), r.Err)
			}
			edges = append(edges, edge{r.Start, c, +1}, edge{r.End, c, -1})
		}
	}
	// Sweep the jobs' start and end times (taken on the node's machine):
	// how many ran at once, and for how long both clients had one running.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	var running [2]int
	var both time.Duration
	most := 0
	for i, e := range edges {
		running[e.client] += e.delta
		most = max(most, running[0]+running[1])
		if i+1 < len(edges) && running[0] > 0 && running[1] > 0 {
			both += edges[i+1].at.Sub(e.at)
		}
	}
	t.Logf("both clients running for %v; at most %d jobs at once", both, most)
	if most > cpus {
		t.Errorf("%d jobs ran at once on a node of %d CPUs", most, cpus)
	}
	// 16 jobs of 150 ms on 2 CPUs take 1.2 s; the first client alone gets
	// a head start and the last one a tail, so about 600 ms have both.
	// One client after the other would have none.
	if both < 2*ms*time.Millisecond {
		t.Errorf("both clients had jobs running for only %v: the node did not serve them at the same time", both)
	}
}
