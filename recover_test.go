package drove_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

const recoverID = "recover-test-client"

// recoverClientMain submits jobs to the node at addr, waits until the node
// has them all running or queued, and exits without closing its cluster, as
// a client that crashed.
func recoverClientMain(addr string) int {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, sleep, drove.WithNodes(addr), drove.WithClientID(recoverID))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var jobs []*drove.Job[time.Duration]
	for i := range 5 {
		j, err := c.Submit(ctx, time.Duration(1000+i)*time.Millisecond, drove.JobID(int64(100+i)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		jobs = append(jobs, j)
	}
	// Running on the node (two CPUs), the rest queued there.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if jobs[0].Status() == drove.Running && jobs[1].Status() == drove.Running {
			if os.Getenv("DROVE_TEST_RECOVER_HOLD") != "" {
				// Killed by the test while it waits.
				fmt.Println("running")
				time.Sleep(time.Hour)
			}
			return 0 // gone, with nothing closed
		}
	}
	fmt.Fprintln(os.Stderr, "jobs did not start")
	return 3
}

// A client that goes away finds its results kept on the node and collects
// them from a new process under the same client id (dispy's recover_jobs).
func TestRecoverJobsAfterClientWentAway(t *testing.T) {
	addr := nodetest.StartProcess(t, nodetest.Build(t), nil, "--cpus", "2").Addr // a real drove node process
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	// Under -race a process sleeps a second at exit, long enough to take
	// its results after all: it must go at once.
	cmd.Env = append(os.Environ(), "DROVE_TEST_RECOVER_CLIENT="+addr, "GORACE=atexit_sleep_ms=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := drove.RecoverJobs(ctx, sleep, recoverID, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if len(got) != 5 {
		t.Fatalf("recovered %d jobs, want 5: %+v", len(got), got)
	}
	for i, j := range got {
		want := time.Duration(1000+i) * time.Millisecond
		if j.ID != int64(100+i) || j.Status != drove.Finished || j.Result != want || j.Err != nil {
			t.Errorf("job %d: %+v, want Finished with %v", 100+i, j, want)
		}
	}
	// Collected once: the node closed the computations.
	again, err := drove.RecoverJobs(ctx, sleep, recoverID, []string{addr})
	if err != nil || len(again) != 0 {
		t.Errorf("second recovery: %d jobs, %v", len(again), err)
	}
	if _, err := drove.RecoverJobs(ctx, sleep, "", []string{addr}); err == nil {
		t.Error("recovery without a client id accepted")
	}
}

func TestStatus(t *testing.T) {
	c := newCluster(t, square, drove.WithCPUs(2))
	st := c.Status()
	if len(st.Nodes) != 1 || !st.Nodes[0].Up || st.Nodes[0].CPUs != 2 {
		t.Errorf("embedded status %+v", st)
	}
	n, _ := nodetest.Start(t, nil)
	r := newCluster(t, square, drove.WithNodes(n.Addr().String()))
	j := submit(t, r, 3)
	if got, err := result(t, j); err != nil || got != 9 {
		t.Fatalf("remote job: %d %v", got, err)
	}
	st = r.Status()
	if len(st.Nodes) != 1 || !st.Nodes[0].Up || st.Nodes[0].CPUs != 2 || st.Nodes[0].Addr != n.Addr().String() || st.Nodes[0].MemoryAvailable == 0 {
		t.Errorf("remote status %+v", st)
	}
}

// A node that falls silent (its connections stall, as behind a dead link)
// is declared lost after the configured heartbeats, and its running job
// (not reentrant) ends Abandoned.
func TestHeartbeatDeclaresSilentNodeLost(t *testing.T) {
	n, _ := nodetest.Start(t, nil)
	p := startStallProxy(t, n.Addr().String())
	lost := make(chan drove.NodeEvent, 1)
	c := newCluster(t, sleep, drove.WithNodes(p.addr), drove.WithHeartbeat(50*time.Millisecond, 3),
		drove.OnNodeStatus(func(e drove.NodeEvent) {
			if e.Status == drove.NodeLost {
				select {
				case lost <- e:
				default:
				}
			}
		}))
	j := submit(t, c, time.Minute)
	waitStatus(t, j, drove.Running)
	start := time.Now()
	p.stall()
	select {
	case e := <-lost:
		t.Logf("lost after %v: %v", time.Since(start), e.Err)
	case <-time.After(10 * time.Second):
		t.Fatal("silent node not declared lost within 10s")
	}
	if _, err := result(t, j); !errors.Is(err, drove.ErrNodeLost) || j.Status() != drove.Abandoned {
		t.Errorf("job on the lost node: %v, %s", err, j.Status())
	}
}

// stallProxy forwards TCP connections to a node until stalled; then it
// stops moving bytes without closing anything, as a cut link would.
type stallProxy struct {
	addr    string
	stalled chan struct{}
	done    chan struct{} // closed at the end of the test
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String(), stalled: make(chan struct{}), done: make(chan struct{})}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go p.pipe(out, in)
			go p.pipe(in, out)
		}
	}()
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.stalled:
			<-p.done // hold the bytes: silence, not a close
			return
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) stall() { close(p.stalled) }

