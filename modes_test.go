package drove_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/scheduler"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// mode is where the clusters of TestModes run their jobs: on this machine
// (embedded), on two drove nodes (direct), or through a drove scheduler
// over the same two nodes.
type mode struct {
	name string
	opts []drove.Option // what puts a cluster there
	// nodes are the nodes a cluster sees, with their CPUs: a client of a
	// scheduler sees the scheduler's nodes.
	nodes map[string]int
	// events are the nodes its node events name, with their CPUs: a
	// client of a scheduler is told of the scheduler, with the CPUs of all
	// its nodes.
	events map[string]int
	// remote is set where jobs go over the network: bytes are counted,
	// and a node grants a computation its CPUs.
	remote bool
	// daemons are the addresses of the drove daemons that hold a
	// cluster's computation: its nodes, or the scheduler and its nodes.
	daemons []string
}

// cpus is the number of jobs a cluster of the mode runs at once.
func (m mode) cpus() int {
	n := 0
	for _, c := range m.nodes {
		n += c
	}
	return n
}

// names returns the mode's node names, sorted.
func (m mode) names() []string { return slices.Sorted(maps.Keys(m.nodes)) }

// modeCluster is newCluster in mode m.
func modeCluster[In, Out any](t *testing.T, m mode, fn *drove.Function[In, Out], opts ...drove.Option) *drove.Cluster[In, Out] {
	t.Helper()
	return newCluster(t, fn, append(slices.Clone(m.opts), opts...)...)
}

// modeCases run in every mode, each with clusters of its own.
var modeCases = []struct {
	name string
	run  func(t *testing.T, m mode)
}{
	{"Results", modeResults},
	{"ProgramDepends", modeProgramDepends},
	{"FuncDependsSetupEnv", modeFuncDependsSetupEnv},
	{"Errors", modeErrors},
	{"Output", modeOutput},
	{"Cancel", modeCancel},
	{"Wait", modeWait},
	{"Callbacks", modeCallbacks},
	{"Provisional", modeProvisional},
	{"SendFile", modeSendFile},
	{"SendFileRefused", modeSendFileRefused},
	{"Stats", modeStats},
	{"StatusNodeJobs", modeStatusNodeJobs},
	{"SetNodeCPUs", modeSetNodeCPUs},
	{"Retries", modeRetries},
	{"Timeout", modeTimeout},
	{"MaxPending", modeMaxPending},
	{"Priority", modePriority},
	{"Close", modeClose},
}

// TestModes runs the same cases against an embedded cluster, a cluster of
// two drove nodes and a cluster using a drove scheduler over those nodes:
// a client must not see a difference, but for the nodes it is told of.
// The nodes and the scheduler serve every case of their mode; the cases
// of a mode run one after another (a case may fill every CPU), the modes
// at once.
func TestModes(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// The modes run at once, so each has nodes of its own: a case that
	// fills every CPU must not wait for another mode's jobs. One CPU
	// each: every computation starts a worker per CPU of every node.
	bin := nodetest.Build(t)
	var addrs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		addrs = append(addrs, nodetest.StartProcess(t, bin, nil, "--name", name, "--cpus", "1").Addr)
	}
	direct, behind := addrs[:2], addrs[2:]
	sched, _ := nodetest.StartScheduler(t, behind, func(cfg *node.Config, _ *scheduler.Config) { cfg.Name = "sched" })
	// Setting a computation up on a node starts its workers, which takes
	// a while on a loaded machine.
	slow := drove.WithConnectTimeout(time.Minute)
	modes := []mode{
		{name: "embedded", opts: []drove.Option{drove.WithCPUs(2)}, nodes: map[string]int{host: 2}, events: map[string]int{host: 2}},
		{name: "direct", opts: []drove.Option{drove.WithNodes(direct...), slow}, nodes: map[string]int{"a": 1, "b": 1}, events: map[string]int{"a": 1, "b": 1},
			remote: true, daemons: direct},
		{name: "scheduler", opts: []drove.Option{drove.WithScheduler(sched.Addr().String()), slow}, nodes: map[string]int{"c": 1, "d": 1}, events: map[string]int{"sched": 2},
			remote: true, daemons: append([]string{sched.Addr().String()}, behind...)},
	}
	// The modes run at once, but not as parallel tests: -parallel
	// (GOMAXPROCS by default) would hold one back on a 2-core machine.
	var wg sync.WaitGroup
	for _, m := range modes {
		wg.Go(func() {
			t.Run(m.name, func(t *testing.T) {
				for _, tc := range modeCases {
					t.Run(tc.name, func(t *testing.T) { tc.run(t, m) })
				}
			})
		})
	}
	wg.Wait()
}

