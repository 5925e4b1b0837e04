package nodeexec_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/filesink"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/worker"
)

func u64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
func enc(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func init() {
	registry.Register(&registry.Func{Name: "double", In: "u64", Out: "u64", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		return enc(2 * u64(in)), nil
	}})
	registry.Register(&registry.Func{Name: "sleep", In: "u64", Out: "u64", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		select {
		case <-time.After(time.Duration(u64(in)) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return in, nil
	}})
	registry.Register(&registry.Func{Name: "files", In: "u64", Out: "u64", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		j := worker.FromContext(ctx)
		if err := j.Provisional([]byte("half way")); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("out%d.txt", u64(in))
		if err := os.WriteFile(name, fmt.Appendf(nil, "result %d", u64(in)), 0o644); err != nil {
			return nil, err
		}
		if err := j.SendFile(name, "sub/"+name); err != nil {
			return nil, err
		}
		_ = j.SendFile(name, "../escape.txt") // refused by the node
		return in, nil
	}})
	registry.Register(&registry.Func{Name: "fail", In: "u64", Out: "u64", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		if u64(in) == 1 {
			panic("boom")
		}
		fmt.Fprintln(os.Stderr, "to stderr")
		return nil, errors.New("job failed")
	}})
}

func TestMain(m *testing.M) {
	registry.Seal()
	if worker.IsWorker() {
		os.Exit(worker.Main())
	}
	if addr := os.Getenv("NODEEXEC_CRASHY_CLIENT"); addr != "" {
		crashyClient(addr)
	}
	if addr := os.Getenv("NODEEXEC_FROZEN_CLIENT"); addr != "" {
		frozenClient(addr)
	}
	os.Exit(m.Run())
}

// printingReporter prints every result as the executor reports it, before
// the executor acknowledges it to the node.
type printingReporter struct {
	*sched.Scheduler
	mu   sync.Mutex
	got  int
	done chan struct{}
}

func (p *printingReporter) Done(r *sched.Run, res sched.Result) {
	p.mu.Lock()
	fmt.Printf("GOT %d\n", r.Task.ID)
	if p.got++; p.got == 5 {
		close(p.done)
	}
	p.mu.Unlock()
	p.Scheduler.Done(r, res)
}

// helperClient is the scheduler of a client process the tests start: the
// "sleep" computation of this executable on the node at addr, as clientID,
// reporting through a printingReporter.
func helperClient(addr, clientID string) (*sched.Scheduler, *printingReporter) {
	exe, _ := os.Executable()
	f, err := nodeexec.HashFile(exe)
	if err != nil {
		panic(err)
	}
	s := sched.New(sched.Config{})
	rep := &printingReporter{Scheduler: s, done: make(chan struct{})}
	ex, err := nodeexec.Dial(context.Background(), nodeexec.Config{Addr: addr, ClientID: clientID, Heartbeat: 50 * time.Millisecond},
		&nodeexec.Computation{Func: "sleep", Fingerprint: registry.Fingerprint(), Executable: f}, rep)
	if err != nil {
		panic(err)
	}
	if err := s.AddNode(ex.Name(), ex.Slots(), ex); err != nil {
		panic(err)
	}
	return s, rep
}

// crashyClient submits 20 jobs as client "crashy", prints the IDs of the
// results it gets and exits after the fifth without closing anything.
func crashyClient(addr string) {
	s, rep := helperClient(addr, "crashy")
	for i := range 20 {
		if err := s.Submit(context.Background(), &sched.Task{ID: int64(100 + i), Input: enc(250)}); err != nil {
			panic(err)
		}
	}
	<-rep.done
	rep.mu.Lock() // no more output
	os.Exit(0)
}

// frozenClient submits 60 jobs of 100 ms as client "frozen", prints READY
// at the first result and then waits for ever (the test freezes it).
func frozenClient(addr string) {
	s, rep := helperClient(addr, "frozen")
	for i := range 60 {
		if err := s.Submit(context.Background(), &sched.Task{ID: int64(100 + i), Input: enc(100)}); err != nil {
			panic(err)
		}
	}
	<-rep.done
	fmt.Println("READY")
	select {}
}

