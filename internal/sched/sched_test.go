package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"
)

// behaviour is what the test executor does with a run.
type behaviour struct {
	outcome Outcome
	delay   time.Duration
	hang    bool            // run until cancelled
	hold    <-chan struct{} // if set, run until it is closed
}

// testExec is an in-memory executor. Like Nomad's mock driver, it lets the
// core be checked without processes; the executors themselves are tested
// against real processes in their own packages.
type testExec struct {
	s     *Scheduler
	slots int
	plan  func(r *Run) behaviour

	report   func(*Run, Result) // default: s.Done
	seen     func(*Run, Result) // if set, sees every report first
	mu       sync.Mutex
	running  map[*Run]chan struct{}
	overflow error
	wg       sync.WaitGroup
	closed   bool
}

func newTestExec(slots int, plan func(*Run) behaviour) *testExec {
	return &testExec{slots: slots, plan: plan, running: map[*Run]chan struct{}{}}
}

func (e *testExec) Start(r *Run) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		go e.s.Done(r, Result{Outcome: Lost})
		return
	}
	stop := make(chan struct{})
	e.running[r] = stop
	if len(e.running) > e.slots && e.overflow == nil {
		e.overflow = fmt.Errorf("node %s runs %d tasks on %d slots", r.Node, len(e.running), e.slots)
	}
	e.wg.Add(1)
	e.mu.Unlock()
	b := e.plan(r)
	go func() {
		defer e.wg.Done()
		res := Result{Outcome: b.outcome, Start: time.Now()}
		if b.hold != nil {
			<-b.hold
		}
		if b.hang {
			<-stop
			res.Outcome = Killed
		} else {
			select {
			case <-time.After(b.delay):
			case <-stop:
				res.Outcome = Killed
			}
		}
		if res.Outcome == Failed {
			res.Err = errors.New("task failed")
		}
		res.End = time.Now()
		e.mu.Lock()
		delete(e.running, r)
		e.mu.Unlock()
		if e.seen != nil {
			e.seen(r, res)
		}
		if e.report != nil {
			e.report(r, res)
		} else {
			e.s.Done(r, res)
		}
	}()
	if r.Cause() != nil {
		e.Cancel(r)
	}
}

func (e *testExec) Cancel(r *Run) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if stop, ok := e.running[r]; ok {
		close(stop)
		delete(e.running, r) // the slot frees when the run reports
		e.running[r] = make(chan struct{})
	}
}

