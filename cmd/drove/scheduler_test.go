package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/testutil/netnstest"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// The scheduler tests run real processes: two drove nodes of one CPU each,
// a drove scheduler in front of them, and clients in the test process
// whose jobs run in workers made from the test binary (TestMain).

// SchedJob is a job of the scheduler tests: it waits until the file Gate
// exists (if set), then sleeps Sleep; if Marks is set, it records that it
// ran by creating a file there. It returns its working directory, which is
// below the --dest-path of the node that ran it.
type SchedJob struct {
	ID    int
	Sleep time.Duration
	Gate  string
	Marks string
}

var schedJob = drove.Func("drove.test.schedjob", func(ctx context.Context, j SchedJob) (string, error) {
	for j.Gate != "" {
		if _, err := os.Stat(j.Gate); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-time.After(j.Sleep):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if j.Marks != "" {
		f, err := os.CreateTemp(j.Marks, fmt.Sprintf("%d-*", j.ID))
		if err != nil {
			return "", err
		}
		f.Close()
	}
	return os.Getwd()
})

const (
	schedClientSecret = "sched-client-secret"
	schedNodeSecret   = "sched-node-secret"
)

// startSchedProc runs "drove scheduler" (nodetest.StartSchedulerProcess) with
// the clients' and the nodes' secrets of the tests, which env may change.
func startSchedProc(t *testing.T, bin string, env []string, args ...string) *nodetest.Process {
	t.Helper()
	env = append([]string{"DROVE_SECRET=" + schedClientSecret, nodeSecretEnv + "=" + schedNodeSecret}, env...)
	return nodetest.StartSchedulerProcess(t, bin, env, args...)
}

// waitNodes waits until the scheduler has logged that each named node is
// up, n times in all.
func waitNodes(t *testing.T, p *nodetest.Process, n int, names ...string) {
	t.Helper()
	waitFor(t, 60*time.Second, func() bool {
		log := p.Stderr.String()
		for _, name := range names {
			if strings.Count(log, `msg="node up" node=`+name+" ") < n {
				return false
			}
		}
		return true
	}, "nodes %v up at the scheduler", names)
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for "+format, append([]any{d}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSchedNodes starts two drove nodes of one CPU each with the nodes'
// secret.
func startSchedNodes(t *testing.T, bin string) (a, b *nodeProc) {
	env := []string{"DROVE_SECRET=" + schedNodeSecret}
	a = startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "1")
	b = startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "1")
	return a, b
}

