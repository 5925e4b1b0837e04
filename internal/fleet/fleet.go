// Package fleet keeps the members of a scheduler's cluster, whatever their
// backend: drove nodes, SSH hosts, remote.Pool's hosts. It dials members in
// parallel, adds those that answer to the [sched.Scheduler], leaves out
// those that do not, and redials a member the scheduler reports down, with
// one backoff policy, until it is back or given up on.
//
// Every change is a scheduler node event, so front ends learn everything
// from sched.Config.OnNode: NodeUp and NodeDown come from the scheduler
// itself, and the fleet reports what only it knows through
// [sched.Scheduler.ReportNode]: [sched.NodeUnreachable] for a member that
// could not be reached when first dialled, [sched.NodeGone] for one it
// stops dialling.
//
// The backend-specific part is a dial function per member returning an
// executor and its slots; executors only report their node down
// ([sched.Scheduler.NodeDown]) and never add themselves back.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

// Backoff is when a lost member is dialled again: the first attempt at
// once, the next ones after Initial, doubled after each failure up to Max.
// The zero value means [DefaultBackoff].
type Backoff struct {
	// Initial is the wait before the second attempt; zero means 1 s.
	Initial time.Duration
	// Max caps the wait between attempts; zero means 30 s (at least
	// Initial).
	Max time.Duration
	// Attempts is how many attempts a member gets after it went down (or
	// after it could not be reached at first, with
	// Config.RetryUnreachable) before it is given up; zero means 6, and a
	// negative value means no limit.
	Attempts int
}

// DefaultBackoff dials a lost member at once, then after 1, 2, 4, 8 and
// 16 s: about half a minute in all, which rides out an sshd or node
// restart or a short network outage.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, Attempts: 6}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	b.Max = max(b.Max, b.Initial)
	if b.Attempts == 0 {
		b.Attempts = DefaultBackoff.Attempts
	}
	return b
}

// Delay returns the wait before attempt n (0 for the first, n = 0).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	if n <= 0 {
		return 0
	}
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Conn is a connected member, as its dial function returns it.
type Conn struct {
	// Executor runs the member's tasks; the fleet adds it to the scheduler.
	Executor sched.Executor
	// Slots is how many tasks the member runs at once.
	Slots int
	// Name is the member's name in the scheduler; empty means its key.
	Name string
}

// Member is one member to keep: a key that names it in the fleet (an
// address, an SSH target) and the backend's way to connect to it.
type Member struct {
	Key string
	// Dial connects to the member. It is called again for each redial, so
	// it returns a fresh executor each time. Its ctx ends when the fleet
	// closes, and bounds a redial by Config.ConnectTimeout.
	Dial func(ctx context.Context) (Conn, error)
}

// Config configures a [Fleet]. The zero value is usable.
type Config struct {
	// Backoff is when lost members are dialled again.
	Backoff Backoff
	// ConnectTimeout is how long [Fleet.Add] waits for each member to
	// answer, and bounds each redial. A member that has not answered when
	// Add stops waiting goes on connecting in the background and joins
	// when it answers. Zero means no bound.
	ConnectTimeout time.Duration
	// RetryUnreachable dials members that could not be reached at first
	// again, with Backoff, as lost ones are; otherwise they are left out
	// for good (reported NodeUnreachable, then NodeGone).
	RetryUnreachable bool
	// Permanent reports errors that dialling again cannot fix (a refused
	// host key or secret, a closed connection pool): the member is given
	// up at once. Nil means every error is worth another attempt.
	Permanent func(error) bool
	// Lost, if set, is called (on the member's goroutine) with the
	// executor of a member that went down, after the fleet closed it and
	// before it is redialled, for what the backend must do about what the
	// executor may have left on the member.
	Lost func(ctx context.Context, key string, ex sched.Executor)
	// MaxDials bounds the dials in flight at once, so that a thousand
	// hosts are not all dialled in the same instant (pssh's and
	// ClusterShell's fan-out bound connections too). Zero means
	// [DefaultMaxDials].
	MaxDials int
	// Logger receives what happens to members; nil discards it.
	Logger *slog.Logger
}

// DefaultMaxDials is ClusterShell's default fan-out.
const DefaultMaxDials = 64

// State is one member's state, as [Fleet.Members] reports it.
type State struct {
	Key  string
	Name string // its name in the scheduler; "" until it first joined
	// Executor is its current executor; nil while it is not connected.
	Executor sched.Executor
	Up       bool  // in the scheduler and not reported down
	Gone     bool  // given up: it is not dialled again
	Err      error // why it is not up
}