// modeResults: every job's result, its status, times and node.
func modeResults(t *testing.T, m mode) {
	c := modeCluster(t, m, square)
	var jobs []*drove.Job[int]
	for i := range 20 {
		jobs = append(jobs, submit(t, c, i))
	}
	custom := submit(t, c, 9, drove.JobID(1000))
	for i, j := range jobs {
		got, err := result(t, j)
		if err != nil || got != i*i || j.Status() != drove.Finished {
			t.Errorf("job %d: %d, %v, %s; want %d Finished", i, got, err, j.Status(), i*i)
		}
		if j.ID() != int64(i+1) {
			t.Errorf("job %d has id %d", i, j.ID())
		}
		if _, ok := m.nodes[j.Node()]; !ok {
			t.Errorf("job %d ran on %q, not one of %v", i, j.Node(), m.names())
		}
		if j.StartTime().IsZero() || j.EndTime().Before(j.StartTime()) {
			t.Errorf("job %d times %v .. %v", i, j.StartTime(), j.EndTime())
		}
	}
	if got, err := result(t, custom); err != nil || got != 81 || custom.ID() != 1000 {
		t.Errorf("job with its own id: %d %v, id %d", got, err, custom.ID())
	}
}

// modeProgramDepends: a program runs with its depends staged beside it,
// and its exit code is its result.
func modeProgramDepends(t *testing.T, m mode) {
	dir := t.TempDir()
	helper := filepath.Join(dir, "helper.sh")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\necho helper ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("line1\nline2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := script(t, `helper.sh; wc -l < data.txt; echo "args: $*" >&2; exit "$1"`)
	c := modeCluster(t, m, drove.Program(prog), drove.WithDepends(helper, data))
	for _, code := range []int{0, 3, 7} {
		args := []string{strconv.Itoa(code), "x y"}
		j := submit(t, c, args)
		got, err := result(t, j)
		if err != nil || got != code || j.Status() != drove.Finished {
			t.Errorf("%q: exit %d, %v, %s; want %d Finished (stderr %q)", args, got, err, j.Status(), code, j.Stderr())
		}
		if s := string(j.Stdout()); s != "helper ran\n2\n" {
			t.Errorf("%q: stdout %q", args, s)
		}
		if s, want := string(j.Stderr()), "args: "+strings.Join(args, " ")+"\n"; s != want {
			t.Errorf("%q: stderr %q, want %q", args, s, want)
		}
	}
}

// modeFuncDependsSetupEnv: a function's depends are staged in its
// working directory, its setup runs in its worker and its environment is
// set there.
func modeFuncDependsSetupEnv(t *testing.T, m mode) {
	data := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(data, []byte("dependency contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := modeCluster(t, m, getenv, drove.WithDepends(data), drove.WithSetup(table), drove.WithEnv("DROVE_TEST_VAR=hello"))
	for range 4 {
		if got, err := result(t, submit(t, c, "DROVE_TEST_VAR")); err != nil || got != "hello" {
			t.Errorf("environment: %q %v", got, err)
		}
	}
	d := modeCluster(t, m, readDep, drove.WithDepends(data))
	for range 4 {
		if got, err := result(t, submit(t, d, "data.txt")); err != nil || got != "dependency contents" {
			t.Errorf("depends: %q %v", got, err)
		}
	}
	s := modeCluster(t, m, lookup, drove.WithSetup(table))
	for key, want := range map[string]int{"a": 1, "b": 2} {
		if got, err := result(t, submit(t, s, key)); err != nil || got != want {
			t.Errorf("setup state %s: %d %v; want %d", key, got, err, want)
		}
	}
	if got, err := result(t, submit(t, s, "pid")); err != nil || got == os.Getpid() || got == 0 {
		t.Errorf("setup ran in pid %d (%v), want a worker's", got, err)
	}
}

// modeErrors: a function's error, its panic and its exit reach the client
// as such, and end the job Terminated.
func modeErrors(t *testing.T, m mode) {
	f := modeCluster(t, m, fail)
	j := submit(t, f, "x")
	_, err := result(t, j)
	var re *drove.RemoteError
	if !errors.As(err, &re) || re.Msg != "failed: x" || j.Status() != drove.Terminated {
		t.Errorf("error return: %v (%T), %s; want RemoteError 'failed: x', Terminated", err, err, j.Status())
	}

	p := modeCluster(t, m, boom)
	for _, s := range []string{"x", "y"} { // the second on a worker started again
		j := submit(t, p, s)
		_, err := result(t, j)
		var pe *drove.PanicError
		if !errors.As(err, &pe) || pe.Value != "boom: "+s || !strings.Contains(pe.Stack, "goroutine") || j.Status() != drove.Terminated {
			t.Errorf("panic %s: %v, %s; want a PanicError with its stack, Terminated", s, err, j.Status())
		}
	}

	x := modeCluster(t, m, exit)
	for _, code := range []int{3} {
		j := submit(t, x, code)
		_, err := result(t, j)
		var xe *drove.ExitError
		if !errors.As(err, &xe) || xe.Code != code || j.Status() != drove.Terminated {
			t.Errorf("exit %d: %v, %s; want an ExitError with code %d, Terminated", code, err, j.Status(), code)
		}
		if want := "exiting with " + strconv.Itoa(code); !strings.Contains(string(j.Stderr()), want) {
			t.Errorf("exit %d: stderr %q, want %q", code, j.Stderr(), want)
		}
	}
}

// modeOutput: each job's stdout and stderr, and only its own.
func modeOutput(t *testing.T, m mode) {
	c := modeCluster(t, m, talk)
	words := []string{"one", "two", "three", "four", "five", "six"}
	var jobs []*drove.Job[string]
	for _, s := range words {
		jobs = append(jobs, submit(t, c, s))
	}
	for i, j := range jobs {
		s := words[i]
		if got, err := result(t, j); err != nil || got != s {
			t.Errorf("%s: %q %v", s, got, err)
		}
		if want := "out: " + s + "\n"; string(j.Stdout()) != want {
			t.Errorf("%s: stdout %q, want %q", s, j.Stdout(), want)
		}
		if want := "err: " + s + "\n"; string(j.Stderr()) != want {
			t.Errorf("%s: stderr %q, want %q", s, j.Stderr(), want)
		}
	}
}

// modeCancel: a queued job cancelled never runs, a running one is
// stopped, one that returns its best when cancelled finishes with it, and
// the cluster goes on.
func modeCancel(t *testing.T, m mode) {
	var mu sync.Mutex
	ran := map[int64]bool{}
	c := modeCluster(t, m, sleep, drove.OnJobStatus(func(e drove.JobEvent[time.Duration]) {
		if e.Status == drove.Running {
			mu.Lock()
			ran[e.Job.ID()] = true
			mu.Unlock()
		}
	}))
	var jobs []*drove.Job[time.Duration]
	for range m.cpus() + 1 {
		jobs = append(jobs, submit(t, c, time.Minute))
	}
	// Every CPU busy, one job left over.
	var running []*drove.Job[time.Duration]
	var queued *drove.Job[time.Duration]
	deadline := time.Now().Add(20 * time.Second)
	for {
		running, queued = nil, nil
		for _, j := range jobs {
			if j.Status() == drove.Running {
				running = append(running, j)
			} else {
				queued = j
			}
		}
		if len(running) == m.cpus() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs running, want %d", len(running), m.cpus())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Cancel(queued); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, queued); !errors.Is(err, drove.ErrCancelled) || queued.Status() != drove.Cancelled {
		t.Errorf("queued job: %v, %s; want ErrCancelled, Cancelled", err, queued.Status())
	}
	start := time.Now()
	for _, j := range running {
		if err := c.Cancel(j); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range running {
		if _, err := result(t, j); !errors.Is(err, drove.ErrCancelled) || j.Status() != drove.Cancelled {
			t.Errorf("running job %d: %v, %s; want ErrCancelled, Cancelled", j.ID(), err, j.Status())
		}
	}
	// sleep ends when its context does: no need for SIGTERM, let alone
	// SIGKILL.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelling running jobs took %v", d)
	}
	if err := c.Cancel(running[0]); err != nil || running[0].Status() != drove.Cancelled {
		t.Errorf("cancelling an ended job: %v, %s", err, running[0].Status())
	}
	if got, err := result(t, submit(t, c, time.Millisecond)); err != nil || got != time.Millisecond {
		t.Errorf("a job after the cancels: %v %v", got, err)
	}
	if err := c.Close(t.Context()); err != nil { // drains the callbacks
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ran[queued.ID()] {
		t.Errorf("the queued job %d ran after all", queued.ID())
	}

	g := modeCluster(t, m, graceful)
	j := submit(t, g, 0)
	waitStatus(t, j, drove.ProvisionalResult)
	if err := g.Cancel(j); err != nil {
		t.Fatal(err)
	}
	if best, err := result(t, j); err != nil || best <= 0 || j.Status() != drove.Finished {
		t.Errorf("graceful job: %d, %v, %s; want Finished with its best result", best, err, j.Status())
	}
}

// modeWait: Wait returns when every job has ended, and with its context's
// error if that ends first.
func modeWait(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	var jobs []*drove.Job[time.Duration]
	for i := range 10 {
		jobs = append(jobs, submit(t, c, time.Duration(i+1)*10*time.Millisecond))
	}
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Status() != drove.Finished {
			t.Errorf("job %d %s after Wait", j.ID(), j.Status())
		}
	}
	long := submit(t, c, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a job running: %v, want its context's deadline", err)
	}
	if err := c.Cancel(long); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(t.Context()); err != nil || long.Status() != drove.Cancelled {
		t.Errorf("Wait after the cancel: %v, job %s", err, long.Status())
	}
}

// modeCallbacks: each job's events come in order, Running then its final
// status with its result, and each node's arrival is reported.
func modeCallbacks(t *testing.T, m mode) {
	var mu sync.Mutex
	events := map[int64][]string{}
	var nodes []drove.NodeEvent
	c := modeCluster(t, m, fail,
		drove.OnJobStatus(func(e drove.JobEvent[int]) {
			mu.Lock()
			defer mu.Unlock()
			ev := e.Status.String()
			if e.Err != nil {
				ev += ":" + e.Err.Error()
			}
			events[e.Job.ID()] = append(events[e.Job.ID()], ev)
		}),
		drove.OnNodeStatus(func(e drove.NodeEvent) {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, e)
		}))
	var jobs []*drove.Job[int]
	for i := range 8 {
		jobs = append(jobs, submit(t, c, strconv.Itoa(i)))
	}
	for _, j := range jobs {
		_, _ = result(t, j)
	}
	if err := c.Close(t.Context()); err != nil { // drains the callbacks
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, j := range jobs {
		// A job queued ahead at a busy worker and given to an idle one
		// is Created again before it runs (embedded: a warm worker's
		// queue).
		got := events[j.ID()]
		for len(got) > 0 && got[0] == "Created" {
			got = got[1:]
		}
		want := []string{"Running", "Terminated:" + (&drove.RemoteError{Msg: "failed: " + strconv.Itoa(i)}).Error()}
		if !slices.Equal(got, want) {
			t.Errorf("job %d: events %q, want %q after any Created", j.ID(), events[j.ID()], want)
		}
	}
	up := map[string]int{}
	for _, e := range nodes {
		if e.Status == drove.NodeInitialized {
			up[e.Node] = e.CPUs
		}
	}
	if !maps.Equal(up, m.events) {
		t.Errorf("nodes initialized %v, want %v", up, m.events)
	}
}

// modeProvisional: provisional results reach the callback and the job in
// order, before the final one.
func modeProvisional(t *testing.T, m mode) {
	var mu sync.Mutex
	var events []string
	c := modeCluster(t, m, provisional, drove.OnJobStatus(func(e drove.JobEvent[int]) {
		mu.Lock()
		events = append(events, e.Status.String()+":"+strconv.Itoa(e.Result))
		mu.Unlock()
	}))
	j := submit(t, c, 5)
	if got, err := result(t, j); err != nil || got != 5 {
		t.Fatal(got, err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "Running:0 ProvisionalResult:1 ProvisionalResult:2 ProvisionalResult:3 ProvisionalResult:4 Finished:5"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
}

// modeSendFile: files jobs send back land in the destination directory.
func modeSendFile(t *testing.T, m mode) {
	dest := t.TempDir()
	c := modeCluster(t, m, sendFile, drove.WithDestDir(dest))
	names := []string{"r1.txt", "r2.txt", "r3.txt", "r4.txt", "r5.txt", "r6.txt"}
	var jobs []*drove.Job[int]
	for _, name := range names {
		jobs = append(jobs, submit(t, c, name))
	}
	for i, j := range jobs {
		n, err := result(t, j)
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dest, names[i]))
		if want := "payload of " + names[i]; err != nil || string(b) != want || len(b) != n {
			t.Errorf("%s: received %q, %v; want %q", names[i], b, err, want)
		}
	}
}

// modeSendFileRefused: a file the client refuses — its name leads out of
// the destination directory through a symbolic link there — is the job's
// SendFile error, and nothing lands outside; a file in a subdirectory
// lands there.
func modeSendFileRefused(t *testing.T, m mode) {
	dest, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dest, "out")); err != nil {
		t.Fatal(err)
	}
	c := modeCluster(t, m, sendFileIn, drove.WithDestDir(dest))
	j := submit(t, c, "out/x.txt")
	if _, err := result(t, j); err == nil || !strings.Contains(err.Error(), "refused") || j.Status() != drove.Terminated {
		t.Errorf("job %v with error %v, want Terminated with SendFile's refusal", j.Status(), err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("file written outside the destination: %v", ents)
	}
	if _, err := result(t, submit(t, c, "sub/dir/y.txt")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "sub", "dir", "y.txt")); err != nil || string(b) != "payload" {
		t.Errorf("file in a subdirectory: %q %v", b, err)
	}
}

// modeStats: the stats table counts every job, on the nodes the mode
// has.
func modeStats(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	const n = 12
	for range n {
		submit(t, c, 20*time.Millisecond)
	}
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Pending != 0 || st.Running != 0 {
		t.Errorf("after Wait: %d pending, %d running", st.Pending, st.Running)
	}
	got := map[string]int{}
	jobs := 0
	for _, ns := range st.Nodes {
		got[ns.Name] = ns.CPUs
		jobs += ns.Jobs
		if ns.Jobs > 0 && ns.NodeTime < time.Duration(ns.Jobs)*20*time.Millisecond {
			t.Errorf("node %s: %d jobs of 20ms in %v", ns.Name, ns.Jobs, ns.NodeTime)
		}
		if m.remote && ns.Jobs > 0 && (ns.Sent == 0 || ns.Received == 0) {
			t.Errorf("node %s: %d jobs, %d bytes sent, %d received", ns.Name, ns.Jobs, ns.Sent, ns.Received)
		}
		if ns.Busy != 0 || ns.Lost {
			t.Errorf("node %s: %+v after Wait", ns.Name, ns)
		}
	}
	if jobs != n || !maps.Equal(got, m.nodes) {
		t.Errorf("stats count %d jobs on %v, want %d on %v", jobs, got, n, m.nodes)
	}
	if st.TotalJobTime < n*20*time.Millisecond {
		t.Errorf("total job time %v for %d jobs of 20ms", st.TotalJobTime, n)
	}
	var b bytes.Buffer
	if err := st.Print(&b); err != nil {
		t.Fatal(err)
	}
	for name := range m.nodes {
		if !strings.Contains(b.String(), name) {
			t.Errorf("printed stats lack node %s:\n%s", name, b.String())
		}
	}
}

// modeStatusNodeJobs: Status lists the mode's nodes and counts the jobs
// running, NodeJobs finds each running job on its node, and SetNodeCPUs
// changes a node's CPUs within what it granted.
func modeStatusNodeJobs(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	cs := c.Status()
	got := map[string]int{}
	for _, n := range cs.Nodes {
		got[n.Name] = n.CPUs
		if !n.Up {
			t.Errorf("node %s is not up: %+v", n.Name, n)
		}
	}
	if !maps.Equal(got, m.nodes) {
		t.Errorf("Status lists %v, want %v", got, m.nodes)
	}

	jobs := []*drove.Job[time.Duration]{submit(t, c, time.Minute), submit(t, c, time.Minute)}
	for _, j := range jobs {
		waitStatus(t, j, drove.Running)
	}
	if cs := c.Status(); cs.Running != 2 || cs.Pending != 0 {
		t.Errorf("Status with 2 jobs running: %d running, %d pending", cs.Running, cs.Pending)
	}
	for _, j := range jobs {
		if !slices.Contains(c.NodeJobs(j.Node()), j) {
			t.Errorf("NodeJobs(%q) lacks job %d running there", j.Node(), j.ID())
		}
	}
	if js := c.NodeJobs("nope"); len(js) != 0 {
		t.Errorf("NodeJobs of an unknown node: %d jobs", len(js))
	}
	for _, j := range jobs {
		if err := c.Cancel(j); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range m.names() {
		if js := c.NodeJobs(name); len(js) != 0 {
			t.Errorf("NodeJobs(%q) after the jobs ended: %d jobs", name, len(js))
		}
	}

	name := m.names()[0]
	if err := c.SetNodeCPUs(name, 1); err != nil {
		t.Fatal(err)
	}
	if st, ok := stat(c, name); !ok || st.CPUs != 1 {
		t.Errorf("after SetNodeCPUs(%q, 1): %+v", name, st)
	}
	if m.remote {
		if err := c.SetNodeCPUs(name, m.nodes[name]+1); err == nil {
			t.Errorf("SetNodeCPUs(%q, %d) beyond the %d CPUs the node granted", name, m.nodes[name]+1, m.nodes[name])
		}
	}
	if err := c.SetNodeCPUs("nope", 1); err == nil {
		t.Error("SetNodeCPUs of an unknown node")
	}
}

// modeSetNodeCPUs: SetNodeCPUs bounds what a node runs of the cluster's
// jobs at once, not only what it reports: the first node set to one CPU
// less runs no more than that at once (a node set to 0 runs none), every
// job still ends on a node the cluster knows, and the stats and Status
// say so.
func modeSetNodeCPUs(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	name := m.names()[0]
	bound := m.nodes[name] - 1
	if err := c.SetNodeCPUs(name, bound); err != nil {
		t.Fatal(err)
	}
	if st, ok := stat(c, name); !ok || st.CPUs != bound {
		t.Errorf("stats after SetNodeCPUs(%q, %d): %+v", name, bound, st)
	}
	for _, n := range c.Status().Nodes {
		if n.Name == name && n.CPUs != bound {
			t.Errorf("Status after SetNodeCPUs(%q, %d): %+v", name, bound, n)
		}
	}
	var jobs []*drove.Job[time.Duration]
	for range 6 {
		jobs = append(jobs, submit(t, c, 100*time.Millisecond))
	}
	type span struct{ start, end time.Time }
	var there []span
	for _, j := range jobs {
		if _, err := result(t, j); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.nodes[j.Node()]; !ok {
			t.Errorf("job %d ran on %q, not one of %v", j.ID(), j.Node(), m.names())
		}
		if j.Node() == name {
			there = append(there, span{j.StartTime(), j.EndTime()})
		}
	}
	most := 0
	for _, a := range there {
		n := 0
		for _, b := range there {
			if !b.start.After(a.start) && a.start.Before(b.end) {
				n++
			}
		}
		most = max(most, n)
	}
	if most > bound {
		t.Errorf("node %s set to %d CPUs ran %d of the jobs at once", name, bound, most)
	}
	jobsThere := 0
	for _, ns := range c.Stats().Nodes {
		if ns.Name == name {
			jobsThere = ns.Jobs
		}
	}
	if jobsThere != len(there) {
		t.Errorf("stats count %d jobs on %s, the jobs say %d", jobsThere, name, len(there))
	}
}

// modeRetries: a failed job runs again while it has retries; one that
// times out each time runs 1 + retries times.
func modeRetries(t *testing.T, m mode) {
	f := modeCluster(t, m, flaky)
	marker := filepath.Join(t.TempDir(), "marker")
	if got, err := result(t, submit(t, f, marker, drove.Retries(1))); err != nil || got != "second attempt" {
		t.Errorf("flaky job with a retry: %q %v", got, err)
	}
	marker2 := filepath.Join(t.TempDir(), "marker")
	if _, err := result(t, submit(t, f, marker2)); err == nil {
		t.Errorf("flaky job without retries succeeded")
	}

	var mu sync.Mutex
	runs := 0
	c := modeCluster(t, m, sleep, drove.OnJobStatus(func(e drove.JobEvent[time.Duration]) {
		if e.Status == drove.Running {
			mu.Lock()
			runs++
			mu.Unlock()
		}
	}))
	j := submit(t, c, time.Minute, drove.Timeout(300*time.Millisecond), drove.Retries(2))
	if _, err := result(t, j); !errors.Is(err, drove.ErrTimeout) || j.Status() != drove.Terminated {
		t.Errorf("job timing out with 2 retries: %v, %s; want ErrTimeout, Terminated", err, j.Status())
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if runs != 3 {
		t.Errorf("ran %d times, want 3 (1 + 2 retries)", runs)
	}
}

// modeTimeout: a job that outlives its timeout is stopped and fails with
// ErrTimeout; the cluster goes on.
func modeTimeout(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	start := time.Now()
	j := submit(t, c, time.Minute, drove.Timeout(200*time.Millisecond))
	if _, err := result(t, j); !errors.Is(err, drove.ErrTimeout) || j.Status() != drove.Terminated {
		t.Errorf("got %v, %s; want ErrTimeout, Terminated", err, j.Status())
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 15*time.Second {
		t.Errorf("timed out after %v", d)
	}
	if got, err := result(t, submit(t, c, time.Millisecond, drove.Timeout(10*time.Second))); err != nil || got != time.Millisecond {
		t.Errorf("job within its timeout: %v %v", got, err)
	}

	p := modeCluster(t, m, drove.Program("sleep"))
	pj := submit(t, p, []string{"60"}, drove.Timeout(200*time.Millisecond))
	if _, err := result(t, pj); !errors.Is(err, drove.ErrTimeout) || pj.Status() != drove.Terminated {
		t.Errorf("program: got %v, %s; want ErrTimeout, Terminated", err, pj.Status())
	}
}

// modeMaxPending: Submit blocks while the bound of unfinished jobs is
// reached, and goes on once one ends.
func modeMaxPending(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep, drove.WithMaxPending(2))
	first := submit(t, c, time.Minute)
	second := submit(t, c, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Submit(ctx, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third submit: %v, want to block until its deadline", err)
	}
	if err := c.Cancel(first); err != nil {
		t.Fatal(err)
	}
	j, err := c.Submit(t.Context(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := result(t, j); err != nil || got != time.Millisecond {
		t.Errorf("job once a slot freed: %v %v", got, err)
	}
	if err := c.Cancel(second); err != nil {
		t.Fatal(err)
	}
}

// modeClose: Close waits for the jobs running; with its context ended it
// stops them. Either way the computation is closed on every daemon that
// held it, which then runs nothing of it.
func modeClose(t *testing.T, m mode) {
	c := modeCluster(t, m, sleep)
	j := submit(t, c, 100*time.Millisecond)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := result(t, j); err != nil || got != 100*time.Millisecond {
		t.Errorf("job after Close: %v %v", got, err)
	}
	waitReleased(t, m)

	// Not modeCluster: its cleanup's Close would get this Close's error.
	k, err := drove.NewCluster(t.Context(), sleep, append(slices.Clone(m.opts), drove.WithCancelGrace(300*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	jobs := []*drove.Job[time.Duration]{submit(t, k, time.Hour), submit(t, k, time.Hour), submit(t, k, time.Hour)}
	waitStatus(t, jobs[0], drove.Running)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := k.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close with its context ended: %v, want context.Canceled", err)
	}
	for _, j := range jobs {
		if !j.Status().Final() {
			t.Errorf("job %d still %s after Close", j.ID(), j.Status())
		}
	}
	if _, err := k.Submit(t.Context(), time.Second); !errors.Is(err, drove.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
	waitReleased(t, m)
}

// waitReleased waits until no daemon of m holds a computation or runs a
// job.
func waitReleased(t *testing.T, m mode) {
	t.Helper()
	hc := nodeexec.NewHTTPClient("", nil)
	defer hc.CloseIdleConnections()
	for _, addr := range m.daemons {
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := nodeexec.Info(t.Context(), hc, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.Computations == 0 && info.Busy == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (%s) still has %d computations, %d jobs running after Close", info.Name, addr, info.Computations, info.Busy)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// modePriority: while every CPU is busy, queued jobs wait at the client
// and start by priority, then in submit order: with two CPUs, the two of
// priority 5 first, then the others.
func modePriority(t *testing.T, m mode) {
	if m.cpus() != 2 {
		t.Fatalf("the case is written for 2 CPUs, the mode has %d", m.cpus())
	}
	var mu sync.Mutex
	var order []int64
	c := modeCluster(t, m, sleep, drove.OnJobStatus(func(e drove.JobEvent[time.Duration]) {
		if e.Status == drove.Running {
			mu.Lock()
			order = append(order, e.Job.ID())
			mu.Unlock()
		}
	}))
	blockers := []*drove.Job[time.Duration]{submit(t, c, 300*time.Millisecond), submit(t, c, 300*time.Millisecond)}
	for _, j := range blockers {
		waitStatus(t, j, drove.Running)
	}
	// Long enough that the second pair starts well after the first.
	submit(t, c, 500*time.Millisecond, drove.JobID(10), drove.Priority(0))
	submit(t, c, 500*time.Millisecond, drove.JobID(11), drove.Priority(5))
	submit(t, c, 500*time.Millisecond, drove.JobID(12), drove.Priority(-1))
	submit(t, c, 500*time.Millisecond, drove.JobID(13), drove.Priority(5))
	if err := c.Close(t.Context()); err != nil { // waits for the jobs and drains the callbacks
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 6 {
		t.Fatalf("started %v, want 6 jobs", order)
	}
	waves := [][]int64{order[0:2], order[2:4], order[4:6]}
	want := [][]int64{{1, 2}, {11, 13}, {10, 12}}
	for i := range waves {
		slices.Sort(waves[i])
		if !slices.Equal(waves[i], want[i]) {
			t.Fatalf("started %v, want pairs %v", order, want)
		}
	}
}
