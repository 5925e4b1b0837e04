// Package scheduler is what makes a drove daemon the shared scheduler
// (drove scheduler, dispy's dispyscheduler): its machines are drove nodes.
//
// The daemon itself is package node's — the same API, blob store,
// authentication and events kept for clients as a drove node, and the same
// scheduling core — so a client uses a scheduler exactly as it uses a
// node (drove.WithScheduler). What differs is where the jobs run: Machines
// keeps the drove nodes it is given (addresses, or patterns found by UDP
// discovery and announcements) with the fleet every client uses, adds each
// as a node of the daemon's scheduler, and gives every computation a
// node executor (package nodeexec) on every node, set up from the blobs
// the client shipped to the scheduler. So a computation is shipped once to
// the scheduler and once to each node, by hash: a blob a node has is not
// sent again, whoever the client.
//
// The scheduler is one client of its nodes, with one id (Config.ClientID),
// and each client computation is one computation on each node.
package scheduler

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/atomicfile"
	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/fleet"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// DefaultPort is the scheduler's TCP port for clients, dispyscheduler's;
// nodes announce themselves to its UDP twin.
const DefaultPort = discovery.ClientPort

// Config configures Machines.
type Config struct {
	// Nodes are the drove nodes to drive: "host", "host:port" (default
	// port 9701), or patterns with "*" ("*", "192.168.1.*") found by
	// discovery; nodes matching a pattern that start later announce
	// themselves and join.
	Nodes []string
	// Secret is the nodes' cluster secret ("" sends none); it is kept
	// apart from the secret clients use with the scheduler.
	Secret string
	// TLS, if set, is the scheduler's TLS configuration towards nodes
	// (mutual TLS: its client certificate and the nodes' CA).
	TLS *tls.Config
	// CPUs caps the CPUs used on each node; 0 means all a node offers.
	CPUs int
	// ClientID is the scheduler's id on the nodes. It stays the same
	// across restarts, so that nodes keep its results while it is away:
	// "" means the id kept in Dir (made on the first start).
	ClientID string
	// Dir is the daemon's directory (node.Config.Dir), where the id is
	// kept.
	Dir string
	// Heartbeat is the interval of heartbeats with the nodes; 0 lets each
	// node choose.
	Heartbeat time.Duration
	// Misses is how many heartbeat intervals a node may stay silent
	// before it is reported down; default 5.
	Misses int
	// Retry is how often a node that is down or unreachable is tried
	// again; default 5s.
	Retry time.Duration
	// ConnectTimeout bounds each attempt to reach a node and set a
	// computation up on it; default 10s.
	ConnectTimeout time.Duration
	// Discovery configures finding nodes for patterns; its Secret is set
	// from Secret.
	Discovery discovery.ClientConfig
	// State, if set, is where the scheduler keeps where each job went and
	// the results nodes gave, so that a scheduler started again on it gets
	// back the outcomes of the jobs on nodes instead of running them
	// again (durable.go). The daemon keeps the rest (node.Config.State).
	State *state.DB
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
}

// Machines are a scheduler's drove nodes; it implements node.Machines.
type Machines struct {
	cfg   Config
	log   *slog.Logger
	s     *sched.Scheduler
	fleet *fleet.Fleet
	// links count blob bytes sent to the nodes and heartbeats they
	// missed, on the daemon's registry (RegisterMetrics); nil counts
	// nothing.
	links *metrics.Links

	// ctx bounds everything Machines start: set-ups and discovery; wg
	// waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// shared is set while more than one computation is open; nodeMux.Prefetch
	// reads it under the scheduler's lock, hence an atomic.
	shared atomic.Bool

	mu       sync.Mutex
	reclaims map[*node.Computation]*reclaims // jobs taken up from the state, being reclaimed (durable.go)
	comps    map[*sched.Tenant]*computation  // open computations, by tenant
	muxes    map[*nodeMux]struct{}           // nodes in the scheduler
	names    map[string]string               // node name by address, fixed when it first answers
	// stale are computations left on nodes that went down, by address:
	// a node cut off or frozen may live on, holding them (and their
	// workers) until its zombie interval. They are closed when the node
	// answers again (closeStale).
	stale map[string][]*nodeexec.Executor
}

var (
	_ node.Machines = (*Machines)(nil)
	_ node.Relay    = (*Machines)(nil)
)