// ErrClosed is the error of a member that was connecting when the fleet
// closed.
var ErrClosed = errors.New("drove: closed")

// Fleet keeps members in a scheduler. Create it with [New] and stop it with
// [Fleet.Close]; its methods are safe for concurrent use.
type Fleet struct {
	s   *sched.Scheduler
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   func()        // stops watching the scheduler's node events
	dials  chan struct{} // a token per dial in flight (MaxDials)

	mu      sync.Mutex
	members map[string]*member
	order   []*member
}

type member struct {
	Member
	name    string
	ex      sched.Executor
	up      bool
	gone    bool
	removed bool
	err     error
	// changed wakes the member's goroutine when it was reported down or
	// removed.
	changed chan struct{}
}

// New returns a fleet that adds members to s. It watches s's node events
// from now until Close.
func New(s *sched.Scheduler, cfg Config) *Fleet {
	cfg.Backoff = cfg.Backoff.withDefaults()
	if cfg.MaxDials <= 0 {
		cfg.MaxDials = DefaultMaxDials
	}
	f := &Fleet{s: s, cfg: cfg, log: cfg.Logger, members: map[string]*member{}, dials: make(chan struct{}, cfg.MaxDials)}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.stop = s.WatchNodes(f.nodeEvent)
	return f
}

