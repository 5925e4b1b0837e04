package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Pool spreads evaluations over several hosts, as Batchlib did: each host
// runs up to its number of slots at once, waiting work goes to whichever
// host frees a slot first (so faster hosts take more), an evaluation whose
// host died is run again on another host, and every result comes back with
// its input. A host that died is dialled again (at once, then after 1, 2,
// 4, 8 and 16 s) and takes work again once it is back; one that stays away
// is given up. It runs on drove's scheduling core (internal/sched) with an
// executor over [*Host], its hosts kept by internal/fleet.
//
// Create it with [NewPool], submit work with [Map] or [Pool.RunAll], and
// Close it. A Pool is safe for concurrent use; several Maps may run at once.
type Pool struct {
	conns   *sshconn.Pool
	sched   *sched.Scheduler
	hosts   *fleet.Fleet
	retries int
	log     *slog.Logger

	deadOnce sync.Once
	dead     chan struct{} // closed when every host is given up
}

// PoolOption configures [NewPool].
type PoolOption func(*poolConfig)

type poolConfig struct {
	slots   int
	retries int
	host    []Option
}

// WithSlots sets how many evaluations run at once on each host. The default
// is the host's number of online CPUs.
func WithSlots(n int) PoolOption { return func(c *poolConfig) { c.slots = n } }

// WithRetries sets how many more times an evaluation that failed (returned
// an error other than a lost host) is tried, on any host. The default is 0.
// An evaluation whose host died, that is whose error matches *ConnError (a
// connection or SFTP session lost during a command or a file operation), is
// always moved to another host (up to 5 times) without counting as a retry,
// and the host is taken out of the pool until it is dialled again.
func WithRetries(n int) PoolOption { return func(c *poolConfig) { c.retries = n } }

// WithHostOptions sets the options used to dial every host (ssh_config,
// known_hosts, logger, …).
func WithHostOptions(opts ...Option) PoolOption {
	return func(c *poolConfig) { c.host = append(c.host, opts...) }
}

// NewPool dials every target at once. Hosts that cannot be reached are left
// out (see [Pool.Down]); NewPool fails only if none can be reached, with the
// errors of all of them.
func NewPool(ctx context.Context, targets []string, opts ...PoolOption) (*Pool, error) {
	var pc poolConfig
	for _, o := range opts {
		o(&pc)
	}
	var hc config
	for _, o := range pc.host {
		o(&hc)
	}
	sshCfg := hc.sshConfig()
	conns, err := sshconn.NewPool(sshCfg)
	if err != nil {
		return nil, err
	}
	log := sshCfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{conns: conns, retries: pc.retries, log: log, dead: make(chan struct{})}
	p.sched = sched.New(sched.Config{Reentrant: true, OnNode: p.nodeEvent, Logger: log.With("component", "sched")})
	p.hosts = fleet.New(p.sched, fleet.Config{Permanent: sshconn.Permanent, Logger: log})
	var members []fleet.Member
	seen := map[string]bool{}
	for _, t := range targets {
		if seen[t] {
			continue
		}
		seen[t] = true
		members = append(members, fleet.Member{Key: t, Dial: func(ctx context.Context) (fleet.Conn, error) {
			h, err := Dial(ctx, t, append(slices.Clone(pc.host), withPool(conns))...)
			if err != nil {
				return fleet.Conn{}, err
			}
			slots := pc.slots
			if slots <= 0 {
				slots = cpuCount(ctx, h)
			}
			ex := &hostExec{name: t, h: h, p: p, runs: map[*sched.Run]context.CancelCauseFunc{}}
			return fleet.Conn{Executor: ex, Slots: slots}, nil
		}})
	}
	var errs []error
	for _, err := range p.hosts.Add(ctx, members...) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(members) {
		p.Close()
		return nil, fmt.Errorf("remote: no host reachable: %w", errors.Join(errs...))
	}
	return p, nil
}

// nodeEvent notes when every host is given up: no evaluation can run any
// more.
func (p *Pool) nodeEvent(ev sched.NodeEvent) {
	if ev.Kind != sched.NodeGone {
		return
	}
	for _, st := range p.hosts.Members() {
		if !st.Gone {
			return
		}
	}
	p.deadOnce.Do(func() { close(p.dead) })
}