// computation is a client computation as the nodes get it.
type computation struct {
	c    *node.Computation
	ten  *sched.Tenant
	comp *nodeexec.Computation

	// Guarded by Machines.mu: the bounds its client set on nodes (SetCPUs),
	// and the nodes that refused it for good, by node name. A node that
	// refused it gets none of its jobs (a bound of 0) until a later set-up
	// there succeeds.
	caps    map[string]int
	refused map[string]bool
}

// boundLocked returns the bound of mc's jobs on the named node: 0 if the
// node refused it, the client's if it set one, else -1 (none).
func (mc *computation) boundLocked(name string) int {
	if mc.refused[name] {
		return 0
	}
	if c, ok := mc.caps[name]; ok {
		return c
	}
	return -1
}

// refuse keeps mc's jobs off the named node, which refused it for good
// (accept undoes it): they run on the nodes that take it.
func (m *Machines) refuse(mc *computation, name string, refused bool) {
	m.mu.Lock()
	if mc.refused[name] == refused {
		m.mu.Unlock()
		return
	}
	if mc.refused == nil {
		mc.refused = map[string]bool{}
	}
	mc.refused[name] = refused
	bound := mc.boundLocked(name)
	m.mu.Unlock()
	if err := m.s.SetTenantNodeSlots(mc.ten, name, bound); err != nil {
		m.log.Debug("bounding a computation on a node", "node", name, "err", err)
	}
}

// SetCPUs implements node.Relay: the client's bound of its computation's
// jobs on one node.
func (m *Machines) SetCPUs(c *node.Computation, machine string, cpus int) error {
	m.mu.Lock()
	mc := m.comps[c.Tenant()]
	known := false
	for _, name := range m.names {
		known = known || name == machine
	}
	if mc == nil || !known {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", sched.ErrNoNode, machine)
	}
	if mc.caps == nil {
		mc.caps = map[string]int{}
	}
	if cpus < 0 {
		delete(mc.caps, machine)
	} else {
		mc.caps[machine] = cpus
	}
	bound := mc.boundLocked(machine)
	m.mu.Unlock()
	return m.s.SetTenantNodeSlots(mc.ten, machine, bound)
}

