package drove

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/fleet"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/sshnode"
)

// remoteConfig is what a cluster of drove node daemons needs.
type remoteConfig struct {
	Nodes     []string // host[:port], "*" or patterns such as 192.168.1.*
	Secret    string   // "" means $DROVE_SECRET
	TLS       *tls.Config
	Func      string
	Setup     string
	Program   string // absolute path
	Depends   []string
	Env       []string
	CPUs      int // per node; 0 all
	Grace     time.Duration
	Files     local.FileSink
	Logger    *slog.Logger
	Metrics   *metrics.Links // blob bytes and missed heartbeats; nil counts nothing
	Heartbeat time.Duration  // 0: each node's --ping-interval
	Misses    int            // default 5
	// Retry is how often a node that is down or unreachable is tried
	// again; default 5s.
	Retry time.Duration
	// ConnectTimeout is how long NewCluster and DiscoverNodes wait for
	// each node to answer and take the computation; a node still setting
	// up then goes on in the background and joins when it answers.
	// Default 10s.
	ConnectTimeout time.Duration
	// Discovery configures finding nodes for patterns ("*"); its Secret is
	// set from Secret.
	Discovery discovery.ClientConfig
	// ClientID names this client to the nodes; a client that went away
	// gets its results back under the same ID (nodeexec.Recover). Default:
	// the host name and a random suffix.
	ClientID string
	// Exclusive asks each node (or the scheduler) to run the computation
	// alone (WithExclusive).
	Exclusive bool
	// Scheduler: the one node is a shared scheduler, which keeps the
	// computation while it is away (nodeexec.Config.Reattach) and runs
	// each job on one of its nodes (nodeexec.Config.Machines): the
	// cluster's job nodes, stats, Status, NodeJobs and SetNodeCPUs name
	// those nodes, the scheduler's machines in the cluster's scheduler.
	Scheduler bool
	// SSH dials the "ssh://" nodes: SSH hosts that become drove nodes for
	// the length of a session (internal/sshnode). Set when Nodes has any.
	SSH *sshconn.Pool
	// DiscoverTimeout, if positive, is how long startRemoteNodes waits
	// for a first node when Nodes has patterns: it fails with
	// ErrNoNodeFound, saying what it tried, if none joined by then.
	DiscoverTimeout time.Duration
	// Record, if set, is called with a node's address once the computation
	// is set up on it, before the node gets a job; its error keeps the
	// node out (retried like an unreachable one).
	Record func(addr string) error
}

// remoteNodes is a cluster's drove nodes: it maps the cluster's options to
// the dialling of each node (nodeexec) and leaves keeping them to a fleet,
// which redials a node that went down (or was unreachable) every Retry, so
// a restarted node is picked up. What is particular to drove nodes stays
// here: discovery, names, and the computations left on lost nodes.
type remoteNodes struct {
	s        *sched.Scheduler
	cfg      remoteConfig
	comp     *nodeexec.Computation
	clientID string
	log      *slog.Logger
	fleet    *fleet.Fleet

	// Discovery's goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// exe is this executable as installed on SSH hosts, hashed once.
	exeOnce sync.Once
	exe     *hostcache.Blob
	exeErr  error

	mu    sync.Mutex
	nodes map[string]*remoteNode // by address
	// caps are the bounds set with SetNodeCPUs on a scheduler's nodes, by
	// name (Scheduler).
	caps map[string]int
}

type remoteNode struct {
	addr string
	name string // its name in the scheduler, fixed when it first answers
	// stale are computations of this cluster the node may still run: it
	// was reported down and did not answer the Close then (a frozen node,
	// a cut link). They are closed when it answers again, and at the
	// latest by the cluster's Close, so that a node coming back does not
	// keep them until its zombie interval.
	stale []*nodeexec.Executor
}

