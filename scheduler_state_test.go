package drove_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

// markIn is once's input.
type markIn struct {
	Dir   string
	N     int
	Sleep time.Duration
}

// once creates a file named after its job in Dir, failing if it exists: a
// job that runs twice fails the second time, and leaves its file behind
// for the test to count.
var once = drove.Func("test.once", func(ctx context.Context, in markIn) (int, error) {
	// The file names where the job ran: the job directory names the node's
	// computation.
	wd, _ := os.Getwd()
	f, err := os.OpenFile(filepath.Join(in.Dir, strconv.Itoa(in.N)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		first, _ := os.ReadFile(filepath.Join(in.Dir, strconv.Itoa(in.N)))
		return 0, fmt.Errorf("ran twice: in %s, and now in %s: %w", first, wd, err)
	}
	_, _ = f.WriteString(wd + " at " + time.Now().Format("15:04:05.000"))
	f.Close()
	time.Sleep(in.Sleep)
	return in.N, nil
})

// schedProc is a drove scheduler process.
type schedProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncbuf.Buffer
	done   chan error
}

var schedServingRE = regexp.MustCompile(`^drove scheduler \S+ on (\S+) for nodes`)

// startSchedulerProc runs "bin scheduler" on 127.0.0.1:port (0: a free
// one) with args, and waits until it serves. It is killed at the end of
// the test.
func startSchedulerProc(t *testing.T, bin string, port int, args ...string) *schedProc {
	t.Helper()
	args = append([]string{"scheduler", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--ping-interval", "100ms", "--node-retry", "200ms", "--log-level", "info"}, args...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &schedProc{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = cmd.Wait()
		t.Fatalf("drove scheduler %v did not start: %s", args, p.stderr.String())
	}
	m := schedServingRE.FindStringSubmatch(lines.Text())
	if m == nil {
		_ = cmd.Process.Kill()
		t.Fatalf("unexpected first line %q", lines.Text())
	}
	p.addr = m[1]
	go func() { _, _ = io.Copy(io.Discard, stdout); p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("scheduler %s stderr:\n%s", p.addr, p.stderr.String())
		}
	})
	return p
}

// kill kills the scheduler with SIGKILL and waits for it to be gone.
func (p *schedProc) kill() { p.stop(syscall.SIGKILL) }

// stop sends the scheduler sig and waits for it to be gone.
func (p *schedProc) stop(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		p.done <- nil // for a later kill
	case <-time.After(30 * time.Second):
	}
}

// runSchedulerKill submits jobs (each clients' share) through a drove
// scheduler with --state to two 2-CPU nodes, kills the scheduler with
// SIGKILL once kill results have come back, starts it again on the same
// state and port, and checks that every job ends Finished with its own
// result, having run exactly once.
func runSchedulerKill(t *testing.T, clients, jobs, kill int, sleep time.Duration) {
	runSchedulerStop(t, syscall.SIGKILL, clients, jobs, kill, sleep)
}

// runSchedulerStop is runSchedulerKill with another signal.
// stateFleet is what the scheduler state tests start: two node processes
// (a and b, 2 CPUs each) and a scheduler with a --state directory over
// them, which restart starts again on the same port and state.
type stateFleet struct {
	bin      string
	a, b     *nodetest.Process
	nodeArgs []string
	sched    *schedProc
	port     int
}

func startStateFleet(t *testing.T) *stateFleet {
	t.Helper()
	f := &stateFleet{bin: nodetest.Build(t)}
	f.a = nodetest.StartProcess(t, f.bin, nil, "--name", "a", "--cpus", "2", "--log-level", "info")
	f.b = nodetest.StartProcess(t, f.bin, nil, "--name", "b", "--cpus", "2", "--log-level", "info")
	f.nodeArgs = []string{"--state", t.TempDir(), "--nodes", f.a.Addr + "," + f.b.Addr}
	f.sched = startSchedulerProc(t, f.bin, 0, f.nodeArgs...)
	_, portStr, _ := net.SplitHostPort(f.sched.addr)
	f.port, _ = strconv.Atoi(portStr)
	return f
}

// restart starts the scheduler again with the same port and state.
func (f *stateFleet) restart(t *testing.T) *schedProc {
	t.Helper()
	return startSchedulerProc(t, f.bin, f.port, f.nodeArgs...)
}