type testNode struct {
	*node.Node
	addr string
	stop func()
}

func startNode(t *testing.T, mut func(*node.Config)) *testNode {
	t.Helper()
	n, stop := nodetest.Start(t, func(c *node.Config) {
		c.ZombieInterval = time.Minute
		if mut != nil {
			mut(c)
		}
	})
	return &testNode{Node: n, addr: n.Addr().String(), stop: stop}
}

func funcComp(t *testing.T, name string) *nodeexec.Computation {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := nodeexec.HashFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return &nodeexec.Computation{Func: name, Fingerprint: registry.Fingerprint(), Executable: f, Grace: 200 * time.Millisecond}
}

func dial(t *testing.T, s *sched.Scheduler, cfg nodeexec.Config, comp *nodeexec.Computation) *nodeexec.Executor {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 50 * time.Millisecond
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "test"
	}
	ex, err := nodeexec.Dial(t.Context(), cfg, comp, s)
	if err != nil {
		t.Fatal(err)
	}
	ex.SetName(ex.Name() + "@" + ex.Addr())
	if err := s.AddNode(ex.Name(), ex.Slots(), ex); err != nil {
		t.Fatal(err)
	}
	return ex
}

func submit(t *testing.T, s *sched.Scheduler, n int, in func(i int) []byte) []*sched.Task {
	t.Helper()
	ts := make([]*sched.Task, n)
	for i := range ts {
		ts[i] = &sched.Task{ID: int64(i + 1), Input: in(i)}
		if err := s.Submit(t.Context(), ts[i]); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

func TestRoundTrip(t *testing.T) {
	n := startNode(t, nil)
	s := sched.New(sched.Config{})
	ex := dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "double"))
	ts := submit(t, s, 500, func(i int) []byte { return enc(uint64(i)) })
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, tk := range ts {
		if tk.State() != sched.Finished {
			t.Fatalf("task %d: %v %v", i, tk.State(), tk.Result().Err)
		}
		if got := u64(tk.Result().Output); got != 2*uint64(i) {
			t.Fatalf("task %d: got %d", i, got)
		}
	}
	st := s.Stats()
	if st.Nodes[0].Jobs != 500 || st.Nodes[0].Sent == 0 || st.Nodes[0].Received == 0 {
		t.Errorf("stats %+v", st.Nodes[0])
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	sent, _ := ex.Bytes()
	// A second computation ships no blob: the node has the executable.
	s2 := sched.New(sched.Config{})
	ex2 := dial(t, s2, nodeexec.Config{Addr: n.addr}, funcComp(t, "double"))
	submit(t, s2, 1, func(i int) []byte { return enc(1) })
	if err := s2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	sent2, _ := ex2.Bytes()
	if sent2 != 8 || sent < 1<<20 {
		t.Errorf("sent %d then %d bytes; want the executable once, then only the input", sent, sent2)
	}
}

func TestErrors(t *testing.T) {
	n := startNode(t, nil)
	s := sched.New(sched.Config{})
	dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "fail"))
	ts := submit(t, s, 2, func(i int) []byte { return enc(uint64(i)) })
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var re *joberr.RemoteError
	if r := ts[0].Result(); ts[0].State() != sched.Terminated || !errors.As(r.Err, &re) || re.Msg != "job failed" || string(r.Stderr) != "to stderr\n" {
		t.Errorf("task 1: %v %v %q", ts[0].State(), r.Err, r.Stderr)
	}
	var pe *joberr.PanicError
	if r := ts[1].Result(); !errors.As(r.Err, &pe) || pe.Value != "boom" || !strings.Contains(pe.Stack, "panic") {
		t.Errorf("task 2: %v %v", ts[1].State(), r.Err)
	}
}