// schedClient is a cluster that uses the scheduler at addr.
func schedClient(t *testing.T, addr string, opts ...drove.Option) *drove.Cluster[SchedJob, string] {
	t.Helper()
	opts = append([]drove.Option{drove.WithScheduler(addr), drove.WithSecret(schedClientSecret)}, opts...)
	c, err := drove.NewCluster(t.Context(), schedJob, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// submitAll submits jobs and returns them.
func submitAll(t *testing.T, c *drove.Cluster[SchedJob, string], jobs ...SchedJob) []*drove.Job[string] {
	t.Helper()
	out := make([]*drove.Job[string], 0, len(jobs))
	for _, in := range jobs {
		j, err := c.Submit(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

// sleeps returns n jobs that sleep d, with ids from first.
func sleeps(first, n int, d time.Duration) []SchedJob {
	js := make([]SchedJob, n)
	for i := range js {
		js[i] = SchedJob{ID: first + i, Sleep: d}
	}
	return js
}

// waitJobs waits for every job to end and fails the test for one that did
// not finish.
func waitJobs(t *testing.T, jobs []*drove.Job[string]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, j := range jobs {
		if _, err := j.Result(ctx); err != nil {
			t.Fatalf("job %d: %v %v", j.ID(), j.Status(), err)
		}
	}
}

// TestSchedulerPolicies: two clients share two nodes of one CPU through
// one scheduler, under each policy.
func TestSchedulerPolicies(t *testing.T) {
	bin := buildDrove(t)
	a, b := startSchedNodes(t, bin)
	nodes := a.addr + "," + b.addr

	t.Run("fair", func(t *testing.T) {
		s := startSchedProc(t, bin, nil, "--nodes", nodes, "--policy", "fair")
		waitNodes(t, s, 1, "nodeA", "nodeB")
		c1 := schedClient(t, s.Addr)
		c2 := schedClient(t, s.Addr)
		var jobs [2][]*drove.Job[string]
		var wg sync.WaitGroup
		for i, c := range []*drove.Cluster[SchedJob, string]{c1, c2} {
			wg.Go(func() { jobs[i] = submitAll(t, c, sleeps(1, 400, 50*time.Millisecond)...) })
		}
		wg.Wait()
		for _, js := range jobs {
			waitJobs(t, js)
		}
		// The window where both had jobs waiting: from when both had
		// begun to when the first ran out of jobs to start.
		var from, to time.Time
		for i, js := range jobs {
			first, last := js[0].StartTime(), js[0].StartTime()
			for _, j := range js {
				if st := j.StartTime(); st.Before(first) {
					first = st
				} else if st.After(last) {
					last = st
				}
			}
			if i == 0 || first.After(from) {
				from = first
			}
			if i == 0 || last.Before(to) {
				to = last
			}
		}
		if !to.After(from.Add(5 * time.Second)) {
			t.Fatalf("both clients had jobs waiting only from %v to %v", from, to)
		}
		var used [2]time.Duration
		for i, js := range jobs {
			for _, j := range js {
				s, e := j.StartTime(), j.EndTime()
				if s.Before(from) {
					s = from
				}
				if e.After(to) {
					e = to
				}
				if e.After(s) {
					used[i] += e.Sub(s)
				}
			}
		}
		share := float64(used[0]) / float64(used[0]+used[1])
		t.Logf("fair: over %v with both waiting, node time %v and %v: shares %.3f and %.3f", to.Sub(from).Round(time.Millisecond), used[0].Round(time.Millisecond), used[1].Round(time.Millisecond), share, 1-share)
		if share < 0.4 || share > 0.6 {
			t.Errorf("first client's share of the node time %.3f, want 0.5 ± 0.1", share)
		}
	})

	// The order policies: while both nodes run gate jobs of the first
	// client (created first), the scheduler receives 4 more jobs of it
	// (A1), then 4 of the second client (B1), then 4 more of the first
	// (A2); then the gate opens. fsfs runs A1, B1, A2; early runs A1 and
	// A2, then B1.
	for _, tc := range []struct {
		policy string
		before [][2]string // group pairs: every job of the first starts before every job of the second
	}{
		{"fsfs", [][2]string{{"A1", "B1"}, {"B1", "A2"}}},
		{"early", [][2]string{{"A1", "B1"}, {"A2", "B1"}}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			s := startSchedProc(t, bin, nil, "--nodes", nodes, "--policy", tc.policy)
			waitNodes(t, s, 1, "nodeA", "nodeB")
			ca := schedClient(t, s.Addr)
			cb := schedClient(t, s.Addr)
			gate := openGate(t)
			gates := submitAll(t, ca, SchedJob{ID: 1, Gate: gate}, SchedJob{ID: 2, Gate: gate})
			waitFor(t, time.Minute, func() bool { return !gates[0].StartTime().IsZero() && !gates[1].StartTime().IsZero() }, "both gate jobs to start")
			groups := map[string][]*drove.Job[string]{}
			queued := 0
			for _, g := range []struct {
				name string
				c    *drove.Cluster[SchedJob, string]
			}{{"A1", ca}, {"B1", cb}, {"A2", ca}} {
				groups[g.name] = submitAll(t, g.c, sleeps(10, 4, 30*time.Millisecond)...)
				queued += 4
				waitFor(t, time.Minute, func() bool { return nodeMetric(s.Addr, "drove_node_jobs_queued") == float64(queued) }, "%d jobs queued at the scheduler", queued)
			}
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, js := range groups {
				waitJobs(t, js)
			}
			waitJobs(t, gates)
			var order []string
			all := slices.Concat(groups["A1"], groups["B1"], groups["A2"])
			slices.SortFunc(all, func(x, y *drove.Job[string]) int { return x.StartTime().Compare(y.StartTime()) })
			for _, j := range all {
				for name, js := range groups {
					if slices.Contains(js, j) {
						order = append(order, name)
					}
				}
			}
			t.Logf("%s: start order %v", tc.policy, order)
			for _, p := range tc.before {
				// Two nodes: the last job of a group and the first of
				// the next, handed out one after the other to different
				// nodes, may start in either order.
				if n := inversions(groups[p[0]], groups[p[1]]); n > 1 {
					t.Errorf("%s: %d pairs of a %s job starting after a %s job, want at most 1 (start order %v)", tc.policy, n, p[0], p[1], order)
				}
			}
		})
	}
}

// openGate returns the path of a gate for SchedJob that opens (the file
// is made) at the latest when the test ends, before its clients close.
func openGate(t *testing.T) string {
	gate := filepath.Join(t.TempDir(), "gate")
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })
	return gate
}

// inversions counts the pairs of a job of first that started after a job
// of second.
func inversions(first, second []*drove.Job[string]) int {
	n := 0
	for _, f := range first {
		for _, s := range second {
			if f.StartTime().After(s.StartTime()) {
				n++
			}
		}
	}
	return n
}

// unfinished is how many jobs a node or scheduler holds: queued and
// running.
func unfinished(addr string) float64 {
	return nodeMetric(addr, "drove_node_jobs_queued") + nodeMetric(addr, "drove_node_jobs_running")
}

// TestSchedulerExclusive: a computation made with drove.WithExclusive runs
// alone, through a scheduler and on a drove node that clients use
// directly. Every job is held at a gate until all of both clients' jobs
// are at the scheduler (or node), so the order is the policy's alone.
func TestSchedulerExclusive(t *testing.T) {
	bin := buildDrove(t)
	a, b := startSchedNodes(t, bin)
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr)
	waitNodes(t, s, 1, "nodeA", "nodeB")
	for _, tc := range []struct {
		name string
		addr string // where the jobs wait, for the metrics
		opts []drove.Option
	}{
		{"scheduler", s.Addr, []drove.Option{drove.WithScheduler(s.Addr), drove.WithSecret(schedClientSecret)}},
		{"node", a.addr, []drove.Option{drove.WithNodes(a.addr), drove.WithSecret(schedNodeSecret)}},
	} {
		for _, exclusiveFirst := range []bool{true, false} {
			name := tc.name + "/exclusive first"
			if !exclusiveFirst {
				name = tc.name + "/exclusive second"
			}
			t.Run(name, func(t *testing.T) {
				gate := openGate(t)
				var groups [2][]*drove.Job[string] // in the order of the clients' creation
				for i := range groups {
					opts := tc.opts
					if (i == 0) == exclusiveFirst {
						opts = append(slices.Clip(opts), drove.WithExclusive())
					}
					c, err := drove.NewCluster(t.Context(), schedJob, opts...)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = c.Close(context.Background()) })
					js := sleeps(1, 4, 50*time.Millisecond)
					for k := range js {
						js[k].Gate = gate
					}
					groups[i] = submitAll(t, c, js...)
					waitFor(t, time.Minute, func() bool { return unfinished(tc.addr) == float64(4*(i+1)) }, "%d jobs at %s", 4*(i+1), tc.addr)
				}
				if err := os.WriteFile(gate, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				waitJobs(t, groups[0])
				waitJobs(t, groups[1])
				var lastEnd, firstStart time.Time
				for _, j := range groups[0] {
					if j.EndTime().After(lastEnd) {
						lastEnd = j.EndTime()
					}
				}
				firstStart = groups[1][0].StartTime()
				for _, j := range groups[1] {
					if j.StartTime().Before(firstStart) {
						firstStart = j.StartTime()
					}
				}
				t.Logf("first computation's jobs ended by %s, the second's began at %s", lastEnd.Format("15:04:05.000"), firstStart.Format("15:04:05.000"))
				if !firstStart.After(lastEnd) {
					t.Errorf("a job of the second computation started at %v, before the first's last job ended at %v", firstStart, lastEnd)
				}
			})
		}
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// destPath returns the --dest-path of a node process.
func destPath(p *nodeProc) string {
	args := p.cmd.Args
	i := slices.Index(args, "--dest-path")
	return args[i+1]
}

// waitStarted waits until every job has started.
func waitStarted(t *testing.T, jobs ...*drove.Job[string]) {
	t.Helper()
	waitFor(t, time.Minute, func() bool {
		for _, j := range jobs {
			if j.StartTime().IsZero() {
				return false
			}
		}
		return true
	}, "%d jobs to start", len(jobs))
}

// TestSchedulerNodeKilled: the node running a job of a reentrant client
// and one of another client is killed with SIGKILL. The reentrant job runs
// again on the other node and finishes; the other ends Abandoned with the
// node named; the scheduler goes on serving both clients on the node left.
func TestSchedulerNodeKilled(t *testing.T) {
	bin := buildDrove(t)
	env := []string{"DROVE_SECRET=" + schedNodeSecret}
	a := startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "2")
	// nodeB starts once both jobs run on nodeA: the scheduler tries its
	// address until it answers.
	bAddr := freeAddr(t)
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+bAddr)
	waitNodes(t, s, 1, "nodeA")
	re := schedClient(t, s.Addr, drove.WithReentrant(true))
	other := schedClient(t, s.Addr)
	gate := openGate(t)
	reJob := submitAll(t, re, SchedJob{ID: 1, Gate: gate})[0]
	waitStarted(t, reJob)
	otherJob := submitAll(t, other, SchedJob{ID: 1, Gate: gate})[0]
	waitStarted(t, otherJob)
	_, port, _ := net.SplitHostPort(bAddr)
	b := startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "2", "--port", port)
	waitNodes(t, s, 1, "nodeB")
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.done <- <-a.done // waited for, and left for the cleanup
	// The reentrant job runs again, on nodeB: it starts there before the
	// gate opens.
	waitFor(t, time.Minute, func() bool { return nodeMetric(bAddr, "drove_node_jobs_running") == 1 }, "the reentrant job to run again on nodeB")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir, err := reJob.Result(ctx)
	if err != nil {
		t.Fatalf("reentrant job: %v %v", reJob.Status(), err)
	}
	if !strings.HasPrefix(dir, destPath(b)+"/") {
		t.Errorf("reentrant job ran in %s, not on nodeB (%s)", dir, destPath(b))
	}
	_, err = otherJob.Result(ctx)
	t.Logf("the other client's job: %v: %v", otherJob.Status(), err)
	if otherJob.Status() != drove.Abandoned || !strings.Contains(fmt.Sprint(err), "node lost: nodeA") {
		t.Errorf("the other client's job: %v %v, want Abandoned, node lost", otherJob.Status(), err)
	}
	// Both clients go on, on nodeB.
	for _, c := range []*drove.Cluster[SchedJob, string]{re, other} {
		waitJobs(t, submitAll(t, c, sleeps(2, 3, time.Millisecond)...))
	}
}