// A node killed after its client was, and started again on the same
// directory, still has the results the client had not had: the client
// collects them all from the new node process.
//
// A node stopped (SIGTERM) while the jobs run keeps their results too: the
// jobs it stopped are Abandoned.
func TestRecoverJobsAfterNodeRestart(t *testing.T) {
	bin := nodetest.Build(t)
	t.Run("killed", func(t *testing.T) { recoverAfterNodeRestart(t, bin, syscall.SIGKILL) })
	t.Run("stopped", func(t *testing.T) { recoverAfterNodeRestart(t, bin, syscall.SIGTERM) })
}

func recoverAfterNodeRestart(t *testing.T, bin string, sig syscall.Signal) {
	dir := t.TempDir()
	first := nodetest.StartProcess(t, bin, nil, "--cpus", "2", "--dest-path", dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client := exec.Command(exe, "-test.run=^$")
	client.Env = append(os.Environ(), "DROVE_TEST_RECOVER_CLIENT="+first.Addr, "DROVE_TEST_RECOVER_HOLD=1", "GORACE=atexit_sleep_ms=0")
	client.Stderr = os.Stderr
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "running\n" {
		_ = client.Process.Kill()
		_ = client.Wait()
		t.Fatalf("client: %q, %v", line, err)
	}
	_ = client.Process.Kill() // SIGKILL: the client goes away at once
	_ = client.Wait()
	// Every job ends while the client is away, its result in the spool.
	for results := 0; sig == syscall.SIGKILL && results < 5; time.Sleep(20 * time.Millisecond) {
		results = 0
		spools, _ := filepath.Glob(filepath.Join(dir, "comp", recoverID, "*", "events.spool"))
		for _, sp := range spools {
			b, _ := os.ReadFile(sp)
			evs, _ := nodeproto.ReadEvents(bytes.NewReader(b))
			for _, ev := range evs {
				if ev.GetResult() != nil {
					results++
				}
			}
		}
		if t.Context().Err() != nil {
			t.Fatal("the jobs did not end")
		}
	}
	// SIGKILL: the node has no chance to save anything.
	_ = first.Cmd.Process.Signal(sig)
	err = <-first.Done
	first.Done <- err // for StartProcess's cleanup
	second := nodetest.StartProcess(t, bin, nil, "--cpus", "2", "--dest-path", dir)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := drove.RecoverJobs(ctx, sleep, recoverID, []string{second.Addr})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if len(got) != 5 {
		t.Fatalf("recovered %d jobs, want 5: %+v", len(got), got)
	}
	for i, j := range got {
		want := time.Duration(1000+i) * time.Millisecond
		switch {
		case j.ID != int64(100+i):
			t.Errorf("job %d recovered as %d", 100+i, j.ID)
		case sig == syscall.SIGTERM && j.Status == drove.Abandoned && j.Err != nil:
			// Stopped with the node, or queued when it stopped.
		case j.Status != drove.Finished || j.Result != want || j.Err != nil:
			t.Errorf("job %d: %+v, want Finished with %v", 100+i, j, want)
		}
	}
	// Collected once, and nothing left on disk.
	again, err := drove.RecoverJobs(ctx, sleep, recoverID, []string{second.Addr})
	if err != nil || len(again) != 0 {
		t.Errorf("second recovery: %d jobs, %v", len(again), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "comp", recoverID, "*")); len(left) != 0 {
		t.Errorf("left on disk after recovery: %v", left)
	}
}

// A node started on a directory whose spool and metadata are garbage warns,
// starts and serves.
func TestNodeRestartWithGarbledSpool(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string]string{
		"comp/" + recoverID + "/0123456789abcdef01234567/computation.json": `{"client_id":"` + recoverID + `","id":"0123456789abcdef01234567","heartbeat_ms":100}`,
		"comp/" + recoverID + "/0123456789abcdef01234567/events.spool":     "\xff\xff\xff\xffnot a spool",
		"comp/" + recoverID + "/89abcdef0123456789abcdef/computation.json": "{garbage",
		"comp/" + recoverID + "/89abcdef0123456789abcdef/events.spool":     "\x00\x00\x00\x05ab",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := nodetest.StartProcess(t, nodetest.Build(t), nil, "--cpus", "2", "--dest-path", dir)
	got, err := drove.RecoverJobs(t.Context(), sleep, recoverID, []string{p.Addr})
	if err != nil || len(got) != 0 {
		t.Fatalf("recovered %+v, %v; want nothing", got, err)
	}
	// It serves a new client.
	c, err := drove.NewCluster(t.Context(), sleep, drove.WithNodes(p.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	j, err := c.Submit(t.Context(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := j.Result(t.Context()); err != nil || v != time.Millisecond {
		t.Errorf("job: %v, %v", v, err)
	}
}