// newComputation describes the cluster's computation for the nodes,
// hashing the files it ships once for all nodes.
func newComputation(cfg remoteConfig) (*nodeexec.Computation, error) {
	comp := &nodeexec.Computation{Func: cfg.Func, Setup: cfg.Setup, Env: cfg.Env, Grace: cfg.Grace, Exclusive: cfg.Exclusive}
	if cfg.Func != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("drove: finding this executable to ship to nodes: %w", err)
		}
		if comp.Executable, err = nodeexec.HashFile(exe); err != nil {
			return nil, err
		}
		comp.Fingerprint = registry.Fingerprint()
	} else {
		f, err := nodeexec.HashFile(cfg.Program)
		if err != nil {
			return nil, fmt.Errorf("drove: program: %w", err)
		}
		comp.Program = f
		comp.ProgramName = filepath.Base(cfg.Program)
	}
	for _, p := range cfg.Depends {
		f, err := nodeexec.HashFile(p)
		if err != nil {
			return nil, fmt.Errorf("drove: depends: %w", err)
		}
		name := filepath.Clean(p)
		if !filepath.IsLocal(name) {
			name = filepath.Base(name)
		}
		comp.Depends = append(comp.Depends, nodeexec.Depend{Name: name, File: f})
	}
	return comp, nil
}

// defaultConnectTimeout is how long a cluster waits for a node to answer
// before it starts without it.
const defaultConnectTimeout = 10 * time.Second

