package sched

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// mostAtOnce returns the most spans that overlap.
func mostAtOnce(spans []span) int {
	most := 0
	for _, a := range spans {
		n := 0
		for _, b := range spans {
			if b.start.Compare(a.start) <= 0 && a.start.Before(b.end) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// TestSetSlotsBoundsQueueAhead: a node whose slots are lowered below what
// its executor runs at once queues nothing ahead, so it runs no more than
// its new slots; raised back, it runs as many as its executor does.
func TestSetSlotsBoundsQueueAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		var mu sync.Mutex
		var spans []span
		inner := newTestExec(2, func(*Run) behaviour { return behaviour{outcome: OK, delay: 10 * time.Millisecond} })
		q := &queueExec{testExec: inner, depth: 8}
		inner.s, inner.report = s, q.done
		recordSpans(inner, &mu, &spans)
		if err := s.AddNode("n", 2, q); err != nil {
			t.Fatal(err)
		}
		if err := s.SetSlots("n", 1); err != nil {
			t.Fatal(err)
		}
		submitN := func(k int) {
			for i := range k {
				if err := s.Submit(t.Context(), &Task{ID: int64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		submitN(10)
		mu.Lock()
		if n := mostAtOnce(spans); len(spans) != 10 || n != 1 {
			t.Errorf("%d runs, at most %d at once on a node set to 1 slot", len(spans), n)
		}
		spans = nil
		mu.Unlock()
		if err := s.SetSlots("n", 2); err != nil {
			t.Fatal(err)
		}
		submitN(10)
		mu.Lock()
		if n := mostAtOnce(spans); n != 2 {
			t.Errorf("at most %d at once on a node set back to 2 slots", n)
		}
		mu.Unlock()
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTenantNodeSlots: a tenant kept off a node (bound 0) runs only on
// the others, and while it waits for them another tenant takes the node
// it may not use; a bound of 1 runs one at a time there.
func TestTenantNodeSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{})
		hold := make(chan struct{})
		where := map[string][]string{} // tenant → nodes its runs went to
		var mu sync.Mutex
		plan := func(r *Run) behaviour {
			mu.Lock()
			where[r.Task.Tenant.Name()] = append(where[r.Task.Tenant.Name()], r.Node)
			mu.Unlock()
			if r.Node == "b" && r.Task.Tenant.Name() == "A" {
				return behaviour{outcome: OK, hold: hold}
			}
			return behaviour{outcome: OK, delay: 10 * time.Millisecond}
		}
		a, b := newTestExec(2, plan), newTestExec(1, plan)
		a.s, b.s = s, s
		var spans []span
		var smu sync.Mutex
		recordSpans(a, &smu, &spans)
		if err := s.AddNode("a", 2, a); err != nil {
			t.Fatal(err)
		}
		if err := s.AddNode("b", 1, b); err != nil {
			t.Fatal(err)
		}
		ta := s.NewTenant(TenantConfig{Name: "A"})
		tb := s.NewTenant(TenantConfig{Name: "B"})
		if err := s.SetTenantNodeSlots(ta, "a", 0); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := s.Submit(t.Context(), &Task{ID: int64(i), Tenant: ta}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Submit(t.Context(), &Task{ID: 10, Tenant: tb}); err != nil {
			t.Fatal(err)
		}
		// B runs on a while A's tasks wait for b, which A's first holds.
		if err := tb.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		close(hold)
		if err := ta.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if got := where["A"]; !slices.Equal(got, []string{"b", "b", "b"}) {
			t.Errorf("tenant A ran on %v, want b only", got)
		}
		if got := where["B"]; !slices.Equal(got, []string{"a"}) {
			t.Errorf("tenant B ran on %v, want a", got)
		}
		mu.Unlock()

		// A bound of 1 on a, and none on b any more.
		if err := s.SetTenantNodeSlots(ta, "a", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.SetTenantNodeSlots(ta, "b", 0); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			if err := s.Submit(t.Context(), &Task{ID: int64(20 + i), Tenant: ta}); err != nil {
				t.Fatal(err)
			}
		}
		if err := ta.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		smu.Lock()
		var onA []span
		for _, sp := range spans {
			if sp.tenant == "A" {
				onA = append(onA, sp)
			}
		}
		if n := mostAtOnce(onA); len(onA) != 6 || n != 1 {
			t.Errorf("%d runs of A on a, at most %d at once; want 6, one at a time", len(onA), n)
		}
		smu.Unlock()
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// frontExec queues runs ahead and reports each as gone to machine m1 or
// m2, by task id, as nodeexec does for a drove scheduler.
type frontExec struct{ *queueExec }

func (f frontExec) Start(r *Run) {
	r.SetMachine([]string{"m1", "m2"}[r.Task.ID%2])
	f.queueExec.Start(r)
}

// TestMachines: a node that fronts machines has its runs' tasks, events,
// NodeTasks and stats name the machines.
func TestMachines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hold := make(chan struct{})
		var mu sync.Mutex
		nodes := map[int64]string{}
		s := New(Config{OnTask: func(ev TaskEvent) {
			if ev.State == Running {
				mu.Lock()
				nodes[ev.Task.ID] = ev.Node
				mu.Unlock()
			}
		}})
		e := newTestExec(4, func(*Run) behaviour { return behaviour{outcome: OK, hold: hold} })
		q := &queueExec{testExec: e, depth: 2}
		e.s, e.report = s, q.done
		if err := s.AddNode("front", 4, frontExec{q}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMachines("front", []Machine{{Name: "m1", Slots: 3}, {Name: "m2", Slots: 1}, {Name: "m3", Slots: 2, Down: true}}); err != nil {
			t.Fatal(err)
		}
		var tasks []*Task
		for i := range 3 {
			tk := &Task{ID: int64(i)}
			tasks = append(tasks, tk)
			if err := s.Submit(t.Context(), tk); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := len(s.NodeTasks("m1")); got != 2 {
			t.Errorf("NodeTasks(m1): %d tasks, want 2", got)
		}
		if got := s.NodeTasks("m2"); len(got) != 1 || got[0] != tasks[1] {
			t.Errorf("NodeTasks(m2): %v, want task 1", got)
		}
		if got := tasks[1].NodeName(); got != "m2" {
			t.Errorf("task 1 on %q, want m2", got)
		}
		st := s.Stats()
		busy := map[string]int{}
		for _, ns := range st.Nodes {
			busy[ns.Name] = ns.Busy
		}
		if want := map[string]int{"m1": 2, "m2": 1, "m3": 0}; len(busy) != 3 || busy["m1"] != 2 || busy["m2"] != 1 {
			t.Errorf("busy by machine %v, want %v", busy, want)
		}
		close(hold)
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := map[string]NodeStats{}
		for _, ns := range s.Stats().Nodes {
			got[ns.Name] = ns
		}
		if m1, m2, m3 := got["m1"], got["m2"], got["m3"]; len(got) != 3 || m1.Jobs != 2 || m1.Slots != 3 || m1.Busy != 0 || m2.Jobs != 1 || m2.Slots != 1 || !m3.Down || m1.Down {
			t.Errorf("stats %+v", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if nodes[0] != "m1" || nodes[1] != "m2" || nodes[2] != "m1" {
			t.Errorf("Running events on %v", nodes)
		}
	})
}
