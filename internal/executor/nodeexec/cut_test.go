package nodeexec_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/sched"
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

// TestTwoClients runs two clients' computations on one node at once (dispy
// serves one at a time): both get all their results.
func TestTwoClients(t *testing.T) {
	n := startNode(t, nil)
	var wg sync.WaitGroup
	for c := range 2 {
		wg.Go(func() {
			s := sched.New(sched.Config{})
			dial(t, s, nodeexec.Config{Addr: n.addr, ClientID: []string{"alice", "bob"}[c]}, funcComp(t, "double"))
			ts := submit(t, s, 300, func(i int) []byte { return enc(uint64(i)) })
			if err := s.Close(t.Context()); err != nil {
				t.Error(err)
			}
			for i, tk := range ts {
				if tk.State() != sched.Finished || u64(tk.Result().Output) != 2*uint64(i) {
					t.Errorf("client %d task %d: %v %v", c, i, tk.State(), tk.Result().Err)
					return
				}
			}
		})
	}
	wg.Wait()
}