func TestCancelAndTimeout(t *testing.T) {
	n := startNode(t, nil)
	s := sched.New(sched.Config{})
	dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "sleep"))
	ts := submit(t, s, 6, func(i int) []byte { return enc(10_000) })
	tmo := &sched.Task{ID: 100, Input: enc(10_000), Timeout: 300 * time.Millisecond}
	if err := s.Submit(t.Context(), tmo); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, tk := range ts {
		s.Cancel(tk)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		// Seen once under heavy load and not reproduced since: say which
		// task was left, and where.
		for _, tk := range append(ts, tmo) {
			t.Logf("task %d: state %d, node %q, started %v", tk.ID, tk.State(), tk.NodeName(), tk.StartTime())
		}
		t.Fatal(err)
	}
	for _, tk := range ts {
		if tk.State() != sched.Cancelled {
			t.Errorf("task %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	if tmo.State() != sched.Terminated || !errors.Is(tmo.Result().Err, sched.ErrTimeout) {
		t.Errorf("timeout task: %v %v", tmo.State(), tmo.Result().Err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestNodeDies(t *testing.T) {
	n := startNode(t, nil)
	m := startNode(t, nil)
	s := sched.New(sched.Config{Reentrant: true})
	dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "sleep"))
	dial(t, s, nodeexec.Config{Addr: m.addr}, funcComp(t, "sleep"))
	ts := submit(t, s, 40, func(i int) []byte { return enc(20) })
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	n.stop()
	t.Logf("node stopped in %v", time.Since(t0))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		for _, tk := range ts {
			t.Log(tk.ID, tk.State(), tk.NodeName())
		}
		t.Fatalf("%v %+v", err, s.Stats())
	}
	for _, tk := range ts {
		if tk.State() != sched.Finished {
			t.Errorf("task %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	down := 0
	for _, ns := range s.Stats().Nodes {
		if ns.Down {
			down++
		}
	}
	if down != 1 {
		t.Errorf("%d nodes down, want 1", down)
	}
	_ = s.Close(t.Context())
}

func TestWrongSecret(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Secret = "right" })
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	_, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: n.addr, Secret: "wrong", ClientID: "x"}, funcComp(t, "double"), s)
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("wrong secret: %v", err)
	}
	_, err = nodeexec.Dial(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "x"}, funcComp(t, "double"), s)
	if err == nil {
		t.Fatal("no secret accepted")
	}
	dial(t, s, nodeexec.Config{Addr: n.addr, Secret: "right"}, funcComp(t, "double"))
	ts := submit(t, s, 3, func(i int) []byte { return enc(uint64(i)) })
	if err := s.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ts[2].State() != sched.Finished {
		t.Fatal(ts[2].Result().Err)
	}
}

