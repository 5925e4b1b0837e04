package sched

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestPolicyOrder checks the order in which each policy starts the tasks
// of two tenants on one slot. Tenant A is created before B, but B submits
// first; the slot is held until every task is queued.
func TestPolicyOrder(t *testing.T) {
	type job struct {
		name     string // tenant letter and number
		priority int
		dur      time.Duration
	}
	const ms = time.Millisecond
	even := []job{{"B1", 0, 10 * ms}, {"A1", 0, 10 * ms}, {"B2", 0, 10 * ms}, {"A2", 0, 10 * ms}, {"B3", 0, 10 * ms}, {"A3", 0, 10 * ms}}
	// A's tasks take three times as long as B's.
	uneven := []job{{"A1", 0, 30 * ms}, {"A2", 0, 30 * ms}, {"B1", 0, 10 * ms}, {"B2", 0, 10 * ms}, {"B3", 0, 10 * ms}, {"B4", 0, 10 * ms}, {"B5", 0, 10 * ms}, {"B6", 0, 10 * ms}}
	// Priorities order a tenant's own tasks under every policy.
	prio := []job{{"A1", 0, 10 * ms}, {"B1", 0, 10 * ms}, {"A2", 5, 10 * ms}, {"B2", 0, 10 * ms}}
	for _, c := range []struct {
		policy Policy
		jobs   []job
		want   string
	}{
		{FSFS, even, "B1 A1 B2 A2 B3 A3"},
		{Early, even, "A1 A2 A3 B1 B2 B3"},
		{Fair, even, "A1 B1 A2 B2 A3 B3"},
		{Fair, uneven, "A1 B1 B2 B3 A2 B4 B5 B6"},
		{FSFS, uneven, "A1 A2 B1 B2 B3 B4 B5 B6"},
		{FSFS, prio, "B1 A2 A1 B2"},
		{Early, prio, "A2 A1 B1 B2"},
		{Fair, prio, "A2 B1 A1 B2"},
	} {
		t.Run(c.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(Config{Policy: c.policy})
				release := make(chan struct{})
				durs := map[*Task]time.Duration{}
				var mu sync.Mutex
				var order []string
				e := newTestExec(1, func(r *Run) behaviour {
					if r.Task.ID == 0 {
						return behaviour{outcome: OK, hold: release}
					}
					mu.Lock()
					defer mu.Unlock()
					order = append(order, r.Task.Ref.(string))
					return behaviour{outcome: OK, delay: durs[r.Task]}
				})
				e.s = s
				if err := s.AddNode("n", 1, e); err != nil {
					t.Fatal(err)
				}
				if err := s.Submit(t.Context(), &Task{ID: 0}); err != nil {
					t.Fatal(err)
				}
				tenants := map[byte]*Tenant{
					'A': s.NewTenant(TenantConfig{Name: "A"}),
					'B': s.NewTenant(TenantConfig{Name: "B"}),
				}
				for i, j := range c.jobs {
					tk := &Task{ID: int64(i + 1), Priority: j.priority, Tenant: tenants[j.name[0]], Ref: j.name}
					mu.Lock()
					durs[tk] = j.dur
					mu.Unlock()
					if err := s.Submit(t.Context(), tk); err != nil {
						t.Fatal(err)
					}
				}
				close(release)
				if err := s.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(order, " "); got != c.want {
					t.Errorf("%v started %s, want %s", c.policy, got, c.want)
				}
			})
		})
	}
}

// span is when a run held a slot.
type span struct {
	tenant     string
	start, end time.Time
}

// recordSpans makes e record every run's span.
func recordSpans(e *testExec, mu *sync.Mutex, spans *[]span) {
	e.seen = func(r *Run, res Result) {
		name := ""
		if r.Task.Tenant != nil {
			name = r.Task.Tenant.Name()
		}
		mu.Lock()
		*spans = append(*spans, span{name, res.Start, res.End})
		mu.Unlock()
	}
}