// TestSchedulerSecrets: a client with the wrong secret, and a scheduler
// whose secret a node refuses, get errors that say so; the scheduler goes
// on serving the clients it can.
func TestSchedulerSecrets(t *testing.T) {
	bin := buildDrove(t)
	a := startNodeProc(t, bin, []string{"DROVE_SECRET=" + schedNodeSecret}, "--name", "nodeA", "--cpus", "1")
	other := startNodeProc(t, bin, []string{"DROVE_SECRET=another-secret"}, "--name", "nodeC", "--cpus", "1")
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+other.addr)
	waitNodes(t, s, 1, "nodeA")

	t.Run("client", func(t *testing.T) {
		_, err := drove.NewCluster(t.Context(), schedJob, drove.WithScheduler(s.Addr), drove.WithSecret("wrong"))
		t.Logf("wrong client secret: %v", err)
		if err == nil || !strings.Contains(err.Error(), "secret") {
			t.Errorf("wrong client secret: %v, want an error about the secret", err)
		}
		c := schedClient(t, s.Addr)
		waitJobs(t, submitAll(t, c, sleeps(1, 4, time.Millisecond)...))
	})

	t.Run("node", func(t *testing.T) {
		// The scheduler serves clients on nodeA and says why nodeC is
		// not used.
		c := schedClient(t, s.Addr)
		waitJobs(t, submitAll(t, c, sleeps(1, 4, time.Millisecond)...))
		waitFor(t, 30*time.Second, func() bool {
			return regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(other.addr) + `.*secret.*$`).MatchString(s.Stderr.String())
		}, "the scheduler's log to say that %s refused its secret", other.addr)
		t.Logf("scheduler's log: %s", regexp.MustCompile(`(?m)^.*`+regexp.QuoteMeta(other.addr)+`.*secret.*$`).FindString(s.Stderr.String()))

		// A scheduler whose nodes all refuse its secret fails the
		// client's computation, and says why.
		lone := startSchedProc(t, bin, nil, "--nodes", other.addr)
		_, err := drove.NewCluster(t.Context(), schedJob, drove.WithScheduler(lone.Addr), drove.WithSecret(schedClientSecret))
		t.Logf("no node takes the scheduler's secret: %v", err)
		if err == nil || !strings.Contains(err.Error(), "no node can") || !strings.Contains(err.Error(), "secret") {
			t.Errorf("no node takes the scheduler's secret: %v, want an error saying no node can be used, and why", err)
		}
	})
}