func (e *testExec) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	for r, stop := range e.running {
		select {
		case <-stop:
		default:
			close(stop)
		}
		_ = r
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// queueExec is a test executor that queues runs ahead (a Prefetcher): it
// takes up to slots+depth runs and runs at most slots of them at once.
type queueExec struct {
	*testExec
	depth int

	qmu     sync.Mutex
	queue   []*Run
	running int
}

func (q *queueExec) Prefetch() int { return q.depth }

func (q *queueExec) Start(r *Run) {
	q.qmu.Lock()
	q.queue = append(q.queue, r)
	q.qmu.Unlock()
	q.pump()
}

func (q *queueExec) pump() {
	for {
		q.qmu.Lock()
		if q.running >= q.slots || len(q.queue) == 0 {
			q.qmu.Unlock()
			return
		}
		r := q.queue[0]
		q.queue = q.queue[1:]
		q.running++
		q.qmu.Unlock()
		q.s.Started(r, time.Now())
		q.testExec.Start(r)
	}
}

// done is the inner executor's report hook: it frees a slot first.
func (q *queueExec) done(r *Run, res Result) {
	q.qmu.Lock()
	q.running--
	q.qmu.Unlock()
	q.s.Done(r, res)
	q.pump()
}

func (q *queueExec) takeBack(r *Run, res Result) bool {
	q.qmu.Lock()
	for i, x := range q.queue {
		if x == r {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			q.qmu.Unlock()
			q.s.Done(r, res)
			return true
		}
	}
	q.qmu.Unlock()
	return false
}

func (q *queueExec) Cancel(r *Run) {
	if !q.takeBack(r, Result{Outcome: Killed}) {
		q.testExec.Cancel(r)
	}
}

func (q *queueExec) Recall(r *Run) { q.takeBack(r, Result{Outcome: NotStarted}) }

func TestPropertyInvariants(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var mu sync.Mutex
		finals := map[*Task]int{}
		s := New(Config{
			Reentrant: rapid.Bool().Draw(rt, "reentrant"),
			OnTask: func(ev TaskEvent) {
				if ev.State.Final() {
					mu.Lock()
					finals[ev.Task]++
					mu.Unlock()
				}
			},
		})
		// Tenants share the nodes; tasks of none belong to the default one.
		tenants := []*Tenant{nil}
		for i := range rapid.IntRange(0, 3).Draw(rt, "tenants") {
			tenants = append(tenants, s.NewTenant(TenantConfig{
				Name:      fmt.Sprint("t", i),
				Exclusive: rapid.IntRange(0, 3).Draw(rt, "exclusive") == 0,
			}))
		}
		type span struct {
			ten        *Tenant
			start, end time.Time
		}
		var spans []span
		seen := func(r *Run, res Result) {
			if res.Outcome != NotStarted {
				mu.Lock()
				spans = append(spans, span{r.Task.Tenant, res.Start, res.End})
				mu.Unlock()
			}
		}
		nNodes := rapid.IntRange(1, 3).Draw(rt, "nodes")
		var execs []*testExec
		plans := map[*Task]behaviour{}
		starts := map[*Task]int{}
		var plansMu sync.Mutex
		plan := func(r *Run) behaviour {
			plansMu.Lock()
			defer plansMu.Unlock()
			b := plans[r.Task]
			starts[r.Task]++
			if starts[r.Task] > 1 && b.outcome != OK && !b.hang && rapid.Bool().Example(starts[r.Task]) {
				b.outcome = OK // some retries succeed, so some tasks end Finished after a failure
			}
			return b
		}
		for i := range nNodes {
			e := newTestExec(rapid.IntRange(1, 3).Draw(rt, "slots"), plan)
			e.s = s
			e.seen = seen
			execs = append(execs, e)
			var ex Executor = e
			if depth := rapid.IntRange(0, 2).Draw(rt, "prefetch"); depth > 0 {
				q := &queueExec{testExec: e, depth: depth}
				e.report = q.done
				ex = q
			}
			if err := s.AddNode(fmt.Sprintf("n%d", i), e.slots, ex); err != nil {
				rt.Fatal(err)
			}
		}
		nTasks := rapid.IntRange(1, 40).Draw(rt, "tasks")
		var tasks []*Task
		var cancels []*Task
		for i := range nTasks {
			t := &Task{
				ID:       int64(i + 1),
				Priority: rapid.IntRange(-2, 2).Draw(rt, "priority"),
				Retries:  rapid.IntRange(0, 2).Draw(rt, "retries"),
				Tenant:   tenants[rapid.IntRange(0, len(tenants)-1).Draw(rt, "tenant")],
			}
			if rapid.IntRange(0, 4).Draw(rt, "pin") == 0 {
				t.Node = fmt.Sprintf("n%d", rapid.IntRange(0, nNodes-1).Draw(rt, "pinned"))
			}
			b := behaviour{
				outcome: Outcome(rapid.IntRange(0, 3).Draw(rt, "outcome")),
				delay:   time.Duration(rapid.IntRange(0, 2000).Draw(rt, "delay")) * time.Microsecond,
				hang:    rapid.IntRange(0, 5).Draw(rt, "hang") == 0,
			}
			if b.outcome == Killed {
				b.outcome = OK
			}
			cancel := rapid.IntRange(0, 5).Draw(rt, "cancel") == 0
			if b.hang || rapid.Bool().Draw(rt, "timed") {
				// A hanging task must be ended by a timeout or a cancel.
				if !cancel || rapid.Bool().Draw(rt, "both") {
					t.Timeout = time.Duration(rapid.IntRange(1, 5).Draw(rt, "timeout")) * time.Millisecond
				}
			}
			plansMu.Lock()
			plans[t] = b
			plansMu.Unlock()
			tasks = append(tasks, t)
			if cancel {
				cancels = append(cancels, t)
			}
		}
		for _, t := range tasks {
			if err := s.Submit(context.Background(), t); err != nil {
				rt.Fatal(err)
			}
		}
		for _, t := range cancels {
			if rand.IntN(2) == 0 {
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			}
			s.Cancel(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			for _, t := range tasks {
				if !t.State().Final() {
					s.mu.Lock()
					r := t.run
					s.mu.Unlock()
					var where string
					if r != nil {
						for _, e := range execs {
							e.mu.Lock()
							_, reg := e.running[r]
							e.mu.Unlock()
							where += fmt.Sprintf(" registered=%v", reg)
						}
						where += fmt.Sprintf(" cause=%v node=%s over=%v attempt=%d", r.Cause(), r.Node, r.over, r.Attempt)
					}
					rt.Logf("task %d stuck in %d (timeout %v, pin %q)%s plan=%+v", t.ID, t.State(), t.Timeout, t.Node, where, plans[t])
				}
			}
			rt.Fatal("tasks did not all end: ", err)
		}
		if err := s.Close(context.Background()); err != nil {
			rt.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, t := range tasks {
			if n := finals[t]; n != 1 {
				rt.Fatalf("task %d reached a final state %d times", t.ID, n)
			}
			if !t.State().Final() {
				rt.Fatalf("task %d not final: %d", t.ID, t.State())
			}
			if t.State() == Finished && t.Result().Err != nil {
				rt.Fatalf("task %d Finished with error %v", t.ID, t.Result().Err)
			}
		}
		for _, e := range execs {
			if e.overflow != nil {
				rt.Fatal(e.overflow)
			}
		}
		// An exclusive tenant's runs overlap no other tenant's.
		for _, a := range spans {
			if a.ten == nil || !a.ten.exclusive {
				continue
			}
			for _, b := range spans {
				if b.ten != a.ten && b.start.Before(a.end) && a.start.Before(b.end) {
					rt.Fatalf("a run of exclusive tenant %s overlaps one of %v", a.ten.name, b.ten)
				}
			}
		}
		st := s.Stats()
		ended := 0
		for _, ts := range st.Tenants {
			ended += ts.Finished + ts.Cancelled + ts.Terminated + ts.Abandoned
			if ts.Pending != 0 || ts.Running != 0 {
				rt.Fatalf("tenant %q: %d pending, %d running after the end", ts.Name, ts.Pending, ts.Running)
			}
		}
		if ended != len(tasks) {
			rt.Fatalf("tenants' stats count %d final tasks, want %d", ended, len(tasks))
		}
	})
}

func TestPropertyPriorityOrder(t *testing.T) {
	for _, depth := range []int{0, 1, 2} {
		t.Run(fmt.Sprint("prefetch=", depth), func(t *testing.T) { checkPriorityOrder(t, depth) })
	}
}

func checkPriorityOrder(t *testing.T, depth int) {
	rapid.Check(t, func(rt *rapid.T) {
		var mu sync.Mutex
		var started []*Task
		release := make(chan struct{})
		s := New(Config{})
		e := newTestExec(1, func(r *Run) behaviour {
			mu.Lock()
			started = append(started, r.Task)
			first := len(started) == 1
			mu.Unlock()
			if first {
				// Hold the only slot until every task is queued.
				return behaviour{outcome: OK, hold: release}
			}
			return behaviour{outcome: OK}
		})
		e.s = s
		var ex Executor = e
		if depth > 0 {
			q := &queueExec{testExec: e, depth: depth}
			e.report = q.done
			ex = q
		}
		if err := s.AddNode("n", 1, ex); err != nil {
			rt.Fatal(err)
		}
		blocker := &Task{ID: 0}
		if err := s.Submit(context.Background(), blocker); err != nil {
			rt.Fatal(err)
		}
		for {
			mu.Lock()
			n := len(started)
			mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		prios := rapid.SliceOfN(rapid.IntRange(-3, 3), 1, 30).Draw(rt, "priorities")
		for i, p := range prios {
			if err := s.Submit(context.Background(), &Task{ID: int64(i + 1), Priority: p}); err != nil {
				rt.Fatal(err)
			}
		}
		close(release)
		if err := s.Wait(context.Background()); err != nil {
			rt.Fatal(err)
		}
		_ = s.Close(context.Background())
		mu.Lock()
		defer mu.Unlock()
		for i := 2; i < len(started); i++ {
			a, b := started[i-1], started[i]
			if a.Priority < b.Priority || (a.Priority == b.Priority && a.ID > b.ID) {
				rt.Fatalf("task %d (priority %d) started before task %d (priority %d)", a.ID, a.Priority, b.ID, b.Priority)
			}
		}
	})
}

func TestNodeDownReschedulesOrAbandons(t *testing.T) {
	for _, reentrant := range []bool{false, true} {
		t.Run(fmt.Sprint("reentrant=", reentrant), func(t *testing.T) {
			s := New(Config{Reentrant: reentrant})
			hang := newTestExec(2, func(*Run) behaviour { return behaviour{hang: true} })
			hang.s = s
			ok := newTestExec(2, func(*Run) behaviour { return behaviour{outcome: OK} })
			ok.s = s
			if err := s.AddNode("dying", 2, hang); err != nil {
				t.Fatal(err)
			}
			var tasks []*Task
			for i := range 2 {
				tk := &Task{ID: int64(i)}
				tasks = append(tasks, tk)
				if err := s.Submit(context.Background(), tk); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.AddNode("healthy", 2, ok); err != nil {
				t.Fatal(err)
			}
			s.NodeDown("dying", errors.New("killed"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			for _, tk := range tasks {
				want := Abandoned
				if reentrant {
					want = Finished
				}
				if tk.State() != want {
					t.Errorf("task %d: %d, want %d", tk.ID, tk.State(), want)
				}
				if want == Abandoned && !errors.Is(tk.Result().Err, ErrNodeLost) {
					t.Errorf("task %d error %v", tk.ID, tk.Result().Err)
				}
			}
			// The dead node's late reports are dropped.
			_ = hang.Close(context.Background())
			_ = s.Close(context.Background())
		})
	}
}

func TestReentrantTaskLostEverywhereIsAbandoned(t *testing.T) {
	s := New(Config{Reentrant: true, MaxLost: 3})
	var mu sync.Mutex
	starts := 0
	e := newTestExec(1, func(*Run) behaviour {
		mu.Lock()
		starts++
		mu.Unlock()
		return behaviour{outcome: Lost}
	})
	e.s = s
	if err := s.AddNode("n", 1, e); err != nil {
		t.Fatal(err)
	}
	tk := &Task{ID: 1}
	if err := s.Submit(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	if err := tk.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	if tk.State() != Abandoned || starts != 3 || !errors.Is(tk.Result().Err, ErrNodeLost) {
		t.Fatalf("state %d after %d starts, err %v; want Abandoned after 3", tk.State(), starts, tk.Result().Err)
	}
}

// A node that dies with tasks queued ahead but not started gives them back:
// only what it had started is lost.
func TestNodeDownRequeuesUnstarted(t *testing.T) {
	s := New(Config{}) // not reentrant: started tasks end Abandoned
	hang := newTestExec(1, func(*Run) behaviour { return behaviour{hang: true} })
	hang.s = s
	q := &queueExec{testExec: hang, depth: 3}
	hang.report = q.done
	if err := s.AddNode("dying", 1, q); err != nil {
		t.Fatal(err)
	}
	var tasks []*Task
	for i := range 4 {
		tk := &Task{ID: int64(i)}
		tasks = append(tasks, tk)
		if err := s.Submit(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
	}
	ok := newTestExec(2, func(*Run) behaviour { return behaviour{outcome: OK} })
	ok.s = s
	s.NodeDown("dying", errors.New("killed"))
	if err := s.AddNode("healthy", 2, ok); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	abandoned, finished := 0, 0
	for _, tk := range tasks {
		switch tk.State() {
		case Abandoned:
			abandoned++
		case Finished:
			finished++
		}
	}
	if abandoned != 1 || finished != 3 {
		t.Errorf("%d abandoned, %d finished; want 1 (the started one) and 3", abandoned, finished)
	}
	_ = hang.Close(context.Background())
	_ = s.Close(context.Background())
}

// A retry waits for another node rather than going back to the one it
// failed on, while the tasks behind it use that node.
func TestRetryWaitsForAnotherNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		var mu sync.Mutex
		ran := map[int64][]string{}
		release := make(chan struct{})
		record := func(r *Run) {
			mu.Lock()
			ran[r.Task.ID] = append(ran[r.Task.ID], r.Node)
			mu.Unlock()
		}
		b := newTestExec(1, func(r *Run) behaviour {
			record(r)
			if r.Task.ID == 0 {
				return behaviour{outcome: OK, hold: release}
			}
			return behaviour{outcome: OK}
		})
		b.s = s
		a := newTestExec(1, func(r *Run) behaviour {
			record(r)
			if r.Task.ID == 1 {
				return behaviour{outcome: Failed} // fails on a, whatever the attempt
			}
			return behaviour{outcome: OK}
		})
		a.s = s
		if err := s.AddNode("b", 1, b); err != nil {
			t.Fatal(err)
		}
		blocker, retried, other := &Task{ID: 0}, &Task{ID: 1, Retries: 1}, &Task{ID: 2}
		if err := s.Submit(context.Background(), blocker); err != nil {
			t.Fatal(err)
		}
		if err := s.AddNode("a", 1, a); err != nil {
			t.Fatal(err)
		}
		if err := s.Submit(context.Background(), retried); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // it fails on a, and waits
		if err := s.Submit(context.Background(), other); err != nil {
			t.Fatal(err)
		}
		if err := other.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := retried.State(); st != Created {
			t.Fatalf("retry state %d while b is busy; want it waiting (Created)", st)
		}
		close(release)
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(context.Background())
		mu.Lock()
		defer mu.Unlock()
		if got := ran[1]; len(got) != 2 || got[0] != "a" || got[1] != "b" || retried.State() != Finished {
			t.Errorf("retried task ran on %v, ended %d; want a then b, Finished", got, retried.State())
		}
		if got := ran[2]; len(got) != 1 || got[0] != "a" {
			t.Errorf("the task behind the retry ran on %v, want a", got)
		}
	})
}

// With mixed priorities, a task submitted while its prefetching node has a
// free slot starts at once: only runs queued beyond the slots are recalled.
func TestMixedPrioritiesUseFreeSlots(t *testing.T) {
	s := New(Config{})
	release := make(chan struct{})
	e := newTestExec(2, func(r *Run) behaviour {
		if r.Task.ID == 1 {
			return behaviour{outcome: OK, hold: release}
		}
		return behaviour{outcome: OK}
	})
	e.s = s
	q := &queueExec{testExec: e, depth: 2}
	e.report = q.done
	if err := s.AddNode("n", 2, q); err != nil {
		t.Fatal(err)
	}
	long := &Task{ID: 1}
	if err := s.Submit(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	urgent := &Task{ID: 2, Priority: 5}
	if err := s.Submit(context.Background(), urgent); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := urgent.Wait(ctx)
	close(release)
	if err != nil {
		t.Fatalf("the urgent task did not run beside the long one: %v (state %d)", err, urgent.State())
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWatchNodesAndReportNode: watchers see the scheduler's node events and
// those reported for it, in order after OnNode, and none after stop.
func TestWatchNodesAndReportNode(t *testing.T) {
	var mu sync.Mutex
	var got []string
	rec := func(who string) func(NodeEvent) {
		return func(ev NodeEvent) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, who+":"+ev.Kind.String()+" "+ev.Node)
		}
	}
	for _, onNode := range []bool{true, false} {
		got = nil
		cfg := Config{}
		if onNode {
			cfg.OnNode = rec("cfg")
		}
		s := New(cfg)
		stop := s.WatchNodes(rec("w"))
		s.ReportNode(NodeEvent{Node: "b", Kind: NodeUnreachable})
		ex := newTestExec(1, func(*Run) behaviour { return behaviour{outcome: OK} })
		ex.s = s
		if err := s.AddNode("a", 1, ex); err != nil {
			t.Fatal(err)
		}
		s.NodeDown("a", nil)
		s.ReportNode(NodeEvent{Node: "a", Kind: NodeGone})
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		stop()
		s.ReportNode(NodeEvent{Node: "c", Kind: NodeGone}) // after Close: dropped
		want := "w:unreachable b, w:up a, w:down a, w:gone a"
		if onNode {
			want = "cfg:unreachable b, w:unreachable b, cfg:up a, w:up a, cfg:down a, w:down a, cfg:gone a, w:gone a"
		}
		if g := strings.Join(got, ", "); g != want {
			t.Errorf("OnNode %v: events %q, want %q", onNode, g, want)
		}
	}
}

// varDepthExec is a queueExec whose depth changes while it runs.
type varDepthExec struct {
	*queueExec
	d      atomic.Int32
	handed atomic.Int32
}

func (v *varDepthExec) Prefetch() int { return int(v.d.Load()) }
func (v *varDepthExec) Start(r *Run)  { v.handed.Add(1); v.queueExec.Start(r) }

// A prefetcher whose depth drops to 0 gets no runs beyond its slots, and
// those it gets still wait for Started.
func TestPrefetchDropsToZero(t *testing.T) {
	s := New(Config{})
	release := make(chan struct{})
	e := newTestExec(1, func(r *Run) behaviour { return behaviour{outcome: OK, hold: release} })
	e.s = s
	q := &queueExec{testExec: e}
	e.report = q.done
	v := &varDepthExec{queueExec: q}
	v.d.Store(2)
	if err := s.AddNode("n", 1, v); err != nil {
		t.Fatal(err)
	}
	v.d.Store(0)
	ts := make([]*Task, 3)
	for i := range ts {
		ts[i] = &Task{ID: int64(i + 1)}
		if err := s.Submit(context.Background(), ts[i]); err != nil {
			t.Fatal(err)
		}
	}
	for ts[0].State() != Running {
		time.Sleep(time.Millisecond)
	}
	if got := v.handed.Load(); got != 1 {
		t.Errorf("%d runs handed to a node of 1 slot and depth 0, want 1", got)
	}
	close(release)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, tk := range ts {
		if tk.State() != Finished {
			t.Errorf("task %d: %v", i+1, tk.State())
		}
	}
}