// startRemoteNodes adds the configured nodes to s. Nodes given by address
// are dialled now, each for at most ConnectTimeout; it fails only if none of
// them can be used (a node of another platform, a wrong secret, an
// unreachable node or one that did not answer in time is in the error). It
// keeps trying the unreachable ones in the background, and the ones that
// did not answer in time join when they do. Patterns start discovery.
func startRemoteNodes(ctx context.Context, s *sched.Scheduler, cfg remoteConfig) (*remoteNodes, error) {
	start := time.Now()
	if cfg.Secret == "" {
		cfg.Secret = os.Getenv("DROVE_SECRET")
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 5 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	cfg.Discovery.Secret = cfg.Secret
	comp, err := newComputation(cfg)
	if err != nil {
		return nil, err
	}
	r := &remoteNodes{
		s:        s,
		cfg:      cfg,
		comp:     comp,
		clientID: cfg.ClientID,
		log:      cfg.Logger,
		nodes:    map[string]*remoteNode{},
	}
	if r.clientID == "" {
		r.clientID = nodeexec.NewClientID("")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.fleet = fleet.New(s, fleet.Config{
		// A node is tried every Retry for as long as the cluster runs.
		Backoff:          fleet.Backoff{Initial: cfg.Retry, Max: cfg.Retry, Attempts: -1},
		ConnectTimeout:   cfg.ConnectTimeout,
		RetryUnreachable: true,
		Permanent:        permanentNodeErr,
		Lost:             r.lost,
		Logger:           r.log,
	})
	var addrs, patterns []string
	for _, n := range cfg.Nodes {
		if isSSHNode(n) {
			if cfg.SSH == nil {
				return nil, fmt.Errorf("drove: node %q: no SSH configuration", n)
			}
			addrs = append(addrs, n)
			continue
		}
		if discovery.IsPattern(n) {
			patterns = append(patterns, n)
		} else {
			addrs = append(addrs, discovery.NodeAddr(n))
		}
	}
	errs := r.addAll(ctx, addrs)
	if cfg.Scheduler {
		// Known from now on, not only from the next heartbeat.
		for _, st := range r.fleet.Members() {
			if ex, ok := st.Executor.(*nodeexec.Executor); ok {
				r.setMachines(st.Name, ex.Machines())
			}
		}
	}
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if len(patterns) > 0 {
		search, err := r.newSearch(patterns)
		if err != nil {
			r.close()
			return nil, err
		}
		if err := search.Round(ctx); err != nil {
			r.log.Warn("discovery", "err", err)
		}
		// Nodes that start later announce themselves; while none is
		// found, the search pings again and says what it tried.
		r.wg.Go(func() { search.Run(r.ctx) })
		if cfg.DiscoverTimeout > 0 {
			if err := r.waitForNode(ctx, start.Add(cfg.DiscoverTimeout), search); err != nil {
				r.close()
				return nil, err
			}
		}
		ok += r.count()
	}
	if ok == 0 && len(patterns) == 0 {
		r.close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("drove: connecting to nodes: %w", ctx.Err())
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("drove: no node found for %q", cfg.Nodes)
		}
		return nil, fmt.Errorf("drove: no usable node: %w", errors.Join(errs...))
	}
	for i, err := range errs {
		if err != nil {
			r.log.Warn("node not available; will retry", "addr", addrs[i], "err", err)
		}
	}
	return r, nil
}

// addAll adds the nodes at addrs, waiting for each to answer for at most
// ConnectTimeout or until ctx ends, and returns each node's error. The
// wait only bounds what the caller is told: a node that has not answered
// by then is still being set up in the background, joins the scheduler
// when it answers (its error here wraps context.DeadlineExceeded), and is
// retried like an unreachable node if it fails. So one hung node (a frozen
// process still accepts connections) never holds up the others. A node
// already known is left alone.
func (r *remoteNodes) addAll(ctx context.Context, addrs []string) []error {
	members := make([]fleet.Member, len(addrs))
	for i, a := range addrs {
		members[i] = fleet.Member{Key: a, Dial: func(ctx context.Context) (fleet.Conn, error) { return r.dial(ctx, a) }}
	}
	return r.fleet.Add(ctx, members...)
}

func (r *remoteNodes) count() int {
	n := 0
	for _, st := range r.fleet.Members() {
		if st.Up {
			n++
		}
	}
	return n
}

// node returns the node at addr, known from now on.
func (r *remoteNodes) node(addr string) *remoteNode {
	r.mu.Lock()
	defer r.mu.Unlock()
	rn := r.nodes[addr]
	if rn == nil {
		rn = &remoteNode{addr: addr}
		r.nodes[addr] = rn
	}
	return rn
}

// dial sets the computation up on the node at addr, once the computations
// it was left with are closed (tried for at most Retry).
func (r *remoteNodes) dial(ctx context.Context, addr string) (fleet.Conn, error) {
	rn := r.node(addr)
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Retry)
	r.closeStale(cctx, rn)
	cancel()
	ncfg := nodeexec.Config{
		Addr:      addr,
		Secret:    r.cfg.Secret,
		TLS:       r.cfg.TLS,
		ClientID:  r.clientID,
		CPUs:      r.cfg.CPUs,
		Heartbeat: r.cfg.Heartbeat,
		Misses:    r.cfg.Misses,
		Files:     r.cfg.Files,
		Reattach:  r.cfg.Scheduler,
		Logger:    r.log.With("node", addr),
		Metrics:   r.cfg.Metrics,
	}
	if r.cfg.Scheduler {
		ncfg.Machines, ncfg.OnMachines = true, r.setMachines
	}
	if isSSHNode(addr) {
		sc, err := r.startSSH(ctx, addr)
		if err != nil {
			return fleet.Conn{}, err
		}
		// SSH authenticates the session: no secret, no TLS.
		ncfg.Secret, ncfg.TLS = "", nil
		ncfg.HTTPClient, ncfg.Closer, ncfg.Lost = sc.HTTP, sc, sc.Done()
	}
	ex, err := nodeexec.Dial(ctx, ncfg, r.comp, r.s)
	if err != nil {
		if ncfg.Closer != nil {
			_ = ncfg.Closer.Close()
		}
		return fleet.Conn{}, err
	}
	if r.cfg.Record != nil {
		if err := r.cfg.Record(addr); err != nil {
			_ = ex.Close(ctx)
			return fleet.Conn{}, err
		}
	}
	r.mu.Lock()
	if rn.name == "" {
		rn.name = ex.Name()
		for _, o := range r.nodes {
			if o != rn && o.name == rn.name {
				// Two nodes of one name (say, two on one host): the
				// address tells them apart.
				rn.name = ex.Name() + "@" + addr
				break
			}
		}
	}
	name := rn.name
	r.mu.Unlock()
	ex.SetName(name)
	return fleet.Conn{Executor: ex, Slots: ex.Slots(), Name: name}, nil
}