// blobBytes reads how many blob bytes each daemon has received.
func blobBytes(addrs ...string) []float64 {
	out := make([]float64, len(addrs))
	for i, a := range addrs {
		out[i] = nodeMetric(a, "drove_node_blob_received_bytes_total")
	}
	return out
}

// TestSchedulerShipsOnce: a computation goes to the scheduler once and to
// each node once. A second client with the same executable, or the same
// program, sends the scheduler no blob bytes, and the scheduler sends the
// nodes none.
func TestSchedulerShipsOnce(t *testing.T) {
	bin := buildDrove(t)
	a, b := startSchedNodes(t, bin)
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr)
	waitNodes(t, s, 1, "nodeA", "nodeB")
	prog := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []drove.Option{drove.WithScheduler(s.Addr), drove.WithSecret(schedClientSecret)}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) // one client: runs 4 jobs, and stays open until the test's end
	}{
		{"function", func(t *testing.T) {
			c := schedClient(t, s.Addr)
			waitJobs(t, submitAll(t, c, sleeps(1, 4, time.Millisecond)...))
		}},
		{"program", func(t *testing.T) {
			c, err := drove.NewCluster(t.Context(), drove.Program(prog), opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			for i := range 4 {
				j, err := c.Submit(t.Context(), []string{fmt.Sprint(i)})
				if err != nil {
					t.Fatal(err)
				}
				if code, err := j.Result(t.Context()); err != nil || code != 0 {
					t.Fatalf("job %d: exit %d, %v", i, code, err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := blobBytes(s.Addr, a.addr, b.addr)
			tc.run(t)
			first := blobBytes(s.Addr, a.addr, b.addr)
			tc.run(t)
			second := blobBytes(s.Addr, a.addr, b.addr)
			t.Logf("blob bytes received by the scheduler, nodeA, nodeB: before %v, after the first client %v, after the second %v", before, first, second)
			for i, who := range []string{"scheduler", "nodeA", "nodeB"} {
				if first[i] <= before[i] {
					t.Errorf("the %s received no blob bytes for the first client (%v, then %v)", who, before[i], first[i])
				}
				if second[i] != first[i] {
					t.Errorf("the %s received %v blob bytes for the second client", who, second[i]-first[i])
				}
			}
		})
	}
}

// TestSchedulerLinkCut: the link between the scheduler and one of its two
// nodes is cut for 10 s (network namespaces: each node on a host of its
// own, the scheduler and the clients in the test's namespace) while two
// clients' reentrant jobs run. Every job ends once, Finished; the node
// that was cut off is used again once its link is back; and no job runs
// more than once except the ones the cut node was running (the scheduler
// queues nothing ahead at a node while two computations share it).
func TestSchedulerLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test skipped in -short mode")
	}
	l := netnstest.New(t, 2)
	l.JoinHere()
	bin := buildDrove(t)
	var nodes []string
	for i := 1; i <= 2; i++ {
		startNodeProc(t, l.Wrap(i, bin), []string{"DROVE_SECRET=" + schedNodeSecret},
			"--name", fmt.Sprintf("node%d", i), "--cpus", "1", "--host", l.Addr(i), "--port", "9701")
		nodes = append(nodes, l.Addr(i)+":9701")
	}
	s := startSchedProc(t, bin, nil, "--nodes", strings.Join(nodes, ","))
	waitNodes(t, s, 1, "node1", "node2")

	marks := t.TempDir()
	var mu sync.Mutex
	finals := map[int]int{} // by SchedJob.ID
	ids := map[*drove.Job[string]]int{}
	const perClient = 150
	var jobs []*drove.Job[string]
	for k := range 2 {
		c := schedClient(t, s.Addr, drove.WithReentrant(true), drove.OnJobStatus(func(ev drove.JobEvent[string]) {
			if ev.Status.Final() {
				mu.Lock()
				finals[ids[ev.Job]]++
				mu.Unlock()
			}
		}))
		for i := range perClient {
			in := SchedJob{ID: 1000*k + i, Sleep: 50 * time.Millisecond, Marks: marks}
			// Under mu: the callback may run before Submit returns.
			mu.Lock()
			j, err := c.Submit(t.Context(), in)
			if err != nil {
				mu.Unlock()
				t.Fatal(err)
			}
			ids[j] = in.ID
			mu.Unlock()
			jobs = append(jobs, j)
		}
	}
	ended := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(finals)
	}
	waitFor(t, time.Minute, func() bool { return ended() >= 40 }, "40 jobs to end")
	l.SetLink(1, false)
	cutAt := ended()
	time.Sleep(10 * time.Second) // the cut's length
	l.SetLink(1, true)
	t.Logf("link cut for 10 s: %d jobs had ended before it, %d at its end", cutAt, ended())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, j := range jobs {
		if _, err := j.Result(ctx); err != nil {
			t.Errorf("job %d: %v %v", j.ID(), j.Status(), err)
		}
	}
	waitNodes(t, s, 2, "node1")
	// node1 has the two computations the scheduler set up when it came
	// back, not also the two it was cut off with.
	hc := nodeexec.NewHTTPClient(schedNodeSecret, nil)
	hc.Timeout = 2 * time.Second
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		held := metricWith(hc, nodes[0], "drove_node_computations")
		if held == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1 holds %v computations 30 s after it came back, want 2", held)
		}
	}
	// Callbacks run after the job's result is set: wait for the last.
	waitFor(t, 30*time.Second, func() bool { return ended() == len(jobs) }, "every job's final callback")
	mu.Lock()
	for id, n := range finals {
		if n != 1 {
			t.Errorf("job %d ended %d times", id, n)
		}
	}
	mu.Unlock()
	runs := map[int]int{}
	entries, err := os.ReadDir(marks)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var id int
		if _, err := fmt.Sscanf(e.Name(), "%d-", &id); err != nil {
			t.Fatalf("mark %s: %v", e.Name(), err)
		}
		runs[id]++
	}
	var twice []int
	for id, n := range runs {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	slices.Sort(twice)
	t.Logf("%d jobs ran, %d of them more than once: %v", len(runs), len(twice), twice)
	if len(runs) != len(jobs) {
		t.Errorf("%d jobs left a mark, want %d", len(runs), len(jobs))
	}
	// node1 runs one job at a time, and the scheduler hands it a job only
	// when it is free: at most the job it was running when cut off runs
	// again.
	if len(twice) > 1 {
		t.Errorf("jobs %v ran more than once: only the one the cut node was running may", twice)
	}
}