// TestFairShare: two tenants each submit 400 tasks of 50 ms to 2 nodes of
// 1 slot. While both are active, Fair gives each half the slot-time (±10
// points); FSFS and Early give the first everything.
func TestFairShare(t *testing.T) {
	for _, c := range []struct {
		policy Policy
		lo, hi float64 // A's share of the slot-time while both are active
	}{
		{Fair, 0.4, 0.6},
		{FSFS, 1, 1},
		{Early, 1, 1},
	} {
		t.Run(c.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(Config{Policy: c.policy})
				var mu sync.Mutex
				var spans []span
				for i := range 2 {
					e := newTestExec(1, func(*Run) behaviour { return behaviour{outcome: OK, delay: 50 * time.Millisecond} })
					e.s = s
					recordSpans(e, &mu, &spans)
					if err := s.AddNode(fmt.Sprint("n", i), 1, e); err != nil {
						t.Fatal(err)
					}
				}
				begin := time.Now()
				a, b := s.NewTenant(TenantConfig{Name: "A"}), s.NewTenant(TenantConfig{Name: "B"})
				for _, ten := range []*Tenant{a, b} {
					for i := range 400 {
						if err := s.Submit(t.Context(), &Task{ID: int64(i), Tenant: ten}); err != nil {
							t.Fatal(err)
						}
					}
				}
				// Both are active until the first of them is done.
				doneA, doneB := make(chan time.Time, 1), make(chan time.Time, 1)
				go func() { _ = a.Wait(t.Context()); doneA <- time.Now() }()
				go func() { _ = b.Wait(t.Context()); doneB <- time.Now() }()
				endA, endB := <-doneA, <-doneB
				both := endA
				if endB.Before(endA) {
					both = endB
				}
				if err := s.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
				used := map[string]time.Duration{}
				for _, sp := range spans {
					end := sp.end
					if end.After(both) {
						end = both
					}
					if end.After(sp.start) {
						used[sp.tenant] += end.Sub(sp.start)
					}
				}
				share := float64(used["A"]) / float64(used["A"]+used["B"])
				t.Logf("%v: A had %.1f%% of the slot-time in the %v both were active", c.policy, 100*share, both.Sub(begin))
				if share < c.lo || share > c.hi {
					t.Errorf("%v: A had %.0f%% of the slot-time in the %v both were active (A %v, B %v); want %.0f%%–%.0f%%",
						c.policy, 100*share, both.Sub(begin), used["A"], used["B"], 100*c.lo, 100*c.hi)
				}
				for _, ts := range s.Stats().Tenants[1:] {
					if ts.Finished != 400 || ts.SlotTime != 400*50*time.Millisecond {
						t.Errorf("tenant %s: %d finished, slot-time %v; want 400 and 20s", ts.Name, ts.Finished, ts.SlotTime)
					}
				}
			})
		})
	}
}

// TestExclusive: an exclusive tenant X waits for the tenant created before
// it (E) and for the runs in flight, runs alone, and holds back the tenant
// created after it (L), whose first task was already running.
func TestExclusive(t *testing.T) {
	for _, exclusive := range []bool{true, false} {
		t.Run(fmt.Sprint("exclusive=", exclusive), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(Config{})
				var mu sync.Mutex
				var spans []span
				for i := range 2 {
					e := newTestExec(1, func(*Run) behaviour { return behaviour{outcome: OK, delay: 10 * time.Millisecond} })
					e.s = s
					recordSpans(e, &mu, &spans)
					if err := s.AddNode(fmt.Sprint("n", i), 1, e); err != nil {
						t.Fatal(err)
					}
				}
				early := s.NewTenant(TenantConfig{Name: "E"})
				x := s.NewTenant(TenantConfig{Name: "X", Exclusive: exclusive})
				late := s.NewTenant(TenantConfig{Name: "L"})
				submit := func(ten *Tenant, n int) {
					for i := range n {
						if err := s.Submit(t.Context(), &Task{ID: int64(i), Tenant: ten}); err != nil {
							t.Fatal(err)
						}
					}
				}
				submit(early, 1)
				submit(late, 3) // one starts on the other node
				submit(x, 3)
				submit(early, 2) // E was created before X: it goes first
				if err := s.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
				var problems []string
				for _, a := range spans {
					if a.tenant != "X" {
						continue
					}
					for _, b := range spans {
						switch {
						case b.tenant != "X" && b.start.Before(a.end) && a.start.Before(b.end):
							problems = append(problems, fmt.Sprintf("X ran %v–%v beside %s's run %v–%v", a.start, a.end, b.tenant, b.start, b.end))
						case b.tenant == "E" && b.start.After(a.start):
							problems = append(problems, "an E run started after an X run")
						}
					}
				}
				if exclusive && len(problems) > 0 {
					t.Error(strings.Join(problems, "\n"))
				}
				if !exclusive && len(problems) == 0 {
					t.Error("without Exclusive, X ran alone all the same: the test shows nothing")
				}
			})
		})
	}
}