// lost keeps the computation of a node that went down (the fleet closed
// its executor, which reaches no node) among those to close on the node:
// it may live on (a cut link, a frozen node), running what it still holds
// (its jobs were requeued). It tries once now, for at most Retry.
func (r *remoteNodes) lost(ctx context.Context, addr string, ex sched.Executor) {
	if isSSHNode(addr) {
		// Its session is closed with the executor, and the serving
		// process stops its jobs when the session ends: nothing is left.
		return
	}
	rn := r.node(addr)
	r.mu.Lock()
	rn.stale = append(rn.stale, ex.(*nodeexec.Executor))
	r.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Retry)
	defer cancel()
	r.closeStale(cctx, rn)
}

// NodeInfo is the state of one drove node of a cluster, with what it last
// reported about its resources (dispy's DispyNodeAvailInfo).
type NodeInfo struct {
	Name            string
	Addr            string
	Up              bool  // connected and serving the cluster
	Err             error // why it is not up
	CPUs            int   // slots the node granted the cluster, or fewer set with SetNodeCPUs
	Busy            int   // jobs it holds, for all its clients
	FreeCPUPercent  float64
	MemoryAvailable uint64 // bytes
	DiskAvailable   uint64 // bytes
	SwapUsedPercent float64
}

// setMachines gives the cluster's scheduler the nodes of the drove
// scheduler it knows as node, as the machines behind it: their CPUs
// (within the bounds set with SetNodeCPUs) and whether they are up.
func (r *remoteNodes) setMachines(node string, ms []*drovev1.Machine) {
	out := make([]sched.Machine, 0, len(ms))
	r.mu.Lock()
	for _, m := range ms {
		cpus := int(m.Cpus)
		if c, ok := r.caps[m.Name]; ok {
			cpus = min(cpus, c)
		}
		out = append(out, sched.Machine{Name: m.Name, Slots: cpus, Down: !m.Up})
	}
	r.mu.Unlock()
	// A node not added yet (being dialled again) gets them at its next
	// heartbeat.
	_ = r.s.SetMachines(node, out)
}

// schedulerNode returns the executor of the scheduler that has the named
// node, and that node.
func (r *remoteNodes) schedulerNode(name string) (*nodeexec.Executor, *drovev1.Machine) {
	for _, st := range r.fleet.Members() {
		ex, ok := st.Executor.(*nodeexec.Executor)
		if !ok {
			continue
		}
		for _, m := range ex.Machines() {
			if m.Name == name {
				return ex, m
			}
		}
	}
	return nil, nil
}

// setSchedulerCPUs is SetNodeCPUs for a scheduler's node: the scheduler
// runs at most cpus of the cluster's jobs there at once.
func (r *remoteNodes) setSchedulerCPUs(name string, cpus int) error {
	ex, m := r.schedulerNode(name)
	if ex == nil {
		return fmt.Errorf("drove: SetNodeCPUs(%q, %d): %w: the scheduler has no node of that name", name, cpus, ErrNoNode)
	}
	if cpus > int(m.Cpus) {
		return fmt.Errorf("drove: SetNodeCPUs(%q, %d): the scheduler uses %d CPUs of that node", name, cpus, m.Cpus)
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ConnectTimeout)
	defer cancel()
	if err := ex.SetCPUs(ctx, name, cpus); err != nil {
		return fmt.Errorf("drove: SetNodeCPUs(%q, %d): %w", name, cpus, err)
	}
	r.mu.Lock()
	if r.caps == nil {
		r.caps = map[string]int{}
	}
	r.caps[name] = cpus
	r.mu.Unlock()
	r.setMachines(ex.Name(), ex.Machines())
	return nil
}

