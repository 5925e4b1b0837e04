package drove_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove"
)

// newCluster starts an embedded cluster closed at the end of the test, with
// a short cancel grace so escalation tests stay quick.
func newCluster[In, Out any](t *testing.T, fn *drove.Function[In, Out], opts ...drove.Option) *drove.Cluster[In, Out] {
	t.Helper()
	opts = append([]drove.Option{drove.WithCancelGrace(300 * time.Millisecond), drove.WithDestDir(t.TempDir())}, opts...)
	c, err := drove.NewCluster(t.Context(), fn, opts...)
	if err != nil {
		t.Fatalf("NewCluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func submit[In, Out any](t *testing.T, c *drove.Cluster[In, Out], in In, opts ...drove.JobOption) *drove.Job[Out] {
	t.Helper()
	j, err := c.Submit(t.Context(), in, opts...)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return j
}

func result[Out any](t *testing.T, j *drove.Job[Out]) (Out, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := j.Result(ctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		t.Fatalf("job %d did not end (status %s)", j.ID(), j.Status())
	}
	return out, err
}

func TestResultsAndIDs(t *testing.T) {
	c := newCluster(t, square)
	var jobs []*drove.Job[int]
	for i := range 50 {
		jobs = append(jobs, submit(t, c, i))
	}
	custom := submit(t, c, 9, drove.JobID(1000))
	for i, j := range jobs {
		if j.ID() != int64(i+1) {
			t.Errorf("job %d has ID %d, want %d", i, j.ID(), i+1)
		}
		got, err := result(t, j)
		if err != nil || got != i*i {
			t.Errorf("job %d: got %d, %v; want %d", i, got, err, i*i)
		}
		if j.Status() != drove.Finished {
			t.Errorf("job %d status %s", i, j.Status())
		}
		if j.StartTime().IsZero() || j.EndTime().Before(j.StartTime()) {
			t.Errorf("job %d times %v .. %v", i, j.StartTime(), j.EndTime())
		}
		if j.Node() == "" {
			t.Errorf("job %d has no node", i)
		}
	}
	if got, _ := result(t, custom); custom.ID() != 1000 || got != 81 {
		t.Errorf("custom ID job: id %d result %d", custom.ID(), got)
	}
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if len(st.Nodes) != 1 || st.Nodes[0].Jobs != 51 || st.Pending != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestOutputCapture(t *testing.T) {
	c := newCluster(t, talk)
	for _, s := range []string{"one", "two", "three", "four"} {
		j := submit(t, c, s)
		got, err := result(t, j)
		if err != nil || got != s {
			t.Fatalf("got %q, %v", got, err)
		}
		if want := "out: " + s + "\n"; string(j.Stdout()) != want {
			t.Errorf("stdout %q, want %q", j.Stdout(), want)
		}
		if want := "err: " + s + "\n"; string(j.Stderr()) != want {
			t.Errorf("stderr %q, want %q", j.Stderr(), want)
		}
	}
}

func TestShippedTypeAndStdout(t *testing.T) {
	c := newCluster(t, echoShipped)
	j := submit(t, c, Point{1, 2})
	got, err := result(t, j)
	if err != nil || got != (Point{2, 1}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if string(j.Stdout()) != "point (1, 2)\n" {
		t.Errorf("stdout %q", j.Stdout())
	}
}

func TestFunctionError(t *testing.T) {
	c := newCluster(t, fail)
	j := submit(t, c, "x")
	_, err := result(t, j)
	var re *drove.RemoteError
	if !errors.As(err, &re) || re.Msg != "failed: x" {
		t.Fatalf("got %v (%T), want RemoteError 'failed: x'", err, err)
	}
	if j.Status() != drove.Terminated {
		t.Errorf("status %s, want Terminated", j.Status())
	}
}

func TestPanicReplacesWorker(t *testing.T) {
	c := newCluster(t, boom, drove.WithCPUs(1))
	_, err := result(t, submit(t, c, "x"))
	var pe *drove.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom: x" || !strings.Contains(pe.Stack, "goroutine") {
		t.Fatalf("got %v, want a PanicError with a stack", err)
	}
	// The cluster goes on with a new worker.
	_, err = result(t, submit(t, c, "y"))
	if !errors.As(err, &pe) || pe.Value != "boom: y" {
		t.Fatalf("second job: %v", err)
	}
}

func TestWorkerExitAndCrash(t *testing.T) {
	c := newCluster(t, exit, drove.WithCPUs(2))
	j := submit(t, c, 3)
	_, err := result(t, j)
	var xe *drove.ExitError
	if !errors.As(err, &xe) || xe.Code != 3 {
		t.Fatalf("got %v, want ExitError with code 3", err)
	}
	if j.Status() != drove.Terminated || !strings.Contains(string(j.Stderr()), "exiting with 3") {
		t.Errorf("status %s stderr %q", j.Status(), j.Stderr())
	}
	// Other jobs go on.
	for i := range 4 {
		if _, err := result(t, submit(t, c, 10+i)); !errors.As(err, &xe) || xe.Code != 10+i {
			t.Errorf("job %d: %v", i, err)
		}
	}

	k := newCluster(t, crash, drove.WithCPUs(1))
	j2 := submit(t, k, 0)
	_, err = result(t, j2)
	if !errors.As(err, &xe) || xe.Signal == 0 {
		t.Fatalf("crash: got %v, want ExitError with a signal", err)
	}
	if !strings.Contains(string(j2.Stderr()), "about to crash") {
		t.Errorf("crash stderr %q", j2.Stderr())
	}
}

func TestCancel(t *testing.T) {
	c := newCluster(t, sleep, drove.WithCPUs(1))
	running := submit(t, c, time.Minute)
	queued := submit(t, c, time.Minute)
	waitStatus(t, running, drove.Running)
	if err := c.Cancel(queued); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, queued); !errors.Is(err, drove.ErrCancelled) || queued.Status() != drove.Cancelled {
		t.Fatalf("queued: %v, %s", err, queued.Status())
	}
	if err := c.Cancel(running); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, running); !errors.Is(err, drove.ErrCancelled) || running.Status() != drove.Cancelled {
		t.Fatalf("running: %v, %s", err, running.Status())
	}
	// Cancelling an ended job does nothing.
	if err := c.Cancel(running); err != nil || running.Status() != drove.Cancelled {
		t.Fatalf("second cancel: %v %s", err, running.Status())
	}
	if got, err := result(t, submit(t, c, time.Millisecond)); err != nil || got != time.Millisecond {
		t.Fatalf("after cancel: %v %v", got, err)
	}
}

func TestCancelGracefulReturnsBest(t *testing.T) {
	c := newCluster(t, graceful)
	j := submit(t, c, 0)
	waitStatus(t, j, drove.ProvisionalResult)
	_ = c.Cancel(j)
	best, err := result(t, j)
	if err != nil || j.Status() != drove.Finished || best <= 0 {
		t.Fatalf("got %d, %v, %s; want Finished with its best result", best, err, j.Status())
	}
}

func TestCancelEscalatesToKill(t *testing.T) {
	c := newCluster(t, stubborn, drove.WithCPUs(1))
	j := submit(t, c, time.Hour)
	waitStatus(t, j, drove.ProvisionalResult)
	start := time.Now()
	_ = c.Cancel(j)
	if _, err := result(t, j); !errors.Is(err, drove.ErrCancelled) {
		t.Fatalf("got %v", err)
	}
	// Cancel (ignored), then SIGTERM after one grace period of 300ms.
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second {
		t.Errorf("stopped after %v", d)
	}
	if got, err := result(t, submit(t, c, 0)); err != nil || got != 1 {
		t.Fatalf("after kill: %v %v", got, err)
	}
}

func TestTimeoutAndRetries(t *testing.T) {
	c := newCluster(t, sleep)
	j := submit(t, c, time.Minute, drove.Timeout(100*time.Millisecond))
	if _, err := result(t, j); !errors.Is(err, drove.ErrTimeout) || j.Status() != drove.Terminated {
		t.Fatalf("got %v %s, want ErrTimeout Terminated", err, j.Status())
	}
	var mu sync.Mutex
	runs := 0
	c2 := newCluster(t, sleep, drove.OnJobStatus(func(e drove.JobEvent[time.Duration]) {
		if e.Status == drove.Running {
			mu.Lock()
			runs++
			mu.Unlock()
		}
	}))
	j2 := submit(t, c2, time.Minute, drove.Timeout(50*time.Millisecond), drove.Retries(2))
	if _, err := result(t, j2); !errors.Is(err, drove.ErrTimeout) {
		t.Fatalf("got %v", err)
	}
	_ = c2.Wait(t.Context())
	mu.Lock()
	defer mu.Unlock()
	if runs != 3 {
		t.Errorf("ran %d times, want 3 (1 + 2 retries)", runs)
	}

	c3 := newCluster(t, flaky)
	marker := filepath.Join(t.TempDir(), "marker")
	if got, err := result(t, submit(t, c3, marker, drove.Retries(1))); err != nil || got != "second attempt" {
		t.Fatalf("flaky with a retry: %q %v", got, err)
	}
}

func TestPriority(t *testing.T) {
	var mu sync.Mutex
	var order []int64
	c := newCluster(t, sleep, drove.WithCPUs(1), drove.OnJobStatus(func(e drove.JobEvent[time.Duration]) {
		if e.Status == drove.Running {
			mu.Lock()
			order = append(order, e.Job.ID())
			mu.Unlock()
		}
	}))
	blocker := submit(t, c, 200*time.Millisecond)
	waitStatus(t, blocker, drove.Running)
	submit(t, c, time.Millisecond, drove.JobID(10), drove.Priority(0))
	submit(t, c, time.Millisecond, drove.JobID(11), drove.Priority(5))
	submit(t, c, time.Millisecond, drove.JobID(12), drove.Priority(-1))
	submit(t, c, time.Millisecond, drove.JobID(13), drove.Priority(5))
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // callbacks run after Wait's wake-up
	mu.Lock()
	defer mu.Unlock()
	want := []int64{1, 11, 13, 10, 12}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

func TestSetupState(t *testing.T) {
	c := newCluster(t, lookup, drove.WithSetup(table))
	for key, want := range map[string]int{"a": 1, "b": 2} {
		if got, err := result(t, submit(t, c, key)); err != nil || got != want {
			t.Errorf("%s: got %d %v", key, got, err)
		}
	}
	// The state lives in the worker process, not the client.
	if got, err := result(t, submit(t, c, "pid")); err != nil || got == os.Getpid() || got == 0 {
		t.Errorf("pid: %d %v", got, err)
	}
	if _, err := result(t, submit(t, c, "missing")); err == nil {
		t.Error("missing key: no error")
	}
	if _, err := drove.NewCluster(t.Context(), lookup); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionalResults(t *testing.T) {
	var mu sync.Mutex
	var events []drove.JobEvent[int]
	c := newCluster(t, provisional, drove.OnJobStatus(func(e drove.JobEvent[int]) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	j := submit(t, c, 5)
	if got, err := result(t, j); err != nil || got != 5 {
		t.Fatal(got, err)
	}
	_ = c.Close(t.Context()) // drains callbacks
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, e := range events {
		got = append(got, e.Status.String()+":"+strconv.Itoa(e.Result))
	}
	want := "Running:0 ProvisionalResult:1 ProvisionalResult:2 ProvisionalResult:3 ProvisionalResult:4 Finished:5"
	if strings.Join(got, " ") != want {
		t.Errorf("events\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestSendFile(t *testing.T) {
	dest := t.TempDir()
	c := newCluster(t, sendFile, drove.WithDestDir(dest))
	n, err := result(t, submit(t, c, "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dest, "result.txt"))
	if err != nil || string(b) != "payload of result.txt" || len(b) != n {
		t.Fatalf("received %q, %v", b, err)
	}
}

// TestSendFileRefused: a file the client refuses — its name leads out of
// the destination directory through a symbolic link there — is the job's
// SendFile error, on this machine and through a drove node, and nothing
// lands outside.
func TestSendFileRefused(t *testing.T) {
	tests := []struct {
		name  string
		nodes func(t *testing.T) []string
	}{
		{"embedded", func(*testing.T) []string { return nil }},
		{"node", func(t *testing.T) []string { return startNodes(t, "a") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest, outside := t.TempDir(), t.TempDir()
			if err := os.Symlink(outside, filepath.Join(dest, "out")); err != nil {
				t.Fatal(err)
			}
			c := newCluster(t, sendFileIn, drove.WithDestDir(dest), drove.WithNodes(tc.nodes(t)...))
			j := submit(t, c, "out/x.txt")
			_, err := result(t, j)
			if err == nil || !strings.Contains(err.Error(), "refused") || j.Status() != drove.Terminated {
				t.Errorf("job %v with error %v, want Terminated with SendFile's refusal", j.Status(), err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("file written outside the destination: %v", ents)
			}
		})
	}
}

func TestDependsAndEnv(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("dependency contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, readDep, drove.WithDepends(data))
	for range 4 {
		if got, err := result(t, submit(t, c, "data.txt")); err != nil || got != "dependency contents" {
			t.Fatalf("got %q %v", got, err)
		}
	}
	if _, err := drove.NewCluster(t.Context(), readDep, drove.WithDepends(filepath.Join(dir, "missing"))); err == nil {
		t.Error("missing depends file: no error")
	}
	e := newCluster(t, getenv, drove.WithEnv("DROVE_TEST_VAR=hello"))
	if got, err := result(t, submit(t, e, "DROVE_TEST_VAR")); err != nil || got != "hello" {
		t.Fatalf("env: %q %v", got, err)
	}
}

func TestMaxPending(t *testing.T) {
	c := newCluster(t, sleep, drove.WithCPUs(1), drove.WithMaxPending(2))
	submit(t, c, 300*time.Millisecond)
	submit(t, c, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Submit(ctx, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third submit: %v, want to block until the deadline", err)
	}
	// It goes through once a job ends.
	j, err := c.Submit(t.Context(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, j); err != nil {
		t.Fatal(err)
	}
}

func TestCloseTerminatesWithCancelledContext(t *testing.T) {
	c, err := drove.NewCluster(t.Context(), sleep, drove.WithCPUs(1), drove.WithCancelGrace(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	running := submit(t, c, time.Hour)
	queued := submit(t, c, time.Hour)
	waitStatus(t, running, drove.Running)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v, want context.Canceled", err)
	}
	for _, j := range []*drove.Job[time.Duration]{running, queued} {
		if !j.Status().Final() {
			t.Errorf("job %d still %s after Close", j.ID(), j.Status())
		}
	}
	if _, err := c.Submit(t.Context(), time.Second); !errors.Is(err, drove.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWaitsForJobs(t *testing.T) {
	c, err := drove.NewCluster(t.Context(), sleep)
	if err != nil {
		t.Fatal(err)
	}
	j := submit(t, c, 100*time.Millisecond)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := j.Result(t.Context()); err != nil || got != 100*time.Millisecond {
		t.Fatalf("job after Close: %v %v", got, err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := t.Context()
	// Registered after drove.Main, as a function defined in main would be;
	// a fresh name each run, since names are taken for good.
	late := drove.Func(fmt.Sprintf("test.late.%d", time.Now().UnixNano()), func(ctx context.Context, n int) (int, error) { return n, nil })
	if _, err := drove.NewCluster(ctx, late); !errors.Is(err, drove.ErrNotRegistered) {
		t.Errorf("late function: %v, want ErrNotRegistered", err)
	}
	if _, err := drove.NewCluster(ctx, drove.Program(filepath.Join(t.TempDir(), "nope"))); err == nil {
		t.Error("missing program: no error")
	}
	if _, err := drove.NewCluster(ctx, square, drove.OnJobStatus(func(drove.JobEvent[string]) {})); err == nil {
		t.Error("callback of the wrong type: no error")
	}
	// A node that is down (a closed loopback port): an error, not a hang.
	if _, err := drove.NewCluster(ctx, square, drove.WithNodes("127.0.0.1:1")); err == nil {
		t.Error("a cluster of one unreachable node: no error")
	}
	c := newCluster(t, unencodable)
	if _, err := c.Submit(ctx, func() {}); !errors.Is(err, drove.ErrEncode) {
		t.Errorf("unencodable input: %v, want ErrEncode", err)
	}
	s := newCluster(t, square)
	if _, err := s.Submit(ctx, 1, drove.OnNode("no-such-node")); !errors.Is(err, drove.ErrNoNode) {
		t.Errorf("unknown node: %v, want ErrNoNode", err)
	}
	if _, err := s.Submit(ctx, 1, drove.Retries(-1)); err == nil {
		t.Error("negative retries: no error")
	}
}

func TestNodeEventsAndPinning(t *testing.T) {
	var mu sync.Mutex
	var events []drove.NodeEvent
	c := newCluster(t, square, drove.OnNodeStatus(func(e drove.NodeEvent) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	node := c.Stats().Nodes[0].Name
	j := submit(t, c, 4, drove.OnNode(node))
	if got, err := result(t, j); err != nil || got != 16 || j.Node() != node {
		t.Fatalf("pinned: %d %v on %q", got, err, j.Node())
	}
	_ = c.Close(t.Context())
	mu.Lock()
	defer mu.Unlock()
	if len(events) == 0 || events[0].Status != drove.NodeInitialized || events[0].Node != node || events[0].CPUs < 1 {
		t.Errorf("node events %+v", events)
	}
}

// waitStatus polls until j reaches status s (or a later one).
func waitStatus[Out any](t *testing.T, j *drove.Job[Out], s drove.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for j.Status() < s {
		if time.Now().After(deadline) {
			t.Fatalf("job %d stuck in %s waiting for %s", j.ID(), j.Status(), s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Many producers at once: every job must finish with its own result. This
// caught frames sent to a worker out of its queue's order.
func TestConcurrentSubmitters(t *testing.T) {
	c := newCluster(t, square)
	const producers, each = 8, 2500
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			jobs := make([]*drove.Job[int], 0, each)
			for i := range each {
				j, err := c.Submit(t.Context(), p*each+i)
				if err != nil {
					errs <- err
					return
				}
				jobs = append(jobs, j)
			}
			for i, j := range jobs {
				n := p*each + i
				if got, err := j.Result(t.Context()); err != nil || got != n*n {
					errs <- fmt.Errorf("job for %d: got %d, %v (%s)", n, got, err, j.Status())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Jobs queued ahead at a worker busy with a long job move to workers that
// go idle: short jobs never wait for the long one.
func TestShortJobsDoNotWaitBehindALongOne(t *testing.T) {
	c := newCluster(t, sleep, drove.WithCPUs(2))
	long := submit(t, c, 3*time.Second)
	var short []*drove.Job[time.Duration]
	for range 12 {
		short = append(short, submit(t, c, 20*time.Millisecond))
	}
	start := time.Now()
	for _, j := range short {
		if _, err := result(t, j); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("short jobs took %v: some waited behind the long job", d)
	}
	if long.Status().Final() {
		t.Errorf("the long job ended before the short ones: %s", long.Status())
	}
	_ = c.Cancel(long)
}

// A worker may hold a finished job's result to send it with the next one's
// (short jobs' results share a write), but never for long: a result does
// not wait for the long job queued behind it on the same worker.
func TestResultNotHeldBehindALongJob(t *testing.T) {
	c := newCluster(t, sleep, drove.WithCPUs(1))
	short := submit(t, c, time.Millisecond)
	long := []*drove.Job[time.Duration]{submit(t, c, 3*time.Second), submit(t, c, 3*time.Second)}
	start := time.Now()
	if _, err := result(t, short); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the short job's result took %v: it waited for the long job behind it", d)
	}
	for _, j := range long {
		_ = c.Cancel(j)
	}
}