// nodeEvent wakes the member the scheduler reports down or removed.
func (f *Fleet) nodeEvent(ev sched.NodeEvent) {
	if ev.Kind != sched.NodeDown && ev.Kind != sched.NodeRemoved {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.order {
		if !m.up || m.name != ev.Node {
			continue
		}
		m.up = false
		if ev.Kind == sched.NodeRemoved {
			m.removed = true
		} else {
			m.err = ev.Err
		}
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
}

// Add dials the members in parallel and returns each one's error, nil for
// a member added to the scheduler (or already in the fleet). It waits for
// each member at most ConnectTimeout, or until ctx ends: a member still
// connecting then has an error wrapping [context.DeadlineExceeded] (or
// ctx's error) and joins when it answers. A member that fails is reported
// [sched.NodeUnreachable] and, unless RetryUnreachable, [sched.NodeGone].
func (f *Fleet) Add(ctx context.Context, members ...Member) []error {
	errs := make([]error, len(members))
	results := make([]chan error, len(members))
	for i, mb := range members {
		f.mu.Lock()
		if _, ok := f.members[mb.Key]; ok || f.ctx.Err() != nil {
			if f.ctx.Err() != nil {
				errs[i] = ErrClosed
			}
			f.mu.Unlock()
			continue
		}
		m := &member{Member: mb, changed: make(chan struct{}, 1)}
		f.members[mb.Key] = m
		f.order = append(f.order, m)
		results[i] = make(chan error, 1)
		f.wg.Go(func() { f.keep(m, results[i]) })
		f.mu.Unlock()
	}
	var timeout <-chan time.Time
	if f.cfg.ConnectTimeout > 0 {
		t := time.NewTimer(f.cfg.ConnectTimeout)
		defer t.Stop()
		timeout = t.C
	}
	var why error
	for i, ch := range results {
		if ch == nil {
			continue
		}
		if why == nil {
			select {
			case errs[i] = <-ch:
				continue
			case <-timeout:
				why = fmt.Errorf("no answer within %v; it joins when it answers: %w", f.cfg.ConnectTimeout, context.DeadlineExceeded)
			case <-ctx.Done():
				why = fmt.Errorf("still connecting when the caller gave up; it joins when it answers: %w", ctx.Err())
			}
		}
		select {
		case errs[i] = <-ch:
		default:
			errs[i] = fmt.Errorf("drove: %s: %w", members[i].Key, why)
			f.mu.Lock()
			if m := f.members[members[i].Key]; !m.up && m.err == nil {
				m.err = errs[i]
			}
			f.mu.Unlock()
		}
	}
	return errs
}

// keep connects the member and keeps it connected for as long as the
// fleet runs: it redials it when it goes down, until it is back or given
// up. The first dial's error goes to first.
func (f *Fleet) keep(m *member, first chan<- error) {
	everUp := false
	failures := 0 // failed attempts since the member was last up
	for {
		ctx, cancel := f.ctx, context.CancelFunc(func() {})
		if first == nil && f.cfg.ConnectTimeout > 0 {
			ctx, cancel = context.WithTimeout(f.ctx, f.cfg.ConnectTimeout)
		}
		err := f.connect(ctx, m)
		cancel()
		if f.ctx.Err() != nil {
			if first != nil {
				first <- err
			}
			return
		}
		if err == nil {
			if first != nil {
				first <- nil
				first = nil
			}
			everUp, failures = true, 0
			if !f.watch(m) {
				return
			}
			continue // at once
		}
		failures++
		f.log.Debug("fleet: dial failed", "member", m.Key, "attempt", failures, "err", err)
		if !everUp && failures == 1 {
			f.s.ReportNode(sched.NodeEvent{Node: f.nameOf(m), Kind: sched.NodeUnreachable, Err: err})
		}
		// The events go out before Add returns, so that a caller that
		// closes the scheduler at once still gets them.
		giveUp := true
		switch {
		case f.cfg.Permanent != nil && f.cfg.Permanent(err):
			f.giveUp(m, err)
		case !everUp && !f.cfg.RetryUnreachable:
			f.giveUp(m, err)
		case f.cfg.Backoff.Attempts > 0 && failures >= f.cfg.Backoff.Attempts:
			f.giveUp(m, fmt.Errorf("drove: %s: %d attempts failed: %w", m.Key, failures, err))
		default:
			giveUp = false
		}
		if first != nil {
			first <- err
			first = nil
		}
		if giveUp {
			return
		}
		t := time.NewTimer(f.cfg.Backoff.Delay(failures))
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connect dials the member once and adds it to the scheduler.
func (f *Fleet) connect(ctx context.Context, m *member) error {
	select {
	case f.dials <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	c, err := m.Dial(ctx)
	<-f.dials
	if err != nil {
		f.mu.Lock()
		m.err = err
		f.mu.Unlock()
		return err
	}
	name := c.Name
	if name == "" {
		name = m.Key
	}
	f.mu.Lock()
	if f.ctx.Err() != nil {
		f.mu.Unlock()
		_ = c.Executor.Close(context.Background())
		return ErrClosed
	}
	// Up before AddNode: the executor may report the node down at once, and
	// that event must find the member up.
	m.name, m.ex, m.up, m.err = name, c.Executor, true, nil
	f.mu.Unlock()
	if err := f.s.AddNode(name, c.Slots, c.Executor); err != nil {
		f.mu.Lock()
		m.ex, m.up, m.err = nil, false, err
		f.mu.Unlock()
		_ = c.Executor.Close(context.Background())
		if errors.Is(err, sched.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	f.log.Info("fleet: member added", "member", m.Key, "name", name, "slots", c.Slots)
	return nil
}

// watch waits until the member is reported down (it returns true after
// releasing its executor) or removed, or the fleet closes (false).
func (f *Fleet) watch(m *member) bool {
	select {
	case <-f.ctx.Done():
		return false
	case <-m.changed:
	}
	f.mu.Lock()
	ex, removed, err := m.ex, m.removed, m.err
	m.ex = nil
	f.mu.Unlock()
	if removed {
		return false // the scheduler closed its executor
	}
	f.log.Warn("fleet: member lost; dialling it again", "member", m.Key, "err", err)
	// The scheduler drops a down node without closing its executor when
	// one of the same name is added: release it here.
	ctx, cancel := f.releaseContext()
	defer cancel()
	_ = ex.Close(ctx)
	if f.cfg.Lost != nil {
		f.cfg.Lost(ctx, m.Key, ex)
	}
	return f.ctx.Err() == nil
}

func (f *Fleet) releaseContext() (context.Context, context.CancelFunc) {
	if f.cfg.ConnectTimeout > 0 {
		return context.WithTimeout(f.ctx, f.cfg.ConnectTimeout)
	}
	return context.WithTimeout(f.ctx, 10*time.Second)
}

func (f *Fleet) giveUp(m *member, err error) {
	f.mu.Lock()
	m.gone, m.err = true, err
	f.mu.Unlock()
	f.log.Warn("fleet: giving up on member", "member", m.Key, "err", err)
	f.s.ReportNode(sched.NodeEvent{Node: f.nameOf(m), Kind: sched.NodeGone, Err: err})
}

func (f *Fleet) nameOf(m *member) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.name != "" {
		return m.name
	}
	return m.Key
}

// Members returns the members' states, in the order they were added.
func (f *Fleet) Members() []State {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]State, 0, len(f.order))
	for _, m := range f.order {
		out = append(out, State{Key: m.Key, Name: m.name, Executor: m.ex, Up: m.up, Gone: m.gone, Err: m.err})
	}
	return out
}

// Close stops dialling and watching and waits for the fleet's goroutines.
// The members' executors stay in the scheduler, which closes them.
func (f *Fleet) Close() {
	// Under the lock, so that Add starts no goroutine after Wait began.
	f.mu.Lock()
	f.cancel()
	f.mu.Unlock()
	f.stop()
	f.wg.Wait()
}
