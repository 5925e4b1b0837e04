package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/sched"
)

// fakeEx is an in-process executor: every run succeeds at once.
type fakeEx struct {
	s      *sched.Scheduler
	closed atomic.Int32
}

func (e *fakeEx) Start(r *sched.Run) { go e.s.Done(r, sched.Result{Outcome: sched.OK}) }
func (e *fakeEx) Cancel(*sched.Run)  {}
func (e *fakeEx) Close(context.Context) error {
	e.closed.Add(1)
	return nil
}

var (
	errDown = errors.New("connection refused")
	errPerm = errors.New("host key refused")
	errLost = errors.New("connection lost")
)

// recorder keeps the node events in order as "kind name".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) onNode(ev sched.NodeEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev.Kind.String()+" "+ev.Node)
}

func (r *recorder) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, ", ")
}

// dialer answers successive dials with the scripted errors (nil: an
// executor), then succeeds; it records when each dial came.
type dialer struct {
	s      *sched.Scheduler
	script []error
	start  time.Time

	mu    sync.Mutex
	times []time.Duration
	exs   []*fakeEx
}

func (d *dialer) dial(ctx context.Context) (fleet.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.times)
	d.times = append(d.times, time.Since(d.start))
	if n < len(d.script) && d.script[n] != nil {
		return fleet.Conn{}, d.script[n]
	}
	ex := &fakeEx{s: d.s}
	d.exs = append(d.exs, ex)
	return fleet.Conn{Executor: ex, Slots: 2}, nil
}

func secs(s ...float64) []time.Duration {
	var out []time.Duration
	for _, x := range s {
		out = append(out, time.Duration(x*float64(time.Second)))
	}
	return out
}

func TestFleet(t *testing.T) {
	e := errDown
	tests := []struct {
		name    string
		cfg     fleet.Config
		script  []error // outcome of each dial of member "a"; success after
		downs   int     // times the member is reported down once up
		addErr  bool
		events  string
		dialsAt []time.Duration // when each dial came, from the start
		gone    bool
	}{
		{name: "up", script: nil, events: "up a", dialsAt: secs(0)},
		{name: "unreachable left out", script: []error{e}, addErr: true,
			events: "unreachable a, gone a", dialsAt: secs(0), gone: true},
		{name: "unreachable retried", cfg: fleet.Config{RetryUnreachable: true}, script: []error{e, e, nil}, addErr: true,
			events: "unreachable a, up a", dialsAt: secs(0, 1, 3)},
		{name: "lost and back", script: []error{nil, e, e, nil}, downs: 1,
			events: "up a, down a, up a", dialsAt: secs(0, 0, 1, 3)},
		{name: "lost twice", script: []error{nil, nil, e, nil}, downs: 2,
			events: "up a, down a, up a, down a, up a", dialsAt: secs(0, 0, 0, 1)},
		{name: "given up after default attempts", script: []error{nil, e, e, e, e, e, e}, downs: 1,
			events: "up a, down a, gone a", dialsAt: secs(0, 0, 1, 3, 7, 15, 31), gone: true},
		{name: "permanent error", cfg: fleet.Config{Permanent: func(err error) bool { return errors.Is(err, errPerm) }},
			script: []error{nil, e, errPerm}, downs: 1, events: "up a, down a, gone a", dialsAt: secs(0, 0, 1), gone: true},
		{name: "custom backoff capped", cfg: fleet.Config{Backoff: fleet.Backoff{Initial: 100 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 4}},
			script: []error{nil, e, e, e, e}, downs: 1, events: "up a, down a, gone a", dialsAt: secs(0, 0, 0.1, 0.3, 0.5), gone: true},
		{name: "no attempt limit", cfg: fleet.Config{Backoff: fleet.Backoff{Initial: time.Second, Max: 2 * time.Second, Attempts: -1}},
			script: []error{nil, e, e, e, e, e, e, e, e}, downs: 1, events: "up a, down a, up a", dialsAt: secs(0, 0, 1, 3, 5, 7, 9, 11, 13, 15)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec recorder
				s := sched.New(sched.Config{OnNode: rec.onNode})
				d := &dialer{s: s, script: tc.script, start: time.Now()}
				f := fleet.New(s, tc.cfg)
				errs := f.Add(t.Context(), fleet.Member{Key: "a", Dial: d.dial})
				if (errs[0] != nil) != tc.addErr {
					t.Errorf("Add: %v", errs[0])
				}
				for range tc.downs {
					// Wait until the member is (back) up, then lose it.
					for {
						synctest.Wait()
						if st := f.Members()[0]; st.Up {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
					s.NodeDown("a", errLost)
				}
				time.Sleep(10 * time.Minute)
				synctest.Wait()
				st := f.Members()[0]
				f.Close()
				if err := s.Close(context.Background()); err != nil {
					t.Error(err)
				}
				if got := rec.get(); got != tc.events {
					t.Errorf("events %q, want %q", got, tc.events)
				}
				if !slices.Equal(d.times, tc.dialsAt) {
					t.Errorf("dials at %v, want %v", d.times, tc.dialsAt)
				}
				if st.Gone != tc.gone || st.Up == tc.gone {
					t.Errorf("state %+v", st)
				}
				// Every executor but the last one up was closed by the
				// fleet when it was lost; the last by the scheduler.
				for i, ex := range d.exs {
					if n := ex.closed.Load(); n == 0 {
						t.Errorf("executor %d not closed", i)
					}
				}
			})
		})
	}
}

