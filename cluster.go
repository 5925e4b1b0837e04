package drove

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Cluster runs jobs of one computation. Create it with NewCluster; its
// methods are safe for concurrent use.
type Cluster[In, Out any] struct {
	fn    *Function[In, Out]
	cfg   config
	s     *sched.Scheduler
	log   *slog.Logger
	onJob func(JobEvent[Out])

	// metricsReg is the cluster's own Prometheus registry (never the
	// global one): its jobs and nodes (internal/metrics.Jobs) and, with
	// drove nodes, the blob bytes shipped and heartbeats missed. The
	// monitor serves it at /metrics.
	metricsReg *prometheus.Registry
	links      *metrics.Links

	nextID  atomic.Int64
	workDir string // removed by Close when we made it
	files   *filesink.Dir
	ssh     *sshconn.Pool // shell clusters' SSH connections
	hosts   *fleet.Fleet  // shell clusters' SSH hosts; nil otherwise
	remote  *remoteNodes  // drove nodes (WithNodes); nil otherwise
	recover *recoverLog   // WithRecoverFile; nil otherwise

	closeOnce sync.Once
	closeErr  error

	// rec keeps the latest jobs for the monitor (WithMonitor), monSrv
	// serves it, monWG waits for the actions it left running.
	rec    *monitor.Recorder
	monSrv *monitor.Server
	monWG  sync.WaitGroup
}