// status describes the nodes, sorted by address; for a scheduler, its
// nodes.
func (r *remoteNodes) status() []NodeInfo {
	members := r.fleet.Members()
	slots := map[string]int{} // the cluster's own, lowered by SetNodeCPUs
	for _, ns := range r.s.Stats().Nodes {
		slots[ns.Name] = ns.Slots
	}
	out := make([]NodeInfo, 0, len(members))
	for _, st := range members {
		ni := NodeInfo{Name: st.Name, Addr: st.Key, Err: st.Err}
		if ni.Name == "" {
			// Never joined (unreachable so far): its address names it.
			ni.Name = st.Key
		}
		if ex, ok := st.Executor.(*nodeexec.Executor); ok && r.cfg.Scheduler && len(ex.Machines()) > 0 {
			out = append(out, r.machineStatus(ex)...)
			continue
		}
		if ex, ok := st.Executor.(*nodeexec.Executor); ok {
			ni.Up = ex.Err() == nil
			if !ni.Up {
				ni.Err = ex.Err()
			}
			ni.CPUs = ex.Slots()
			if n, ok := slots[st.Name]; ok {
				ni.CPUs = min(ni.CPUs, n)
			}
			busy, a := ex.Avail()
			ni.Busy = busy
			ni.FreeCPUPercent = a.GetCpuFreePercent()
			ni.MemoryAvailable = a.GetMemoryAvailable()
			ni.DiskAvailable = a.GetDiskAvailable()
			ni.SwapUsedPercent = a.GetSwapUsedPercent()
		}
		out = append(out, ni)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// machineStatus describes the nodes of the scheduler ex reaches: CPUs
// are what the scheduler uses of each (within the bounds set with
// SetNodeCPUs), Busy the jobs it holds for all its clients.
func (r *remoteNodes) machineStatus(ex *nodeexec.Executor) []NodeInfo {
	down := ex.Err()
	ms := ex.Machines()
	out := make([]NodeInfo, 0, len(ms))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range ms {
		ni := NodeInfo{
			Name:            m.Name,
			Addr:            m.Addr,
			Up:              m.Up && down == nil,
			Err:             down,
			CPUs:            int(m.Cpus),
			Busy:            int(m.Busy),
			FreeCPUPercent:  m.Avail.GetCpuFreePercent(),
			MemoryAvailable: m.Avail.GetMemoryAvailable(),
			DiskAvailable:   m.Avail.GetDiskAvailable(),
			SwapUsedPercent: m.Avail.GetSwapUsedPercent(),
		}
		if c, ok := r.caps[m.Name]; ok {
			ni.CPUs = min(ni.CPUs, c)
		}
		if !m.Up && down == nil {
			ni.Err = fmt.Errorf("drove: the scheduler's node %s (%s) is down", m.Name, m.Addr)
		}
		out = append(out, ni)
	}
	return out
}

// close stops discovery and reconnecting; the scheduler closes the
// executors, and closeLost the computations left on nodes that were lost.
func (r *remoteNodes) close() {
	r.cancel()
	r.wg.Wait()
	r.fleet.Close()
}

// closeStale tries once, within ctx, to close the stale computations of a
// node, and forgets those that are closed. It reports whether any are left.
func (r *remoteNodes) closeStale(ctx context.Context, rn *remoteNode) bool {
	r.mu.Lock()
	stale := slices.Clone(rn.stale)
	r.mu.Unlock()
	var left []*nodeexec.Executor
	for _, ex := range stale {
		if err := ex.CloseStale(ctx); err != nil {
			left = append(left, ex)
			r.log.Debug("closing a computation left on a lost node", "addr", rn.addr, "err", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rn.stale = slices.DeleteFunc(rn.stale, func(ex *nodeexec.Executor) bool { return !slices.Contains(left, ex) })
	return len(rn.stale) > 0
}

// closeLostWait bounds how long closing a cluster keeps trying to close its
// computations on nodes that were lost.
const closeLostWait = 5 * time.Second

// closeLost closes, after close, the computations the cluster left on
// nodes it lost (including one lost just now, whose executor the scheduler
// closed without reaching the node). A node that answers within
// closeLostWait has them closed, its workers stopped; it is tried again
// until then, so a frozen node that resumes meanwhile is cleaned up at
// once, not after its zombie interval. ctx ending does not stop it early:
// leaving the computations behind is what this is for.
func (r *remoteNodes) closeLost(ctx context.Context) {
	members := r.fleet.Members()
	r.mu.Lock()
	var lost []*remoteNode
	for _, st := range members {
		if ex, ok := st.Executor.(*nodeexec.Executor); ok && ex.Err() != nil && !isSSHNode(st.Key) {
			rn := r.nodes[st.Key]
			rn.stale = append(rn.stale, ex)
		}
	}
	for _, rn := range r.nodes {
		if len(rn.stale) > 0 {
			lost = append(lost, rn)
		}
	}
	r.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeLostWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, rn := range lost {
		wg.Go(func() {
			// Each try waits as long as allowed: a frozen node's kernel
			// holds the request, answered as soon as the node resumes.
			// Tries are repeated for nodes that refuse connections.
			for r.closeStale(ctx, rn) {
				select {
				case <-ctx.Done():
					r.log.Warn("computation left on a lost node; the node closes it after its zombie interval", "addr", rn.addr)
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
}

// newSearch returns the search for nodes matching patterns, which adds
// them to the cluster.
func (r *remoteNodes) newSearch(patterns []string) (*discovery.Search, error) {
	search, err := discovery.NewSearch(r.cfg.Discovery, patterns, func(ctx context.Context, addrs []string) {
		for i, err := range r.addAll(ctx, addrs) {
			if err != nil {
				r.log.Warn("discovered node not usable yet", "addr", addrs[i], "err", err)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	search.Have = func() bool { return r.count() > 0 }
	search.Logger = r.log
	return search, nil
}

// waitForNode waits until a node is up, or fails at deadline with what
// search tried and why the nodes it found are not usable.
func (r *remoteNodes) waitForNode(ctx context.Context, deadline time.Time, search *discovery.Search) error {
	up := make(chan struct{}, 1)
	stop := r.s.WatchNodes(func(ev sched.NodeEvent) {
		if ev.Kind == sched.NodeUp {
			select {
			case up <- struct{}{}:
			default:
			}
		}
	})
	defer stop()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for r.count() == 0 {
		select {
		case <-up:
		case <-ctx.Done():
			return fmt.Errorf("drove: looking for nodes: %w", ctx.Err())
		case <-t.C:
			var errs []error
			for _, st := range r.fleet.Members() {
				if st.Err != nil {
					errs = append(errs, st.Err)
				}
			}
			err := fmt.Errorf("%w within %v %s", ErrNoNodeFound, r.cfg.DiscoverTimeout, search.Tried())
			if len(errs) > 0 {
				err = fmt.Errorf("%w; nodes not usable: %w", err, errors.Join(errs...))
			}
			return err
		}
	}
	return nil
}

// discover finds nodes matching the patterns on the LAN and adds them; an
// entry without "*" is an address, added as such. Each node gets
// ConnectTimeout to answer (see addAll).
func (r *remoteNodes) discover(ctx context.Context, patterns ...string) error {
	var pats, addrs []string
	for _, p := range patterns {
		if discovery.IsPattern(p) {
			pats = append(pats, p)
		} else {
			addrs = append(addrs, discovery.NodeAddr(p))
		}
	}
	var errs []error
	for _, err := range r.addAll(ctx, addrs) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(pats) == 0 {
		return errors.Join(errs...)
	}
	search, err := r.newSearch(pats)
	if err == nil {
		err = search.Round(ctx)
	}
	return errors.Join(append(errs, err)...)
}

// AllocateNode lets the named node take jobs again after DeallocateNode.
// It returns an error wrapping ErrNoNode for an unknown node.
func (c *Cluster[In, Out]) AllocateNode(name string) error { return c.s.Allocate(name) }

// DeallocateNode stops giving the named node new jobs; its running jobs go
// on. Use it to take a misbehaving node out of rotation (dispy #155).
func (c *Cluster[In, Out]) DeallocateNode(name string) error { return c.s.Deallocate(name) }

// CloseNode removes the named node from the cluster: its pinned queued jobs
// are cancelled and, with terminate, so are its running ones; otherwise
// they finish first. The node's computation is closed on the node.
func (c *Cluster[In, Out]) CloseNode(ctx context.Context, name string, terminate bool) error {
	return c.s.RemoveNode(ctx, name, terminate)
}

// SetNodeCPUs sets how many jobs of this cluster the named node runs at
// once. For a drove node it cannot exceed what the node granted the
// computation (NodeInfo.CPUs): asking for more is an error. Through a
// drove scheduler (WithScheduler), name is one of the scheduler's nodes
// (Status): the scheduler runs at most cpus of this cluster's jobs there,
// and no more than it uses of the node itself.
func (c *Cluster[In, Out]) SetNodeCPUs(name string, cpus int) error {
	if cpus < 0 {
		return fmt.Errorf("drove: SetNodeCPUs(%q, %d): must not be negative", name, cpus)
	}
	if c.remote != nil && c.remote.cfg.Scheduler {
		return c.remote.setSchedulerCPUs(name, cpus)
	}
	if c.remote != nil {
		if granted, ok := c.remote.granted(name); ok && cpus > granted {
			// The node runs at most that many for the computation: more
			// slots would only queue jobs there as if they were running.
			return fmt.Errorf("drove: SetNodeCPUs(%q, %d): the node granted this cluster %d CPUs", name, cpus, granted)
		}
	}
	return c.s.SetSlots(name, cpus)
}

// granted returns the slots the named node granted the computation, if it
// is a connected drove node.
func (r *remoteNodes) granted(name string) (int, bool) {
	for _, st := range r.fleet.Members() {
		if ex, ok := st.Executor.(*nodeexec.Executor); ok && st.Name == name {
			return ex.Slots(), true
		}
	}
	return 0, false
}

// remoteConfig builds what startRemoteNodes needs from the cluster's
// options. The secret comes from $DROVE_SECRET unless set otherwise.
func (c *Cluster[In, Out]) remoteConfig() remoteConfig {
	return remoteConfig{
		Nodes:   c.cfg.nodes,
		Func:    c.fn.name,
		Setup:   c.cfg.setup,
		Program: c.fn.program,
		Depends: c.cfg.depends,
		Env:     c.cfg.env,
		CPUs:    max(0, c.cfg.cpus),
		Grace:   c.cfg.grace,
		Files:   c.files,
		Logger:  c.log,
		Metrics: c.links,

		Exclusive: c.cfg.exclusive,
	}
}

// isSSHNode reports whether a node is an SSH host ("ssh://[user@]host[:port]"
// or "ssh://alias") that the cluster makes a drove node for the length of a
// session, rather than a drove node daemon's address.
func isSSHNode(n string) bool { return strings.HasPrefix(n, "ssh://") }

// permanentNodeErr reports errors that redialling a node cannot fix: those
// of drove nodes (nodeexec.Permanent), and for SSH hosts a refused host
// key, another platform, no usable cache or an executable that does not
// run there.
func permanentNodeErr(err error) bool {
	return nodeexec.Permanent(err) || sshconn.Permanent(err) ||
		errors.Is(err, hostcache.ErrPlatform) || errors.Is(err, hostcache.ErrNoCache) || errors.Is(err, hostcache.ErrNotExecutable)
}

// startSSH starts this executable serving the node protocol on the SSH
// host addr (see internal/sshnode): probed, checked for its platform,
// installed into the host's cache if absent.
func (r *remoteNodes) startSSH(ctx context.Context, addr string) (*sshnode.Conn, error) {
	target := strings.TrimPrefix(addr, "ssh://")
	if target == "" {
		return nil, fmt.Errorf("drove: node %q: want ssh://[user@]host[:port] or ssh://alias", addr)
	}
	r.exeOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			r.exeErr = fmt.Errorf("drove: finding this executable to start on SSH hosts: %w", err)
			return
		}
		r.exe, r.exeErr = hostcache.NewBlob(exe)
	})
	if r.exeErr != nil {
		return nil, r.exeErr
	}
	sc, err := sshnode.Start(ctx, r.cfg.SSH, target, sshnode.Config{Executable: r.exe, LogLevel: os.Getenv(sshnode.EnvLog), Logger: r.log})
	if err != nil {
		return nil, fmt.Errorf("drove: %s: %w", addr, err)
	}
	return sc, nil
}