func TestFilesAndProvisional(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.MaxFileSize = 256 << 20 })
	dest := t.TempDir()
	sink, err := filesink.Open(dest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var mu sync.Mutex
	var prov []string
	s := sched.New(sched.Config{OnTask: func(ev sched.TaskEvent) {
		if ev.State == sched.ProvisionalResult {
			mu.Lock()
			prov = append(prov, string(ev.Output))
			mu.Unlock()
		}
	}})
	dial(t, s, nodeexec.Config{Addr: n.addr, Files: sink}, funcComp(t, "files"))
	ts := submit(t, s, 3, func(i int) []byte { return enc(uint64(i)) })
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts {
		if tk.State() != sched.Finished {
			t.Fatalf("task %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	for i := range 3 {
		b, err := os.ReadFile(filepath.Join(dest, "sub", fmt.Sprintf("out%d.txt", i)))
		if err != nil || string(b) != fmt.Sprintf("result %d", i) {
			t.Errorf("file %d: %q %v", i, b, err)
		}
	}
	// The name that climbs out was refused on the node; nothing escaped.
	for _, dir := range []string{filepath.Dir(dest), n.Dir()} {
		if _, err := os.Stat(filepath.Join(dir, "escape.txt")); err == nil {
			t.Errorf("escape.txt written in %s", dir)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(prov) != 3 || prov[0] != "half way" {
		t.Errorf("provisional results %q", prov)
	}
}

// spooled counts bytes of event spools on the node's disk.
func spooled(t *testing.T, n *testNode) int64 {
	t.Helper()
	var total int64
	_ = filepath.WalkDir(n.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "events.spool" {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

// plan9Node is a node that says it runs on another platform.
type plan9Node struct {
	drovev1connect.UnimplementedNodeServiceHandler
}

func (plan9Node) Info(context.Context, *connect.Request[drovev1.InfoRequest]) (*connect.Response[drovev1.InfoResponse], error) {
	return connect.NewResponse(&drovev1.InfoResponse{Name: "p9", Goos: "plan9", Goarch: "mips", Cpus: 1, Protocol: nodeexec.Protocol}), nil
}

func TestOtherPlatform(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(drovev1connect.NewNodeServiceHandler(plan9Node{}))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	srv.Config.Protocols = &p
	srv.Start()
	defer srv.Close()
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	_, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: srv.Listener.Addr().String(), ClientID: "x"}, funcComp(t, "double"), s)
	if !errors.Is(err, nodeexec.ErrPlatform) || !strings.Contains(err.Error(), "plan9/mips") {
		t.Fatalf("got %v, want ErrPlatform naming plan9/mips", err)
	}
	var ce *nodeexec.ConnError
	if !errors.As(err, &ce) || ce.Addr != srv.Listener.Addr().String() {
		t.Errorf("not a *ConnError with the address: %v", err)
	}
}

func TestInputTooLarge(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.MaxMessage = 64 << 10 })
	s := sched.New(sched.Config{})
	dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "double"))
	big := &sched.Task{ID: 1, Input: make([]byte, 100<<10)}
	small := &sched.Task{ID: 2, Input: enc(21)}
	for _, tk := range []*sched.Task{big, small} {
		if err := s.Submit(t.Context(), tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if big.State() != sched.Terminated || !errors.Is(big.Result().Err, nodeexec.ErrTooLarge) {
		t.Errorf("big input: %v %v", big.State(), big.Result().Err)
	}
	if small.State() != sched.Finished || u64(small.Result().Output) != 42 {
		t.Errorf("small input: %v %v", small.State(), small.Result().Err)
	}
}

// TestClientComesBack: a client process exits without closing its cluster
// while its jobs run on the node; a new process, as the same client, gets
// every result it had not received, and the node is left clean.
func TestClientComesBack(t *testing.T) {
	n := startNode(t, nil)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "NODEEXEC_CRASHY_CLIENT="+n.addr)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	seen := map[int64]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var id int64
		if _, err := fmt.Sscanf(l, "GOT %d", &id); err == nil {
			seen[id] = true
		}
	}
	if len(seen) < 5 {
		t.Fatalf("client output %q", out)
	}
	clientGot := len(seen)
	rs, err := nodeexec.Recover(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "crashy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Result.Outcome != sched.OK || u64(r.Result.Output) != 250 {
			t.Errorf("job %d: %+v", r.JobID, r.Result)
		}
		seen[r.JobID] = true
	}
	for i := range 20 {
		if !seen[int64(100+i)] {
			t.Errorf("job %d neither received nor recovered", 100+i)
		}
	}
	if len(rs) < 20-clientGot {
		t.Errorf("recovered %d results; the client got %d of 20", len(rs), clientGot)
	}
	// Recovered and closed: nothing is left for that client.
	rs, err = nodeexec.Recover(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "crashy"})
	if err != nil || len(rs) != 0 {
		t.Errorf("second recovery: %d results, %v", len(rs), err)
	}
}