// NewCluster starts a cluster for the computation fn. With no WithNodes
// option it is embedded: fn's jobs run in worker processes on this machine,
// one per CPU, started now — so a function unknown to the workers, a failing
// setup or a missing program is an error here, not on the first job.
func NewCluster[In, Out any](ctx context.Context, fn *Function[In, Out], opts ...Option) (*Cluster[In, Out], error) {
	if fn == nil {
		return nil, errors.New("drove: NewCluster: nil computation")
	}
	c := &Cluster[In, Out]{fn: fn}
	for _, o := range opts {
		o.apply(&c.cfg)
	}
	if c.cfg.monitor != "" {
		c.rec = monitor.NewRecorder(0)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.log = c.cfg.logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.files, err = c.openDestDir(); err != nil {
		return nil, err
	}
	if err := c.makeWorkDir(); err != nil {
		c.files.Close()
		return nil, err
	}
	c.metricsReg = prometheus.NewRegistry()
	jobs := metrics.NewJobs(c.metricsReg)
	c.links = metrics.NewLinks(c.metricsReg)
	c.s = sched.New(sched.Config{
		MaxPending: c.cfg.maxPending,
		Reentrant:  c.cfg.reentrant,
		OnTask:     c.onTaskMonitor(c.taskEvent()),
		OnNode:     c.onNodeMonitor(c.nodeEvent()),
		Logger:     c.log,
		Observer:   jobs,
	})
	jobs.Bind(c.s)
	if err := c.startNodes(ctx); err != nil {
		if c.hosts != nil {
			c.hosts.Close()
		}
		_ = c.s.Close(ctx)
		c.cleanup()
		return nil, err
	}
	if err := c.startMonitor(); err != nil {
		_ = c.Close(ctx)
		return nil, err
	}
	return c, nil
}

func (c *Cluster[In, Out]) validate() error {
	fn := c.fn
	if fn.shell {
		if c.cfg.setup != "" || len(c.cfg.depends) > 0 {
			return errors.New("drove: WithSetup and WithDepends are for functions and programs, not shell commands")
		}
		if c.cfg.exclusive {
			return errors.New("drove: WithExclusive is for functions and programs on a shared scheduler or drove nodes, not shell commands")
		}
	} else if fn.program != "" {
		path, err := programPath(fn.program)
		if err != nil {
			return err
		}
		c.fn = &Function[In, Out]{program: path, encode: fn.encode, decode: fn.decode}
	} else {
		if !registry.Sealed() {
			return ErrNoMain
		}
		f, ok := registry.Lookup(fn.name)
		if !ok || f.Late {
			return fmt.Errorf("%w: %q (call drove.Func in a package-level var or init, not in main)", ErrNotRegistered, fn.name)
		}
	}
	if c.cfg.setup != "" {
		if _, ok := registry.LookupHook(c.cfg.setup); !ok {
			return fmt.Errorf("drove: setup %q is not registered", c.cfg.setup)
		}
		if fn.program != "" {
			return errors.New("drove: WithSetup is for Go functions, not programs")
		}
	}
	if c.cfg.onJob != nil {
		f, ok := c.cfg.onJob.(func(JobEvent[Out]))
		if !ok {
			return fmt.Errorf("drove: OnJobStatus callback %T does not take JobEvent[%s]", c.cfg.onJob, typeName[Out]())
		}
		c.onJob = f
	}
	if c.cfg.scheduler != "" {
		switch {
		case fn.shell:
			return errors.New("drove: WithScheduler is for functions and programs; shell commands run on SSH hosts (WithNodes)")
		case len(c.cfg.nodes) > 0:
			return errors.New("drove: WithScheduler and WithNodes exclude each other: the scheduler has the nodes")
		case discovery.IsPattern(c.cfg.scheduler):
			return fmt.Errorf("drove: WithScheduler(%q): a scheduler is given by address, not found by discovery", c.cfg.scheduler)
		}
		// The scheduler is the cluster's one node: it speaks the nodes'
		// protocol.
		c.cfg.nodes = []string{discovery.HostPort(c.cfg.scheduler, discovery.ClientPort)}
	}
	if c.cfg.recover != "" && (fn.shell || len(c.cfg.nodes) == 0) {
		return errors.New("drove: WithRecoverFile needs drove nodes (WithNodes): the jobs of an embedded cluster or of shell commands end with the client")
	}
	if c.cfg.heartbeat < 0 || c.cfg.misses < 0 {
		return fmt.Errorf("drove: WithHeartbeat(%v, %d): must not be negative", c.cfg.heartbeat, c.cfg.misses)
	}
	if c.cfg.connect < 0 {
		return fmt.Errorf("drove: WithConnectTimeout(%v): must not be negative", c.cfg.connect)
	}
	if c.cfg.discover < 0 {
		return fmt.Errorf("drove: WithDiscoverTimeout(%v): must not be negative", c.cfg.discover)
	}
	if c.cfg.maxPending < 0 {
		return fmt.Errorf("drove: WithMaxPending(%d): must not be negative", c.cfg.maxPending)
	}
	return nil
}

// programPath finds a program as NewCluster runs it: in PATH if the name
// has no slash, made absolute.
func programPath(program string) (string, error) {
	path, err := exec.LookPath(program)
	if err != nil {
		return "", fmt.Errorf("drove: program %s: %w", program, err)
	}
	return filepath.Abs(path)
}

func (c *Cluster[In, Out]) openDestDir() (*filesink.Dir, error) {
	dir := c.cfg.destDir
	if dir == "" {
		dir = "."
	}
	return filesink.Open(dir, c.cfg.maxFile)
}

func (c *Cluster[In, Out]) makeWorkDir() error {
	if c.cfg.workDir != "" {
		dir, err := os.MkdirTemp(c.cfg.workDir, "drove-")
		c.workDir = dir
		return err
	}
	dir, err := os.MkdirTemp("", "drove-")
	if err != nil {
		return fmt.Errorf("drove: work directory: %w", err)
	}
	c.workDir = dir
	return nil
}

func (c *Cluster[In, Out]) cleanup() {
	if c.ssh != nil {
		_ = c.ssh.Close()
	}
	if c.files != nil {
		c.files.Close()
	}
	if c.workDir != "" {
		_ = os.RemoveAll(c.workDir)
	}
}

func (c *Cluster[In, Out]) startNodes(ctx context.Context) error {
	if c.fn.shell {
		return c.startShellNodes(ctx)
	}
	if len(c.cfg.nodes) > 0 {
		rc := c.remoteConfig()
		rc.Secret = c.cfg.secret
		rc.ClientID = c.cfg.clientID
		rc.Discovery.Multicast = c.cfg.multicast
		rc.Heartbeat, rc.Misses = c.cfg.heartbeat, c.cfg.misses
		rc.ConnectTimeout = c.cfg.connect
		rc.DiscoverTimeout = c.cfg.discover
		// A scheduler that is killed or cut off keeps the computation
		// (drove scheduler --state): the client waits for it to answer
		// again rather than giving its jobs up. Its jobs run on its
		// nodes, which the cluster names.
		rc.Scheduler = c.cfg.scheduler != ""
		if slices.ContainsFunc(c.cfg.nodes, isSSHNode) {
			if c.ssh == nil {
				pool, err := sshconn.NewPool(c.sshConfig())
				if err != nil {
					return err
				}
				c.ssh = pool
			}
			rc.SSH = c.ssh
		}
		if c.cfg.tlsCA != "" {
			var err error
			if rc.TLS, err = nodeauth.ClientTLS(c.cfg.tlsCert, c.cfg.tlsKey, c.cfg.tlsCA); err != nil {
				return err
			}
		}
		if c.cfg.recover != "" {
			if slices.ContainsFunc(c.cfg.nodes, isSSHNode) {
				return errors.New("drove: WithRecoverFile with ssh:// nodes: their jobs end with the client's SSH session, so there is nothing to recover")
			}
			if rc.ClientID == "" {
				rc.ClientID = nodeexec.NewClientID("")
			}
			comp, err := recoverComputation(c.fn)
			if err != nil {
				return err
			}
			if c.recover, err = createRecoverLog(c.cfg.recover, rc.ClientID, comp); err != nil {
				return err
			}
			rc.Record = c.recover.add
		}
		r, err := startRemoteNodes(ctx, c.s, rc)
		if err != nil {
			if c.recover != nil {
				_ = c.recover.remove() // no node has the computation
			}
			return err
		}
		c.remote = r
		return nil
	}
	blobs := blob.Store{Dir: filepath.Join(c.workDir, "blobs")}
	deps, err := stageDepends(blobs, c.cfg.depends)
	if err != nil {
		return err
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	slots := local.Slots(c.cfg.cpus, runtime.NumCPU())
	var ex sched.Executor
	if c.fn.program != "" {
		ex = process.New(process.Config{
			Slots:   slots,
			Program: c.fn.program,
			Env:     c.cfg.env,
			Dir:     c.workDir,
			Blobs:   blobs,
			Depends: deps,
			Grace:   c.cfg.grace,
			Logger:  c.log.With("node", name),
		}, c.s)
	} else if ex, err = local.New(ctx, local.Config{
		Slots:       slots,
		Func:        c.fn.name,
		Setup:       c.cfg.setup,
		Fingerprint: registry.Fingerprint(),
		Env:         c.cfg.env,
		Dir:         c.workDir,
		Blobs:       blobs,
		Depends:     deps,
		Files:       c.files,
		Grace:       c.cfg.grace,
		Logger:      c.log.With("node", name),
	}, c.s); err != nil {
		return err
	}
	if err := c.s.AddNode(name, slots, ex); err != nil {
		_ = ex.Close(ctx)
		return err
	}
	return nil
}

func stageDepends(blobs blob.Store, paths []string) ([]local.Depend, error) {
	var deps []local.Depend
	for _, p := range paths {
		sum, mode, err := blobs.PutFile(p)
		if err != nil {
			return nil, fmt.Errorf("drove: depends: %w", err)
		}
		name := filepath.Clean(p)
		if !filepath.IsLocal(name) {
			name = filepath.Base(name)
		}
		deps = append(deps, local.Depend{Name: name, Sum: sum, Mode: mode})
	}
	return deps, nil
}

func (c *Cluster[In, Out]) taskEvent() func(sched.TaskEvent) {
	if c.cfg.onJob == nil {
		return nil
	}
	return func(ev sched.TaskEvent) {
		j := ev.Task.Ref.(*Job[Out])
		je := JobEvent[Out]{Job: j, Status: Status(ev.State), Node: ev.Node}
		switch ev.State {
		case sched.ProvisionalResult:
			out, err := c.fn.decode(ev.Output)
			if err != nil {
				je.Err = fmt.Errorf("drove: decoding provisional result: %w", err)
			}
			je.Result = out
		case sched.Finished, sched.Cancelled, sched.Terminated, sched.Abandoned:
			je.Result, je.Err = j.Result(context.Background())
		}
		c.onJob(je)
	}
}

func (c *Cluster[In, Out]) nodeEvent() func(sched.NodeEvent) {
	if c.cfg.onNode == nil {
		return nil
	}
	return func(ev sched.NodeEvent) {
		ne := NodeEvent{Node: ev.Node, CPUs: ev.Slots, Err: ev.Err}
		switch ev.Kind {
		case sched.NodeUp:
			ne.Status = NodeInitialized
		case sched.NodeDown, sched.NodeUnreachable:
			ne.Status = NodeLost
		case sched.NodeRemoved:
			ne.Status = NodeClosed
		default:
			// NodeGone: a node lost (or unreachable) and given up, reported
			// NodeLost already; the fleet logs it.
			return
		}
		c.cfg.onNode(ne)
	}
}

// Submit queues a job computing in and returns it at once; use Job.Result
// to wait for it. With WithMaxPending it blocks while that many jobs are
// unfinished, until ctx ends. An input that cannot be encoded is an error
// wrapping ErrEncode; after Close, Submit returns ErrClosed.
func (c *Cluster[In, Out]) Submit(ctx context.Context, in In, opts ...JobOption) (*Job[Out], error) {
	var jc jobConfig
	for _, o := range opts {
		o.applyJob(&jc)
	}
	if jc.retries < 0 {
		return nil, fmt.Errorf("drove: Retries(%d): must not be negative", jc.retries)
	}
	if jc.timeout < 0 {
		return nil, fmt.Errorf("drove: Timeout(%v): must not be negative", jc.timeout)
	}
	b, err := c.fn.encode(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	j := &Job[Out]{decode: c.fn.decode}
	if jc.hasID {
		j.t.ID = jc.id
	} else {
		j.t.ID = c.nextID.Add(1)
	}
	j.t.Priority = jc.priority
	j.t.Timeout = jc.timeout
	j.t.Retries = jc.retries
	j.t.Node = jc.node
	j.t.Input = b
	j.t.Ref = j
	if err := c.s.Submit(ctx, &j.t); err != nil {
		return nil, err
	}
	return j, nil
}

// Wait blocks until every submitted job has ended, or ctx ends.
func (c *Cluster[In, Out]) Wait(ctx context.Context) error { return c.s.Wait(ctx) }

// Cancel cancels j: a queued job ends Cancelled at once; a running job's
// context is cancelled (a program gets SIGINT), then its process gets
// SIGTERM, then SIGKILL, each after the grace period (WithCancelGrace). A
// job that returns a result after its context is cancelled ends Finished.
// Cancelling an ended job does nothing.
func (c *Cluster[In, Out]) Cancel(j *Job[Out]) error {
	if j == nil {
		return errors.New("drove: Cancel: nil job")
	}
	c.s.Cancel(&j.t)
	return nil
}

// Close stops taking jobs, waits for the submitted ones to end, and stops
// the workers (running their cleanup). If ctx ends first, the remaining
// jobs are cancelled and stopped, and Close returns ctx's error once they
// have ended. The computation is closed on every drove node the cluster
// used, including nodes it lost: Close tries those for up to 5s more, so
// that a node that was only frozen or cut off stops the cluster's workers
// when it answers. Close is idempotent.
func (c *Cluster[In, Out]) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		if c.remote != nil {
			c.remote.close()
		}
		if c.hosts != nil {
			c.hosts.Close()
		}
		c.closeErr = c.s.Close(ctx)
		c.monWG.Wait()
		if c.monSrv != nil {
			c.closeErr = errors.Join(c.closeErr, c.monSrv.Close())
		}
		if c.remote != nil {
			c.remote.closeLost(ctx)
		}
		if c.recover != nil {
			c.closeErr = errors.Join(c.closeErr, c.recover.remove())
		}
		c.cleanup()
	})
	return c.closeErr
}