// List implements node.Relay: the nodes that have answered once, by name.
func (m *Machines) List() []*drovev1.Machine {
	stats := map[string]sched.NodeStats{}
	for _, ns := range m.s.Stats().Nodes {
		stats[ns.Name] = ns
	}
	var out []*drovev1.Machine
	for _, st := range m.fleet.Members() {
		m.mu.Lock()
		name := m.names[st.Key]
		m.mu.Unlock()
		if name == "" {
			continue // never answered: nothing to name it by
		}
		ns, ok := stats[name]
		mc := &drovev1.Machine{Name: name, Addr: st.Key, Cpus: int32(ns.Slots), Done: int32(ns.Jobs), Up: st.Up && ok && !ns.Down}
		if x, ok := st.Executor.(*nodeMux); ok {
			if info := x.info.Load(); info != nil {
				mc.Busy, mc.Avail = info.Busy, info.Avail
			}
		}
		out = append(out, mc)
	}
	slices.SortFunc(out, func(a, b *drovev1.Machine) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// New returns the machines for cfg; the daemon starts them.
func New(cfg Config) *Machines {
	if cfg.Retry <= 0 {
		cfg.Retry = 5 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Misses <= 0 {
		cfg.Misses = 5
	}
	cfg.Discovery.Secret = cfg.Secret
	m := &Machines{
		cfg:      cfg,
		log:      cfg.Logger,
		comps:    map[*sched.Tenant]*computation{},
		reclaims: map[*node.Computation]*reclaims{},
		muxes:    map[*nodeMux]struct{}{},
		names:    map[string]string{},
		stale:    map[string][]*nodeexec.Executor{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

// RegisterMetrics implements node.MetricsRegisterer: the daemon's
// registry gets the blob bytes sent to the nodes and fetched from them and
// the heartbeats they missed. Call it before Start.
func (m *Machines) RegisterMetrics(reg prometheus.Registerer) {
	m.links = metrics.NewLinks(reg)
}

// Start implements node.Machines: the nodes given by address are dialled
// (for at most ConnectTimeout each; those that do not answer are tried
// again every Retry), and patterns start discovery. A scheduler without
// any node is not an error: jobs wait until nodes join.
func (m *Machines) Start(ctx context.Context, s *sched.Scheduler) error {
	if m.cfg.ClientID == "" {
		id, err := loadID(m.cfg.Dir)
		if err != nil {
			return err
		}
		m.cfg.ClientID = id
	}
	m.s = s
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var addrs, patterns []string
	for _, n := range m.cfg.Nodes {
		if discovery.IsPattern(n) {
			patterns = append(patterns, n)
		} else {
			addrs = append(addrs, discovery.NodeAddr(n))
		}
	}
	var search *discovery.Search
	if len(patterns) > 0 {
		var err error
		search, err = discovery.NewSearch(m.cfg.Discovery, patterns, func(ctx context.Context, addrs []string) { m.add(ctx, addrs) })
		if err != nil {
			return err
		}
		search.Have = func() bool {
			return slices.ContainsFunc(m.fleet.Members(), func(st fleet.State) bool { return st.Up })
		}
		search.Logger = m.log
	}
	m.fleet = fleet.New(s, fleet.Config{
		Backoff:          fleet.Backoff{Initial: m.cfg.Retry, Max: m.cfg.Retry, Attempts: -1},
		ConnectTimeout:   m.cfg.ConnectTimeout,
		RetryUnreachable: true,
		Permanent:        nodeexec.Permanent,
		Logger:           m.log,
	})
	for i, err := range m.add(ctx, addrs) {
		switch {
		case err == nil:
		case nodeexec.Permanent(err):
			// The fleet does not dial it again: saying it will retry
			// would send the operator waiting.
			m.log.Error("node refused the scheduler; not tried again until the scheduler restarts", "addr", addrs[i], "err", err)
		default:
			m.log.Warn("node not available; will retry", "addr", addrs[i], "err", err)
		}
	}
	if search != nil {
		m.wg.Go(func() { m.discover(search) })
	}
	return nil
}

// idFile is where a scheduler keeps its id, in its directory.
const idFile = "scheduler-id"

// loadID returns the id kept in dir, making one on the first start: the
// host name and a random suffix, as a client's.
func loadID(dir string) (string, error) {
	path := filepath.Join(dir, idFile)
	b, err := os.ReadFile(path)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("drove: scheduler: reading its id: %w", err)
	}
	id := nodeexec.NewClientID("scheduler-")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("drove: scheduler: %w", err)
	}
	err = atomicfile.WriteFile(atomicfile.OS, path, 0o600, time.Now(), func(w io.Writer) error {
		_, err := io.WriteString(w, id+"\n")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("drove: scheduler: keeping its id: %w", err)
	}
	return id, nil
}

// discover adds the nodes matching patterns that answer discovery now, and
// those that announce themselves later, until Stop; while it has no node,
// it pings again and says what it tried.
func (m *Machines) discover(search *discovery.Search) {
	if err := search.Round(m.ctx); err != nil {
		m.log.Warn("discovery", "err", err)
	}
	search.Run(m.ctx)
}

// add adds the nodes at addrs to the fleet, which keeps them.
func (m *Machines) add(ctx context.Context, addrs []string) []error {
	members := make([]fleet.Member, len(addrs))
	for i, a := range addrs {
		members[i] = fleet.Member{Key: a, Dial: func(ctx context.Context) (fleet.Conn, error) { return m.dial(ctx, a) }}
	}
	return m.fleet.Add(ctx, members...)
}

// Stop implements node.Machines.
func (m *Machines) Stop() {
	m.cancel()
	m.wg.Wait()
	m.fleet.Close()
}

// Slots implements node.Machines: the nodes' slots, each capped by cpus
// and Config.CPUs. A scheduler without nodes has one, so that clients
// queue their jobs with it until nodes join.
func (m *Machines) Slots(cpus int) int {
	total := 0
	for _, ns := range m.s.Stats().Nodes {
		n := ns.Slots
		if cpus > 0 {
			n = min(n, cpus)
		}
		total += n
	}
	return max(total, 1)
}

// Open implements node.Machines: the computation gets a tenant, and is set
// up on every node now and on each node that joins later. It returns as
// soon as one node has it, or all have answered, or after ConnectTimeout:
// a node that hangs must not hold up the client, whose own connect
// timeout may be no longer than ours. It fails only if every node refused
// it for good (another platform, a setup that fails).
func (m *Machines) Open(ctx context.Context, c *node.Computation) (*sched.Tenant, error) {
	comp, err := nodeComputation(c)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	// Exclusivity is kept here, across the nodes, not asked of them: the
	// scheduler gives a node no run of another computation while an
	// exclusive one has runs in flight.
	tc := sched.TenantConfig{Name: c.ID(), Exclusive: c.Request().Exclusive}
	if c.Request().Cpus > 0 {
		// A client that asked for some CPUs of each node gets their sum
		// over the nodes up now (Slots), whatever the nodes' own CPUs:
		// without the bound, its jobs would take every free CPU.
		tc.Slots = c.Slots()
	}
	ten := m.s.NewTenant(tc)
	mc := &computation{c: c, ten: ten, comp: comp}
	m.mu.Lock()
	m.comps[ten] = mc
	m.shared.Store(len(m.comps) > 1)
	muxes := make([]*nodeMux, 0, len(m.muxes))
	for x := range m.muxes {
		muxes = append(muxes, x)
	}
	m.mu.Unlock()
	var ps []*pair
	for _, x := range muxes {
		ps = append(ps, x.ensure(mc))
	}
	if len(ps) == 0 {
		// No node in the scheduler: the computation waits for one to
		// join, unless none ever can.
		if err := m.noneCanJoin(); err != nil {
			m.Close(ctx, c)
			_ = m.s.CloseTenant(ctx, ten)
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("drove: scheduler: no node can be used: %w", err))
		}
	}
	if len(ps) > 0 && !m.anyTakes(ctx, ps) {
		m.Close(ctx, c)
		_ = m.s.CloseTenant(ctx, ten)
		var errs []error
		for _, p := range ps {
			errs = append(errs, p.err)
		}
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("drove: scheduler: no node can run this computation: %w", errors.Join(errs...)))
	}
	return ten, nil
}

// anyTakes waits until one of the set-ups in ps succeeds (true), every one
// of them refused the computation for good (false), or half of
// ConnectTimeout passes (true: the nodes still setting up may take it, and
// the jobs wait for them; the client gives up on the scheduler after its
// own ConnectTimeout). A node that is unreachable counts as one that may
// take it when it comes back.
func (m *Machines) anyTakes(ctx context.Context, ps []*pair) bool {
	wctx, cancel := context.WithTimeout(ctx, m.cfg.ConnectTimeout/2)
	ended := make(chan *pair, len(ps))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, p := range ps {
		wg.Go(func() {
			select {
			case <-p.ready:
				ended <- p
			case <-wctx.Done():
			}
		})
	}
	refused := 0
	for range ps {
		select {
		case p := <-ended:
			switch {
			case p.err == nil:
				return true
			case nodeexec.Permanent(p.err):
				refused++
			}
		case <-wctx.Done():
			return true
		}
	}
	return refused < len(ps)
}

// noneCanJoin returns why no node can ever join: every node given by
// address refused the scheduler for good (a wrong secret or certificate,
// another protocol) and no pattern may find others. It returns nil while
// one might join.
func (m *Machines) noneCanJoin() error {
	if slices.ContainsFunc(m.cfg.Nodes, discovery.IsPattern) {
		return nil
	}
	members := m.fleet.Members()
	if len(members) == 0 {
		return nil
	}
	var errs []error
	for _, st := range members {
		if !st.Gone {
			return nil
		}
		errs = append(errs, st.Err)
	}
	return errors.Join(errs...)
}

// Close implements node.Machines: the computation is closed on every node.
func (m *Machines) Close(ctx context.Context, c *node.Computation) {
	m.mu.Lock()
	var mc *computation
	for ten, x := range m.comps {
		if x.c == c {
			mc = x
			delete(m.comps, ten)
		}
	}
	m.shared.Store(len(m.comps) > 1)
	muxes := make([]*nodeMux, 0, len(m.muxes))
	for x := range m.muxes {
		muxes = append(muxes, x)
	}
	m.mu.Unlock()
	m.endReclaims(c)
	if mc == nil {
		return
	}
	var wg sync.WaitGroup
	for _, x := range muxes {
		wg.Go(func() { x.drop(ctx, mc.ten, c.Kept()) })
	}
	wg.Wait()
}

// nodeComputation describes c for the nodes: its files are the blobs the
// client shipped to the scheduler.
func nodeComputation(c *node.Computation) (*nodeexec.Computation, error) {
	req := c.Request()
	blobs := c.Blobs()
	file := func(b *drovev1.Blob) (*nodeexec.File, error) {
		p := blobs.Path(b.Sum)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("drove: scheduler: blob %s: %w", b.Sum, err)
		}
		return &nodeexec.File{Path: p, Sum: b.Sum, Mode: os.FileMode(b.Mode).Perm(), Size: fi.Size()}, nil
	}
	comp := &nodeexec.Computation{
		Func:        req.FuncName,
		Setup:       req.Setup,
		Fingerprint: req.Fingerprint,
		ProgramName: req.ProgramName,
		Env:         req.Env,
		Grace:       c.Grace(),
		GOOS:        req.Goos,
		GOARCH:      req.Goarch,
	}
	var err error
	if req.Executable != nil {
		if comp.Executable, err = file(req.Executable); err != nil {
			return nil, err
		}
	}
	if req.Program != nil {
		if comp.Program, err = file(req.Program); err != nil {
			return nil, err
		}
	}
	for _, d := range req.Depends {
		f, err := file(d.Blob)
		if err != nil {
			return nil, err
		}
		comp.Depends = append(comp.Depends, nodeexec.Depend{Name: filepath.Clean(d.Name), File: f})
	}
	return comp, nil
}

// dial reaches the node at addr and makes it a node of the scheduler:
// every open computation is set up there, in the background (runs given
// to the node meanwhile wait for their computation).
func (m *Machines) dial(ctx context.Context, addr string) (fleet.Conn, error) {
	hc := nodeexec.NewHTTPClient(m.cfg.Secret, m.cfg.TLS)
	defer hc.CloseIdleConnections()
	info, err := nodeexec.Info(ctx, hc, addr, m.cfg.TLS)
	if err != nil {
		return fleet.Conn{}, err
	}
	if info.Protocol != nodeexec.Protocol {
		return fleet.Conn{}, &nodeexec.ConnError{Addr: addr, Err: fmt.Errorf("node speaks protocol %d, this scheduler %d (upgrade them together)", info.Protocol, nodeexec.Protocol)}
	}
	slots := int(info.Cpus)
	if m.cfg.CPUs > 0 {
		slots = min(slots, m.cfg.CPUs)
	}
	m.mu.Lock()
	name, ok := m.names[addr]
	if !ok {
		name = info.Name
		for _, o := range m.names {
			if o == name {
				// Two nodes of one name (say, two on one host): the
				// address tells them apart.
				name = info.Name + "@" + addr
				break
			}
		}
		m.names[addr] = name
	}
	x := &nodeMux{m: m, addr: addr, name: name, slots: slots, pairs: map[*sched.Tenant]*pair{}}
	x.info.Store(info)
	x.ctx, x.cancel = context.WithCancel(m.ctx)
	m.muxes[x] = struct{}{}
	comps := make([]*computation, 0, len(m.comps))
	for _, mc := range m.comps {
		comps = append(comps, mc)
	}
	m.mu.Unlock()
	for _, mc := range comps {
		x.ensure(mc)
	}
	m.wg.Go(x.watch)
	m.log.Info("node up", "node", name, "addr", addr, "cpus", slots)
	// The node answers again: the computations it was left with when it
	// went down are closed, in the background (closing one stops its
	// workers, which takes a while on a busy node).
	m.wg.Go(func() {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.ConnectTimeout)
		defer cancel()
		m.closeStale(ctx, addr)
	})
	return fleet.Conn{Executor: x, Slots: slots, Name: name}, nil
}

// closeStale tries, until ctx ends, to close the computations left on the
// node at addr when it went down (stopping what they still run: the
// scheduler gave their jobs back), and forgets those it closed. Those it
// could not close are tried again at the next dial, or left to the node's
// zombie reaper.
func (m *Machines) closeStale(ctx context.Context, addr string) {
	m.mu.Lock()
	stale := m.stale[addr]
	delete(m.stale, addr)
	m.mu.Unlock()
	var left []*nodeexec.Executor
	for _, ex := range stale {
		// A try may fail at once on a connection the node dropped while
		// it was cut off (EOF): the next one dials anew.
		for {
			err := ex.CloseStale(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				m.log.Warn("a computation left on a node that went down could not be closed; the node closes it after its zombie interval", "addr", addr, "err", err)
				left = append(left, ex)
				break
			}
			m.log.Debug("closing a computation left on a node that went down", "addr", addr, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if len(left) > 0 {
		m.mu.Lock()
		m.stale[addr] = append(m.stale[addr], left...)
		m.mu.Unlock()
	}
}

// nodeMux is the executor a node is added to the scheduler with: it passes
// each run to its computation's executor on the node (a pair), and holds
// the runs of a computation still being set up there.
type nodeMux struct {
	m     *Machines
	addr  string
	name  string
	slots int
	// ctx ends when the node leaves the scheduler: its set-ups and its
	// watch stop.
	ctx    context.Context
	cancel context.CancelFunc

	// asked is set once Prefetch has answered (see there).
	asked atomic.Bool
	// info is what the node last answered to Info (watch): its load, for
	// the scheduler's clients (List).
	info atomic.Pointer[drovev1.InfoResponse]

	mu     sync.Mutex
	closed bool
	pairs  map[*sched.Tenant]*pair
}

var (
	_ sched.Executor   = (*nodeMux)(nil)
	_ sched.Prefetcher = (*nodeMux)(nil)
)

// pair is one computation on one node.
type pair struct {
	x     *nodeMux
	mc    *computation
	ready chan struct{} // closed when the set-up ended; then ex or err is set
	ex    *nodeexec.Executor
	err   error
	// ctx bounds the set-up; stop, called when the pair is closed, ends
	// one still waiting for a node that does not answer.
	ctx  context.Context
	stop context.CancelFunc
	// wrapped is pairExec as the computation's executor
	// (node.Computation.Executor): what runs are given to.
	wrapped sched.Executor

	mu      sync.Mutex
	pending []*sched.Run // given before ready
}

// ensure returns mc's pair on the node, starting its set-up if it has none.
func (x *nodeMux) ensure(mc *computation) *pair {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := x.pairs[mc.ten]; p != nil {
		return p
	}
	p := &pair{x: x, mc: mc, ready: make(chan struct{})}
	p.wrapped = mc.c.Executor(pairExec{p}, true)
	if x.closed {
		p.err = &nodeexec.ConnError{Addr: x.addr, Err: errors.New("node down")}
		p.ctx, p.stop = x.ctx, func() {}
		close(p.ready)
		return p
	}
	p.ctx, p.stop = context.WithCancel(x.ctx)
	x.pairs[mc.ten] = p
	x.m.wg.Go(p.setup)
	return p
}

// setup opens the computation on the node and starts the runs that wait
// for it.
func (p *pair) setup() {
	x := p.x
	c := p.mc.c
	// No deadline: shipping a large computation takes what it takes. A
	// node that hangs is found by its watch, which ends x.ctx and so
	// p.ctx.
	ex, err := nodeexec.Dial(p.ctx, nodeexec.Config{
		Addr:      x.addr,
		Secret:    x.m.cfg.Secret,
		TLS:       x.m.cfg.TLS,
		ClientID:  x.m.cfg.ClientID,
		CPUs:      x.m.cfg.CPUs,
		Heartbeat: x.m.cfg.Heartbeat,
		Misses:    x.m.cfg.Misses,
		Files:     c.Files(),
		OnSubmit:  x.m.onSubmit(c, x.addr),
		BeforeAck: x.m.beforeAck(),
		Logger:    x.m.log.With("node", x.name, "computation", c.ID()),
		// The node's watch counts its missed heartbeats, once.
		Metrics: x.m.links.BlobsOnly(),
	}, p.mc.comp, reporter{c: c, s: x.m.s, st: x.m.cfg.State})
	if err == nil {
		ex.SetName(x.name)
		x.m.keepNode(c, x.addr, ex)
	}
	p.mu.Lock()
	p.ex, p.err = ex, err
	pending := p.pending
	p.pending = nil
	close(p.ready)
	p.mu.Unlock()
	switch {
	case err != nil && p.ctx.Err() != nil:
		// Closed meanwhile (the computation, the node or the
		// scheduler): no fault of the node's, and the runs that waited
		// never began.
		for _, r := range pending {
			c.Done(r, sched.Result{Outcome: sched.NotStarted})
		}
		return
	case err != nil:
		x.m.log.Warn("setting a computation up on a node", "node", x.name, "computation", c.ID(), "err", err)
		if !nodeexec.Permanent(err) {
			// The node is unreachable: the scheduler gives its runs
			// back, and the fleet dials it again.
			x.m.s.NodeDown(x.name, err)
			return
		}
		// Refused for good: the computation's jobs go to the other
		// nodes, those given to this one first.
		x.m.refuse(p.mc, x.name, true)
	default:
		x.m.refuse(p.mc, x.name, false)
	}
	for _, r := range pending {
		p.start(r)
	}
}

// start passes r to the pair's node executor, or gives it back unstarted
// if the node refused the computation: the scheduler keeps the
// computation's jobs off that node from then on (refuse), so it goes to
// another.
func (p *pair) start(r *sched.Run) {
	if p.err != nil {
		p.mc.c.Done(r, sched.Result{Outcome: sched.NotStarted})
		return
	}
	p.ex.Start(r)
}

// pairExec is a pair as its computation's executor on the node, before it
// is wrapped by the computation (node.Computation.Executor).
type pairExec struct{ p *pair }

func (e pairExec) Start(r *sched.Run) {
	p := e.p
	p.mu.Lock()
	select {
	case <-p.ready:
	default:
		p.pending = append(p.pending, r)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.start(r)
}

// take removes r from the runs waiting for the set-up; if it was not
// there, it returns the node executor that has it (nil if there is none).
func (p *pair) take(r *sched.Run) (waiting bool, ex *nodeexec.Executor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.pending, r); i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
		return true, nil
	}
	return false, p.ex
}

func (e pairExec) Cancel(r *sched.Run) {
	p := e.p
	waiting, ex := p.take(r)
	switch {
	case waiting:
		p.mc.c.Done(r, sched.Result{Outcome: sched.Killed, Err: errors.New("drove: job cancelled before it started")})
	case ex != nil:
		ex.Cancel(r)
	}
}

func (e pairExec) Recall(r *sched.Run) {
	p := e.p
	waiting, ex := p.take(r)
	switch {
	case waiting:
		p.mc.c.Done(r, sched.Result{Outcome: sched.NotStarted})
	case ex != nil:
		ex.Recall(r)
	}
}

func (e pairExec) Prefetch() int { return 0 }

// Close closes the computation on the node, abandoning a set-up still
// under way: closing never waits for a node that does not answer.
func (e pairExec) Close(ctx context.Context) error {
	p := e.p
	p.stop()
	select {
	case <-p.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.ex != nil {
		return p.ex.Close(ctx)
	}
	return nil
}

// pairOf returns the pair of r's computation, set up now if the node
// joined before the computation was opened and has not heard of it yet.
func (x *nodeMux) pairOf(r *sched.Run) *pair {
	x.mu.Lock()
	p := x.pairs[r.Task.Tenant]
	x.mu.Unlock()
	if p != nil {
		return p
	}
	x.m.mu.Lock()
	mc := x.m.comps[r.Task.Tenant]
	x.m.mu.Unlock()
	if mc == nil {
		return nil
	}
	return x.ensure(mc)
}

// Start implements sched.Executor.
func (x *nodeMux) Start(r *sched.Run) {
	p := x.pairOf(r)
	if p == nil {
		x.m.s.Done(r, sched.Result{Outcome: sched.Failed, Err: errors.New("drove: scheduler: a job of no open computation")})
		return
	}
	p.wrapped.Start(r)
}

// Cancel implements sched.Executor.
func (x *nodeMux) Cancel(r *sched.Run) {
	if p := x.pairOf(r); p != nil {
		p.wrapped.Cancel(r)
	}
}

// Recall implements sched.Prefetcher.
func (x *nodeMux) Recall(r *sched.Run) {
	if p := x.pairOf(r); p != nil {
		p.wrapped.(sched.Prefetcher).Recall(r)
	}
}

// Prefetch implements sched.Prefetcher. A lone computation's jobs queue
// ahead at a node as a client's do, so that its CPUs never wait for the
// network. With several computations open, the node gets a job only when
// it has a free slot: jobs queued ahead at a node would run in the node's
// order, not in the order the scheduler's policy gives (early, fsfs), and
// one computation's jobs queued there would hold CPUs that fair owes
// another, as a drove node does for its own computations
// (node.machineExec.Prefetch). A change takes effect as runs are given or
// end: jobs queued ahead when a second computation opens drain first.
//
// The first answer is always the full depth: the scheduler asks when the
// node is added and counts it as one that queues ahead only if the answer
// is positive; it asks again before it gives the node a run.
func (x *nodeMux) Prefetch() int {
	if x.m.shared.Load() && x.asked.Swap(true) {
		return 0
	}
	x.asked.Store(true)
	return x.depth()
}

// depth is how many runs a node queues ahead for a lone computation: as
// deep as the deepest of its computations' node executors asks, which
// follow how long their jobs run (nodeexec.Executor.Prefetch); the shallow
// depth before any has.
func (x *nodeMux) depth() int {
	depth := 2*x.slots + 16
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.pairs {
		select {
		case <-p.ready:
			if p.ex != nil {
				depth = max(depth, p.ex.Prefetch())
			}
		default:
		}
	}
	return depth
}

// drop closes ten's computation on the node; detach leaves it there,
// running, for the next start of a scheduler with a state.
func (x *nodeMux) drop(ctx context.Context, ten *sched.Tenant, detach bool) {
	x.mu.Lock()
	p := x.pairs[ten]
	delete(x.pairs, ten)
	x.mu.Unlock()
	if p != nil && detach {
		p.detach(ctx)
		return
	}
	if p != nil {
		if err := (pairExec{p}).Close(ctx); err != nil {
			x.m.log.Warn("closing a computation on a node", "node", x.name, "err", err)
		}
	}
}

// Close implements sched.Executor: the node is down or leaves; its
// computations are closed there (if it still answers).
func (x *nodeMux) Close(ctx context.Context) error {
	x.cancel()
	x.mu.Lock()
	x.closed = true
	pairs := x.pairs
	x.pairs = map[*sched.Tenant]*pair{}
	x.mu.Unlock()
	x.m.mu.Lock()
	delete(x.m.muxes, x)
	x.m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Go(func() {
			err := (pairExec{p}).Close(ctx)
			p.mu.Lock()
			ex := p.ex
			p.mu.Unlock()
			// A computation whose executor lost the node, or that the
			// node did not answer to close, may live on there: closed
			// when the node answers again.
			if ex != nil && (err != nil || ex.Err() != nil) {
				x.m.mu.Lock()
				x.m.stale[x.addr] = append(x.m.stale[x.addr], ex)
				x.m.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return nil
}

// watch asks the node for its Info every heartbeat interval and reports
// it down after Misses silent intervals in a row. The computations' own
// heartbeats find a lost node too, but a node may have none yet, or hang
// while one is being set up on it.
func (x *nodeMux) watch() {
	every := x.m.cfg.Heartbeat
	if every <= 0 {
		every = 2 * time.Second
	}
	hc := nodeexec.NewHTTPClient(x.m.cfg.Secret, x.m.cfg.TLS)
	defer hc.CloseIdleConnections()
	t := time.NewTicker(every)
	defer t.Stop()
	silent := 0
	for {
		select {
		case <-x.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(x.ctx, every)
		info, err := nodeexec.Info(ctx, hc, x.addr, x.m.cfg.TLS)
		cancel()
		if err == nil {
			x.info.Store(info)
			silent = 0
			continue
		}
		if x.ctx.Err() != nil {
			return
		}
		x.m.links.HeartbeatMiss()
		if silent++; silent >= x.m.cfg.Misses {
			x.m.log.Warn("node silent", "node", x.name, "addr", x.addr, "err", err)
			x.m.s.NodeDown(x.name, fmt.Errorf("%w: %d intervals of %v without an answer: %w", nodeexec.ErrHeartbeat, silent, every, err))
			return
		}
	}
}

// reporter passes what a node executor reports to its computation, and a
// node that went down to the scheduler. With a state, a job's result is
// kept before it is passed on (see keepResult).
type reporter struct {
	c  *node.Computation
	s  *sched.Scheduler
	st *state.DB
}

func (r reporter) Started(run *sched.Run, at time.Time) { r.c.Started(run, at) }
func (r reporter) Done(run *sched.Run, res sched.Result) {
	keepResult(r.st, r.c, run, res)
	r.c.Done(run, res)
}
func (r reporter) Provisional(run *sched.Run, output []byte) { r.c.Provisional(run, output) }
func (r reporter) NodeDown(name string, err error)           { r.s.NodeDown(name, err) }