// TestHeartbeatInterval: a client that does not ask for a heartbeat
// interval uses the node's --ping-interval, both for its own heartbeats and
// for the node's stream; one that asks gets what it asked for.
func TestHeartbeatInterval(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.PingInterval = 300 * time.Millisecond })
	for _, tc := range []struct {
		name string
		ask  time.Duration
		want time.Duration
	}{
		{"node's", 0, 300 * time.Millisecond},
		{"client's", 40 * time.Millisecond, 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sched.New(sched.Config{})
			defer s.Close(t.Context())
			ex, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "hb", Heartbeat: tc.ask}, funcComp(t, "double"), s)
			if err != nil {
				t.Fatal(err)
			}
			defer ex.Close(t.Context())
			if got := ex.Heartbeat(); got != tc.want {
				t.Errorf("executor heartbeat %v, want %v", got, tc.want)
			}
		})
	}
	// What the node does with it: a raw client that asks for nothing gets
	// the node's heartbeats on its stream, 300 ms apart.
	c := drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient("", nil), "http://"+n.addr)
	prog := funcComp(t, "double")
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	ex, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "hb"}, prog, s) // uploads the executable
	if err != nil {
		t.Fatal(err)
	}
	_ = ex.Close(t.Context())
	resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: "raw", FuncName: "double", Fingerprint: prog.Fingerprint,
		Goos: runtime.GOOS, Goarch: runtime.GOARCH, Executable: &drovev1.Blob{Sum: prog.Executable.Sum, Mode: 0o700}}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.HeartbeatIntervalMs; got != 300 {
		t.Errorf("Setup answered heartbeat interval %d ms, want the node's 300", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := c.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: resp.Msg.ComputationId}))
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for len(at) < 4 && st.Receive() {
		at = append(at, time.Now())
	}
	st.Close()
	if len(at) < 4 {
		t.Fatalf("%d heartbeats: %v", len(at), st.Err())
	}
	// The first message comes at once; the next ones every interval.
	for i := 2; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < 200*time.Millisecond {
			t.Errorf("heartbeats %d and %d %v apart, want about 300 ms", i-1, i, d)
		}
	}
	if _, err := c.Close(t.Context(), connect.NewRequest(&drovev1.CloseRequest{ComputationId: resp.Msg.ComputationId})); err != nil {
		t.Fatal(err)
	}
}

// TestFrozenClient: a client process frozen with SIGSTOP (as good as a
// machine that died without closing its connections: its kernel still
// ACKs) is noticed by the node, which pings the silent connection and
// drops it: the client is away, its results are spooled to disk, and
// after the zombie interval its computation is closed.
func TestFrozenClient(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.ZombieInterval = 3 * time.Second })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "NODEEXEC_FROZEN_CLIENT="+n.addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "READY" {
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	go func() { _, _ = io.Copy(io.Discard, out) }()
	c := drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient("", nil), "http://"+n.addr)
	var spooledAt time.Duration
	for {
		if spooledAt == 0 && spooled(t, n) > 0 {
			spooledAt = time.Since(frozen)
		}
		info, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if info.Msg.Computations == 0 {
			break
		}
		if time.Since(frozen) > 20*time.Second {
			t.Fatalf("frozen client still served after %v (results spooled after %v)", time.Since(frozen), spooledAt)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("results spooled %v after the freeze, computation closed after %v", spooledAt, time.Since(frozen))
	if spooledAt == 0 {
		t.Error("the frozen client's results were never spooled to disk: the node did not count it away")
	}
}

// doneRecorder is a Reporter that records the outcomes reported with Done.
type doneRecorder struct {
	mu   sync.Mutex
	done []sched.Outcome
}

func (d *doneRecorder) Started(*sched.Run, time.Time)  {}
func (d *doneRecorder) Provisional(*sched.Run, []byte) {}
func (d *doneRecorder) NodeDown(string, error)         {}
func (d *doneRecorder) Done(_ *sched.Run, res sched.Result) {
	d.mu.Lock()
	d.done = append(d.done, res.Outcome)
	d.mu.Unlock()
}

// TestStartAfterClose: a run given to a closed executor is reported Lost
// before Start returns, so no goroutine is left behind to report it later.
func TestStartAfterClose(t *testing.T) {
	n := startNode(t, nil)
	rec := &doneRecorder{}
	ex, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: n.addr, ClientID: "test", Heartbeat: 50 * time.Millisecond}, funcComp(t, "double"), rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ex.Start(&sched.Run{Task: &sched.Task{ID: 1, Input: enc(1)}})
	rec.mu.Lock()
	got := slices.Clone(rec.done)
	rec.mu.Unlock()
	if len(got) != 1 || got[0] != sched.Lost {
		t.Errorf("reported %v by the time Start returned, want [Lost]", got)
	}
}