// TestTenantExecutor: a tenant's own executor on a node runs its tasks,
// sharing the node's slots with the node's executor; CloseTenant closes it
// and removes the tenant.
func TestTenantExecutor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		var mu sync.Mutex
		running, most := 0, 0
		ran := map[string][]string{} // executor name -> tenants
		mk := func(name string) *testExec {
			e := newTestExec(1, func(r *Run) behaviour {
				mu.Lock()
				defer mu.Unlock()
				running++
				most = max(most, running)
				ten := "default"
				if r.Task.Tenant != nil {
					ten = r.Task.Tenant.Name()
				}
				ran[name] = append(ran[name], ten)
				return behaviour{outcome: OK, delay: 10 * time.Millisecond}
			})
			e.s = s
			e.seen = func(*Run, Result) {
				mu.Lock()
				running--
				mu.Unlock()
			}
			return e
		}
		nodeEx, tenEx := mk("node"), mk("tenant")
		if err := s.AddNode("n", 1, nodeEx); err != nil {
			t.Fatal(err)
		}
		ten := s.NewTenant(TenantConfig{Name: "T"})
		if err := s.SetTenantExecutor(ten, "n", tenEx); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTenantExecutor(ten, "n", tenEx); err == nil {
			t.Error("a second executor for the same tenant and node was accepted")
		}
		if err := s.SetTenantExecutor(ten, "nope", tenEx); !errors.Is(err, ErrNoNode) {
			t.Errorf("executor on an unknown node: %v, want ErrNoNode", err)
		}
		for i := range 3 {
			for _, tt := range []*Tenant{nil, ten} {
				if err := s.Submit(t.Context(), &Task{ID: int64(i), Tenant: tt}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if st := s.Stats().Tenants[1]; st.Name != "T" || st.Pending+st.Running != 3 {
			t.Errorf("tenant stats %+v, want T with 3 unfinished", st)
		}
		if err := s.CloseTenant(t.Context(), ten); err != nil {
			t.Fatal(err)
		}
		if !tenEx.closed || nodeEx.closed {
			t.Errorf("after CloseTenant: tenant executor closed %v, node executor closed %v; want true, false", tenEx.closed, nodeEx.closed)
		}
		if err := s.Submit(t.Context(), &Task{Tenant: ten}); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit to a closed tenant: %v, want ErrClosed", err)
		}
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := len(s.Stats().Tenants); n != 1 {
			t.Errorf("%d tenants after CloseTenant, want the default one", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if most != 1 {
			t.Errorf("%d runs at once on a 1-slot node", most)
		}
		if got := fmt.Sprint(ran); got != "map[node:[default default default] tenant:[T T T]]" {
			t.Errorf("runs by executor: %s", got)
		}
	})
}

// TestCloseTenantCancels: when ctx ends first, CloseTenant cancels the
// tenant's queued tasks and stops its running ones; other tenants go on.
func TestCloseTenantCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		e := newTestExec(1, func(*Run) behaviour { return behaviour{hang: true} })
		e.s = s
		if err := s.AddNode("n", 1, e); err != nil {
			t.Fatal(err)
		}
		ten := s.NewTenant(TenantConfig{Name: "T"})
		var tasks []*Task
		for i := range 3 {
			tk := &Task{ID: int64(i), Tenant: ten}
			tasks = append(tasks, tk)
			if err := s.Submit(t.Context(), tk); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := s.CloseTenant(ctx, ten); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("CloseTenant: %v, want the deadline", err)
		}
		for _, tk := range tasks {
			if tk.State() != Cancelled {
				t.Errorf("task %d: %d, want Cancelled", tk.ID, tk.State())
			}
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{Fair, FSFS, Early} {
		if got, err := ParsePolicy(strings.ToUpper(p.String())); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParsePolicy("fifo"); err == nil || !strings.Contains(err.Error(), "fair, fsfs or early") {
		t.Errorf("ParsePolicy(fifo): %v", err)
	}
}

// TestTenantSlots: a tenant with Slots 1 on a node of 4 slots never has
// two runs at once, and another tenant takes the slots it leaves free.
func TestTenantSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		var mu sync.Mutex
		var spans []span
		e := newTestExec(4, func(r *Run) behaviour { return behaviour{outcome: OK, delay: 10 * time.Millisecond} })
		e.s = s
		recordSpans(e, &mu, &spans)
		if err := s.AddNode("n", 4, e); err != nil {
			t.Fatal(err)
		}
		capped := s.NewTenant(TenantConfig{Name: "A", Slots: 1})
		other := s.NewTenant(TenantConfig{Name: "B"})
		for i := range 8 {
			ten := capped
			if i%2 == 1 {
				ten = other
			}
			if err := s.Submit(t.Context(), &Task{ID: int64(i), Tenant: ten}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		mostA, mostAll := 0, 0
		for _, a := range spans {
			nA, nAll := 0, 0
			for _, b := range spans {
				if b.start.Compare(a.start) <= 0 && a.start.Before(b.end) {
					nAll++
					if b.tenant == "A" {
						nA++
					}
				}
			}
			if a.tenant == "A" {
				mostA = max(mostA, nA)
			}
			mostAll = max(mostAll, nAll)
		}
		if len(spans) != 8 || mostA != 1 || mostAll != 4 {
			t.Errorf("%d runs; at most %d of the capped tenant's at once (want 1), %d in all (want 4)", len(spans), mostA, mostAll)
		}
	})
}