// TestSchedulerCommands: drove demo and drove submit with --scheduler
// (and --exclusive) run their jobs through a drove scheduler.
func TestSchedulerCommands(t *testing.T) {
	bin := buildDrove(t)
	a, b := startSchedNodes(t, bin)
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr)
	waitNodes(t, s, 1, "nodeA", "nodeB")
	t.Setenv("DROVE_SECRET", schedClientSecret)
	code, out, errs := runCmd(t, "", "demo", "--scheduler", s.Addr, "--unit", "1ms", "--jobs", "6")
	if code != 0 {
		t.Fatalf("drove demo: exit %d: %s", code, errs)
	}
	if got := len(regexp.MustCompile(`(?m)^\S+ executed job \d+ at .* with ([1-9]|10)$`).FindAllString(out, -1)); got != 6 {
		t.Errorf("drove demo: %d job lines in\n%s", got, out)
	}
	prog := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"[$1]\"; exit $2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "", "submit", "--scheduler", s.Addr, "--exclusive", "-a", "a 0", "-a", "b 3", prog)
	if code != 1 {
		t.Errorf("drove submit: exit %d, want 1 (one job exited 3); stderr %s", code, errs)
	}
	for _, want := range []string{": exit status 0\n--- stdout ---\n[a]\n", ": exit status 3\n--- stdout ---\n[b]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("drove submit: missing %q in\n%s", want, out)
		}
	}
}

// TestSchedulerClientCPUs: a client that asks for one CPU of each node
// (drove.WithCPUs) runs two jobs at once on two nodes of two CPUs.
func TestSchedulerClientCPUs(t *testing.T) {
	bin := buildDrove(t)
	env := []string{"DROVE_SECRET=" + schedNodeSecret}
	a := startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "2")
	b := startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "2")
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr)
	waitNodes(t, s, 1, "nodeA", "nodeB")
	c := schedClient(t, s.Addr, drove.WithCPUs(1))
	gate := openGate(t)
	js := sleeps(1, 8, 0)
	for i := range js {
		js[i].Gate = gate
	}
	jobs := submitAll(t, c, js...)
	// The scheduler hands jobs out as they arrive, under the lock its
	// counts are read with: once all 8 are there, those it may hand out
	// are out.
	waitFor(t, time.Minute, func() bool { return unfinished(s.Addr) == 8 }, "8 jobs at the scheduler")
	running := nodeMetric(s.Addr, "drove_node_jobs_running")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, jobs)
	if running != 2 {
		t.Errorf("%v jobs running at once, want 2 (one CPU on each of two nodes)", running)
	}
}