func runSchedulerStop(t *testing.T, sig syscall.Signal, clients, jobs, kill int, sleep time.Duration) {
	f := startStateFleet(t)
	s := f.sched

	// Generous: under the full suite on 2 CPUs the 10,000 jobs and the
	// restart take several times what they take alone (about 50 s).
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	marks := t.TempDir()
	var done atomic.Int64
	type result struct {
		n   int
		got int
		err error
		st  drove.Status
	}
	results := make(chan result, jobs)
	var wg sync.WaitGroup
	for cl := range clients {
		c, err := drove.NewCluster(ctx, once, drove.WithScheduler(s.addr), drove.WithClientID(fmt.Sprintf("client%d", cl)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Bounded: after a failure jobs may never end, and the test
			// must then fail, not hang in its cleanup.
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer ccancel()
			_ = c.Close(cctx)
		})
		var js []*drove.Job[int]
		var ns []int
		for i := cl; i < jobs; i += clients {
			j, err := c.Submit(ctx, markIn{Dir: marks, N: i, Sleep: sleep})
			if err != nil {
				t.Fatal(err)
			}
			js = append(js, j)
			ns = append(ns, i)
		}
		wg.Go(func() {
			for k, j := range js {
				got, err := j.Result(ctx)
				done.Add(1)
				results <- result{n: ns[k], got: got, err: err, st: j.Status()}
			}
		})
	}
	for done.Load() < int64(kill) {
		if ctx.Err() != nil {
			t.Fatalf("%d results before the kill", done.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop(sig)
	atKill := done.Load()
	if atKill >= int64(jobs) {
		t.Fatalf("all %d jobs ended before the scheduler was killed: nothing tested", jobs)
	}
	f.restart(t)
	wg.Wait()
	close(results)
	seen := map[int]bool{}
	for r := range results {
		if r.err != nil || r.got != r.n || r.st != drove.Finished {
			t.Errorf("job %d: %d, %v (%v)", r.n, r.got, r.err, r.st)
		}
		if seen[r.n] {
			t.Errorf("job %d ended twice", r.n)
		}
		seen[r.n] = true
	}
	if len(seen) != jobs {
		t.Errorf("%d jobs ended, want %d", len(seen), jobs)
	}
	files, err := os.ReadDir(marks)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != jobs {
		t.Errorf("%d jobs ran, want %d", len(files), jobs)
	}
	t.Logf("%d of %d jobs had ended when the scheduler was killed", atKill, jobs)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("timed out")
	}
}

// A drove scheduler with --state killed with SIGKILL while jobs are queued
// and running, and started again on the same state: every job ends once,
// with its result, and none runs twice.
func TestSchedulerStateKill(t *testing.T) {
	runSchedulerKill(t, 2, 300, 60, 20*time.Millisecond)
}

// A scheduler stopped with SIGTERM keeps its state the same way, and
// leaves the jobs on its nodes running for its next start.
func TestSchedulerStateTerm(t *testing.T) {
	runSchedulerStop(t, syscall.SIGTERM, 2, 300, 60, 20*time.Millisecond)
}

// The same with 10,000 jobs of two clients, killed a quarter of the way.
func TestSchedulerStateKill10000(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 jobs through real processes")
	}
	start := time.Now()
	runSchedulerKill(t, 2, 10000, 2500, time.Millisecond)
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// A node that loses what it ran while the scheduler is down (killed and
// started afresh) cannot give those jobs back: they end Abandoned, as on a
// lost node, and no job runs twice. The other node's jobs are reclaimed.
func TestSchedulerStateNodeLostMeanwhile(t *testing.T) {
	f := startStateFleet(t)
	s := f.sched
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := drove.NewCluster(ctx, once, drove.WithScheduler(s.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	marks := t.TempDir()
	const n = 40
	var js []*drove.Job[int]
	for i := range n {
		j, err := c.Submit(ctx, markIn{Dir: marks, N: i, Sleep: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, j)
	}
	// Jobs run on both nodes when the scheduler dies.
	for running := 0; running < 4; {
		if ctx.Err() != nil {
			t.Fatal("jobs did not start")
		}
		files, _ := os.ReadDir(marks)
		running = len(files)
		time.Sleep(10 * time.Millisecond)
	}
	s.kill()
	_ = f.a.Cmd.Process.Kill()
	<-f.a.Done
	f.a.Done <- nil // for its cleanup
	_, aPort, _ := net.SplitHostPort(f.a.Addr)
	nodetest.StartProcess(t, f.bin, nil, "--name", "a", "--cpus", "2", "--port", aPort)
	f.restart(t)
	finished, abandoned := 0, 0
	for i, j := range js {
		got, err := j.Result(ctx)
		switch {
		case err == nil && got == i && j.Status() == drove.Finished:
			finished++
		case err != nil && strings.Contains(err.Error(), "lost the job's computation") && j.Status() == drove.Abandoned:
			abandoned++
		default:
			t.Errorf("job %d: %d, %v (%v)", i, got, err, j.Status())
		}
	}
	files, err := os.ReadDir(marks)
	if err != nil {
		t.Fatal(err)
	}
	// Each finished job ran once; an abandoned one ran at most once (on
	// the node that died), or not at all.
	if len(files) < finished || len(files) > n {
		t.Errorf("%d jobs ran, %d finished", len(files), finished)
	}
	if abandoned == 0 {
		t.Error("no job was lost with the node: nothing tested")
	}
	t.Logf("%d finished, %d abandoned with the node", finished, abandoned)
}

// A job running on a node when the scheduler was killed can still be
// cancelled by its client once the scheduler is back: the cancel goes on
// to the node that runs it.
func TestSchedulerStateCancelReclaimed(t *testing.T) {
	f := startStateFleet(t)
	s := f.sched
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := drove.NewCluster(ctx, sleep, drove.WithScheduler(s.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var js []*drove.Job[time.Duration]
	for range 4 {
		j, err := c.Submit(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, j)
	}
	// One more, queued behind them, cancelled before the kill: it stays
	// cancelled, and does not run after the restart.
	queued, err := c.Submit(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js {
		for j.Status() != drove.Running {
			if ctx.Err() != nil {
				t.Fatal("jobs did not start")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := c.Cancel(queued); err != nil {
		t.Fatal(err)
	}
	s.kill()
	f.restart(t)
	if _, err := queued.Result(ctx); err == nil || queued.Status() != drove.Cancelled {
		t.Errorf("queued job: %v (%v), want Cancelled", err, queued.Status())
	}
	for _, j := range js {
		if err := c.Cancel(j); err != nil {
			t.Fatal(err)
		}
	}
	for i, j := range js {
		if _, err := j.Result(ctx); err == nil || j.Status() != drove.Cancelled {
			t.Errorf("job %d: %v (%v), want Cancelled", i, err, j.Status())
		}
	}
	if st := c.Stats(); st.Running != 0 {
		t.Errorf("%d jobs still running after all were cancelled", st.Running)
	}
}