// cpuCount asks the host for its online CPUs; 1 if it cannot tell.
func cpuCount(ctx context.Context, h *Host) int {
	out, err := h.Output(ctx, "getconf", "_NPROCESSORS_ONLN")
	if err != nil {
		return 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Hosts returns the targets of the hosts in use now, in the order given
// to NewPool.
func (p *Pool) Hosts() []string {
	var out []string
	for _, st := range p.hosts.Members() {
		if st.Up {
			out = append(out, st.Key)
		}
	}
	return out
}

// Down returns the hosts that could not be reached or died, with why. A
// host that died is dialled again and leaves Down once it is back.
func (p *Pool) Down() map[string]error {
	out := map[string]error{}
	for _, st := range p.hosts.Members() {
		if !st.Up {
			out[st.Key] = st.Err
		}
	}
	return out
}

// hostDied takes a host out of the pool; its running evaluations move to
// other hosts, and the pool dials it again.
func (p *Pool) hostDied(name string, err error) {
	p.log.Warn("remote: host died; moving its work to other hosts", "host", name, "err", err)
	p.sched.NodeDown(name, err)
}

// Close waits for running evaluations and closes every connection.
func (p *Pool) Close() error {
	p.hosts.Close()
	err := p.sched.Close(context.Background())
	if errors.Is(err, sched.ErrClosed) {
		err = nil
	}
	if cerr := p.conns.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrNoHosts is the error of evaluations left when every host of a Pool
// has died and been given up.
var ErrNoHosts = errors.New("remote: no live host left in pool")

// Eval is one evaluation's outcome, with its input.
type Eval[In, Out any] struct {
	Input    In
	Output   Out    // fn's output from the last attempt (also when it returned an error)
	Err      error  // fn's error, a cancellation, or ErrNoHosts
	Host     string // the host of the last attempt ("" if none ran)
	Attempts int    // attempts started (more than 1 after a retry or a dead host)
}

// evaluation is a task's Ref: it runs fn and keeps outputs per host, so that
// a late attempt on a dead host cannot overwrite the one that counts.
type evaluation struct {
	run      func(ctx context.Context, h *Host) (any, error)
	attempts atomic.Int32
	mu       sync.Mutex
	outs     map[string]any
}

// Map runs fn once per input over the pool's hosts and returns the results
// in input order. fn receives the host to use and a ctx that is cancelled if
// the evaluation is cancelled or the Pool closes; it must be safe to call
// again on another host. Map returns when every evaluation has ended; if ctx
// ends first, the remaining ones are cancelled (their remote commands
// killed) and report ctx's error.
func Map[In, Out any](ctx context.Context, p *Pool, inputs []In, fn func(ctx context.Context, h *Host, in In) (Out, error)) []Eval[In, Out] {
	results := make([]Eval[In, Out], len(inputs))
	tasks := make([]*sched.Task, len(inputs))
	evs := make([]*evaluation, len(inputs))
	for i, in := range inputs {
		results[i].Input = in
		ev := &evaluation{outs: map[string]any{}}
		ev.run = func(ctx context.Context, h *Host) (any, error) { return fn(ctx, h, in) }
		evs[i] = ev
		t := &sched.Task{ID: int64(i), Retries: p.retries, Ref: ev}
		if err := p.sched.Submit(ctx, t); err != nil {
			results[i].Err = err
			continue
		}
		tasks[i] = t
	}
	cancelAll := func() {
		for _, t := range tasks {
			if t != nil {
				p.sched.Cancel(t)
			}
		}
	}
	var cause error
	for _, t := range tasks {
		if t == nil {
			continue
		}
		select {
		case <-t.Done():
			continue
		case <-ctx.Done():
			cause = context.Cause(ctx)
		case <-p.dead:
			cause = ErrNoHosts
		}
		cancelAll()
		break
	}
	for i, t := range tasks {
		if t == nil {
			continue
		}
		<-t.Done()
		r := t.Result()
		res := &results[i]
		res.Host = t.NodeName()
		res.Attempts = int(evs[i].attempts.Load())
		res.Err = r.Err
		if t.State() == sched.Cancelled && cause != nil {
			res.Err = cause
		}
		evs[i].mu.Lock()
		if out, ok := evs[i].outs[res.Host].(Out); ok && r.Outcome != sched.Lost {
			res.Output = out
		}
		evs[i].mu.Unlock()
	}
	return results
}

// RunAll runs each command on some host of the pool, as [Map] does with
// [Host.Run]. A command that exits non-zero has an *ExitError in Err and its
// Result in Output.
func (p *Pool) RunAll(ctx context.Context, cmds []*Cmd) []Eval[*Cmd, *Result] {
	return Map(ctx, p, cmds, func(ctx context.Context, h *Host, c *Cmd) (*Result, error) {
		return h.Run(ctx, c)
	})
}

// hostExec is the scheduler's executor for one Host.
type hostExec struct {
	name string
	h    *Host
	p    *Pool

	mu     sync.Mutex
	runs   map[*sched.Run]context.CancelCauseFunc
	closed bool
	lost   bool // the host was reported down: once is enough
	wg     sync.WaitGroup
}

var _ sched.Executor = (*hostExec)(nil)

func (e *hostExec) Start(r *sched.Run) {
	ev := r.Task.Ref.(*evaluation)
	ctx, cancel := context.WithCancelCause(context.Background())
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		cancel(nil)
		e.p.sched.Done(r, sched.Result{Outcome: sched.Lost, Err: ErrClosed})
		return
	}
	e.runs[r] = cancel
	e.wg.Add(1)
	e.mu.Unlock()
	if c := r.Cause(); c != nil {
		cancel(c)
	}
	go func() {
		defer e.wg.Done()
		ev.attempts.Add(1)
		start := time.Now()
		out, err := ev.run(ctx, e.h)
		res := sched.Result{Start: start, End: time.Now(), Err: err}
		var ce *ConnError
		switch {
		case err == nil:
			res.Outcome = sched.OK
			ev.mu.Lock()
			ev.outs[e.name] = out
			ev.mu.Unlock()
		case ctx.Err() != nil:
			res.Outcome = sched.Killed
		case errors.As(err, &ce):
			// The host is gone: the scheduler moves this evaluation (and
			// the host's other running ones) elsewhere.
			res.Outcome = sched.Lost
			e.mu.Lock()
			report := !e.lost && !e.closed
			e.lost = true
			e.mu.Unlock()
			if report {
				e.p.hostDied(e.name, err)
			}
		default:
			res.Outcome = sched.Failed
			if out != nil {
				ev.mu.Lock()
				ev.outs[e.name] = out
				ev.mu.Unlock()
			}
		}
		e.mu.Lock()
		delete(e.runs, r)
		e.mu.Unlock()
		cancel(nil)
		e.p.sched.Done(r, res)
	}()
}

func (e *hostExec) Cancel(r *sched.Run) {
	e.mu.Lock()
	cancel := e.runs[r]
	e.mu.Unlock()
	if cancel != nil {
		cancel(r.Cause())
	}
}

func (e *hostExec) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	for _, cancel := range e.runs {
		cancel(ErrClosed)
	}
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return e.h.Close()
}
