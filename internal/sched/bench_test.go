package sched

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// instantExec is a simulated machine whose runs finish at once: it only
// collects them, and the benchmark loop reports them done.
type instantExec struct {
	mu   *sync.Mutex
	runs *[]*Run
}

func (e instantExec) Start(r *Run) {
	e.mu.Lock()
	*e.runs = append(*e.runs, r)
	e.mu.Unlock()
}
func (instantExec) Cancel(*Run)                 {}
func (instantExec) Close(context.Context) error { return nil }

// BenchmarkDispatch measures the core's cost per job with every machine
// busy and tasks queued: each iteration submits a task and ends the oldest
// run, which frees a slot and dispatches the next queued task. ns/op is
// the cost per job; at 1,000 machines it should stay close to the cost at
// 10 (placement is O(log n)).
func BenchmarkDispatch(b *testing.B) {
	for _, c := range []struct{ machines, tenants int }{
		{10, 1}, {1000, 1}, {10, 100}, {1000, 100},
	} {
		b.Run(fmt.Sprintf("machines=%d/tenants=%d", c.machines, c.tenants), func(b *testing.B) {
			benchDispatch(b, c.machines, c.tenants)
		})
	}
}

func benchDispatch(b *testing.B, machines, tenants int) {
	s := New(Config{Policy: Fair})
	var mu sync.Mutex
	var runs, batch []*Run
	ex := instantExec{mu: &mu, runs: &runs}
	for i := range machines {
		if err := s.AddNode(fmt.Sprint("m", i), 1, ex); err != nil {
			b.Fatal(err)
		}
	}
	ts := make([]*Tenant, tenants)
	for i := range ts {
		ts[i] = s.NewTenant(TenantConfig{Name: fmt.Sprint("t", i)})
	}
	ctx := context.Background()
	submit := func(i int) {
		if err := s.Submit(ctx, &Task{ID: int64(i), Tenant: ts[i%tenants]}); err != nil {
			b.Fatal(err)
		}
	}
	// Fill every machine and queue as many again.
	prefill := 2 * machines
	for i := range prefill {
		submit(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		submit(prefill + i)
		if len(batch) == 0 {
			mu.Lock()
			batch, runs = runs, batch[:0]
			mu.Unlock()
		}
		r := batch[0]
		batch = batch[1:]
		s.Done(r, Result{Outcome: OK})
	}
	b.StopTimer()
	for {
		for _, r := range batch {
			s.Done(r, Result{Outcome: OK})
		}
		mu.Lock()
		batch, runs = runs, batch[:0]
		mu.Unlock()
		if len(batch) == 0 {
			break
		}
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