// TestAddParallel: members are dialled at once, and Add waits for each at
// most ConnectTimeout; a slow member joins when it answers.
func TestAddParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		s := sched.New(sched.Config{OnNode: rec.onNode})
		defer s.Close(context.Background())
		f := fleet.New(s, fleet.Config{ConnectTimeout: 5 * time.Second})
		defer f.Close()
		member := func(key string, after time.Duration, err error) fleet.Member {
			return fleet.Member{Key: key, Dial: func(ctx context.Context) (fleet.Conn, error) {
				select {
				case <-time.After(after):
				case <-ctx.Done():
					return fleet.Conn{}, ctx.Err()
				}
				if err != nil {
					return fleet.Conn{}, err
				}
				return fleet.Conn{Executor: &fakeEx{s: s}, Slots: 1, Name: "node-" + key}, nil
			}}
		}
		start := time.Now()
		errs := f.Add(t.Context(), member("a", 4*time.Second, nil), member("b", 3*time.Second, errDown), member("slow", 20*time.Second, nil))
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("Add took %v, want the connect timeout", took)
		}
		if errs[0] != nil || !errors.Is(errs[1], errDown) || !errors.Is(errs[2], context.DeadlineExceeded) {
			t.Errorf("errors %v", errs)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got, want := rec.get(), "unreachable b, gone b, up node-a, up node-slow"; got != want {
			t.Errorf("events %q, want %q", got, want)
		}
		var states []string
		for _, st := range f.Members() {
			states = append(states, fmt.Sprintf("%s=%s up=%v gone=%v", st.Key, st.Name, st.Up, st.Gone))
		}
		if got, want := strings.Join(states, " "), "a=node-a up=true gone=false b= up=false gone=true slow=node-slow up=true gone=false"; got != want {
			t.Errorf("members %q, want %q", got, want)
		}
		// A member already in the fleet is left alone.
		if errs := f.Add(t.Context(), member("a", 0, errDown)); errs[0] != nil {
			t.Errorf("adding a again: %v", errs[0])
		}
	})
}

// TestLostHook: the executor of a lost member is closed and handed to
// Config.Lost before the member is dialled again; a member removed on
// request is not dialled again.
func TestLostHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := sched.New(sched.Config{})
		defer s.Close(context.Background())
		var mu sync.Mutex
		var lost []sched.Executor
		d := &dialer{s: s, start: time.Now()}
		f := fleet.New(s, fleet.Config{Lost: func(ctx context.Context, key string, ex sched.Executor) {
			mu.Lock()
			defer mu.Unlock()
			if ex.(*fakeEx).closed.Load() == 0 {
				t.Error("Lost before Close")
			}
			lost = append(lost, ex)
		}})
		defer f.Close()
		f.Add(t.Context(), fleet.Member{Key: "a", Dial: d.dial})
		synctest.Wait()
		s.NodeDown("a", errLost)
		synctest.Wait()
		if len(lost) != 1 || lost[0] != d.exs[0] || len(d.exs) != 2 {
			t.Fatalf("lost %v, executors %v", lost, d.exs)
		}
		if err := s.RemoveNode(t.Context(), "a", true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if len(d.times) != 2 || len(lost) != 1 {
			t.Errorf("dials %v, lost %d after removal", d.times, len(lost))
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		b    fleet.Backoff
		want []time.Duration
	}{
		{fleet.Backoff{}, secs(0, 1, 2, 4, 8, 16, 30, 30)},
		{fleet.Backoff{Initial: 3 * time.Second, Max: time.Second}, secs(0, 3, 3)},
		{fleet.Backoff{Initial: time.Second, Max: 5 * time.Second}, secs(0, 1, 2, 4, 5, 5)},
	}
	for _, tc := range tests {
		var got []time.Duration
		for n := range tc.want {
			got = append(got, tc.b.Delay(n))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.b, got, tc.want)
		}
	}
}

// TestMaxDials: no more than MaxDials members are dialled at once, and
// every member is dialled in the end.
func TestMaxDials(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := sched.New(sched.Config{})
				defer s.Close(context.Background())
				f := fleet.New(s, fleet.Config{MaxDials: limit})
				defer f.Close()
				var inFlight, most atomic.Int32
				var members []fleet.Member
				for i := range 8 {
					members = append(members, fleet.Member{Key: fmt.Sprint(i), Dial: func(ctx context.Context) (fleet.Conn, error) {
						n := inFlight.Add(1)
						for {
							m := most.Load()
							if n <= m || most.CompareAndSwap(m, n) {
								break
							}
						}
						time.Sleep(time.Second)
						inFlight.Add(-1)
						return fleet.Conn{Executor: &fakeEx{s: s}, Slots: 1}, nil
					}})
				}
				start := time.Now()
				for i, err := range f.Add(t.Context(), members...) {
					if err != nil {
						t.Errorf("member %d: %v", i, err)
					}
				}
				if got := most.Load(); got != int32(limit) {
					t.Errorf("%d dials at once, want %d", got, limit)
				}
				if took, want := time.Since(start), time.Duration((8+limit-1)/limit)*time.Second; took != want {
					t.Errorf("Add took %v, want %v", took, want)
				}
			})
		})
	}
}