// Stats returns a snapshot of the cluster's nodes and jobs.
// A node (or SSH host) that could not be reached and never joined has a
// row of its own, named by its address and marked Lost.
func (c *Cluster[In, Out]) Stats() Stats {
	st := statsOf(c.s.Stats())
	for _, f := range []*fleet.Fleet{c.hosts, c.remoteFleet()} {
		st.Nodes = append(st.Nodes, neverJoined(f)...)
	}
	return st
}

// remoteFleet is the fleet of the cluster's drove nodes, or nil.
func (c *Cluster[In, Out]) remoteFleet() *fleet.Fleet {
	if c.remote == nil {
		return nil
	}
	return c.remote.fleet
}

// NodeJobs returns the jobs running on the named node.
func (c *Cluster[In, Out]) NodeJobs(node string) []*Job[Out] {
	ts := c.s.NodeTasks(node)
	js := make([]*Job[Out], 0, len(ts))
	for _, t := range ts {
		js = append(js, t.Ref.(*Job[Out]))
	}
	return js
}

// DiscoverNodes adds drove nodes to the cluster: addresses ("host[:port]")
// are dialled, "*" and patterns such as "192.168.1.*" are looked for by UDP
// broadcast on the LAN. It needs a cluster of drove nodes (WithNodes).
func (c *Cluster[In, Out]) DiscoverNodes(ctx context.Context, nodes ...string) error {
	if c.remote == nil {
		return errors.New("drove: DiscoverNodes needs a cluster of drove nodes (WithNodes)")
	}
	return c.remote.discover(ctx, nodes...)
}

// ClusterStatus is what Cluster.Status reports, as dispy's
// cluster.status(): the nodes and the jobs.
type ClusterStatus struct {
	Nodes   []NodeInfo
	Pending int // jobs waiting for a slot
	Running int
}

// Status returns the cluster's nodes and jobs. For drove nodes each entry
// carries what the node last reported of its free CPU, memory, disk and
// swap; for the embedded cluster and SSH hosts, the slots and busy counts.
func (c *Cluster[In, Out]) Status() ClusterStatus {
	st := c.s.Stats()
	cs := ClusterStatus{Pending: st.Pending, Running: st.Running}
	if c.remote != nil {
		cs.Nodes = c.remote.status()
		return cs
	}
	for _, n := range st.Nodes {
		cs.Nodes = append(cs.Nodes, NodeInfo{Name: n.Name, Up: !n.Down, CPUs: n.Slots, Busy: n.Busy})
	}
	return cs
}
