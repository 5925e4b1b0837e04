package drove

import (
	"log/slog"
	"time"
)

// Option configures a cluster in NewCluster.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	nodes      []string
	scheduler  string
	cpus       int
	depends    []string
	setup      string
	env        []string
	reentrant  bool
	maxPending int
	onJob      any
	onNode     func(NodeEvent)
	destDir    string
	workDir    string
	grace      time.Duration
	logger     *slog.Logger
	maxFile    int64
	ssh        SSHConfig
	secret     string
	tlsCert    string
	tlsKey     string
	tlsCA      string
	clientID   string
	recover    string
	multicast  bool
	heartbeat  time.Duration
	misses     int
	connect    time.Duration
	discover   time.Duration
	exclusive  bool
	monitor    string
	noAgent    bool
}

// WithNodes lists where jobs run. With no nodes (the default) the cluster is
// embedded: worker processes on this machine, one per CPU. For functions and
// programs, nodes are drove node daemons: "host" or "host:port" (port 9701
// by default) across subnets, "*" for every node that answers a UDP
// broadcast on the LAN, or a pattern such as "192.168.1.*" for those of
// them that match. Broadcasts go to port 9701 unless the pattern names
// another ("*:29701"), as nodes hear them on the port they serve on; a
// node that announces itself as it starts joins a pattern without a port
// whatever its port. While the cluster has no node, discovery pings again
// every 2s and, after 3s, logs what it tried (see WithDiscoverTimeout to
// fail instead); or SSH hosts, "ssh://[user@]host[:port]" or
// "ssh://alias", where the cluster starts its own executable over SSH as a
// drove node for as long as it is open (see WithSSH). For Shell, nodes
// are "ssh://[user@]host[:port]", "ssh://alias" or ":" for this machine.
func WithNodes(nodes ...string) Option {
	return optionFunc(func(c *config) { c.nodes = append(c.nodes, nodes...) })
}

// WithoutAgent makes a Shell cluster run each command on an SSH host in an
// SSH session of its own (as `ssh host command` does) instead of through
// the agent it otherwise starts once per host: this program's own
// executable, installed in the host's cache and started over one session
// (drove.Main serves it), which runs every command the same way without a
// new session each. Hosts that cannot run the agent (another platform, no
// writable cache, a noexec one) get a session per command anyway, with a
// warning. It is drove run's and drove exec's --no-agent.
func WithoutAgent() Option {
	return optionFunc(func(c *config) { c.noAgent = true })
}

// WithScheduler runs the cluster's jobs through a shared scheduler (drove
// scheduler, dispy's dispyscheduler) at "host" or "host:port" (port 9700
// by default) instead of on nodes of its own: the scheduler shares its
// drove nodes between all the clients that use it. It is for functions and
// programs, and takes the place of WithNodes; the secret, TLS and
// heartbeat options then apply to the scheduler.
func WithScheduler(addr string) Option {
	return optionFunc(func(c *config) { c.scheduler = addr })
}

// WithExclusive makes the cluster's computation run alone where
// computations share machines (dispy's SharedJobCluster(exclusive=True)):
// on a shared scheduler (WithScheduler) or on drove nodes other clients use
// too (WithNodes), its jobs start only when no computation opened before it
// has jobs left, and while it has jobs, computations opened after it get no
// CPU. It is for a computation that needs the machines to itself: one that
// measures time, or uses all of a machine's memory. An embedded cluster runs
// alone anyway. The default is to share the machines by the scheduler's or
// node's --policy.
func WithExclusive() Option {
	return optionFunc(func(c *config) { c.exclusive = true })
}

// WithSecret sets the cluster secret that requests to drove nodes are
// signed with (drove node --secret); the secret itself is never sent. The
// default is the environment variable DROVE_SECRET.
func WithSecret(secret string) Option {
	return optionFunc(func(c *config) { c.secret = secret })
}

// WithHeartbeat sets how often a cluster and each of its drove nodes check
// on each other, and after how many silent intervals a node is declared
// lost (its running jobs then rerun elsewhere or end Abandoned). By
// default each node's drove node --ping-interval applies (2s unless the
// node sets another), and a node is lost after 5 silent intervals.
func WithHeartbeat(interval time.Duration, misses int) Option {
	return optionFunc(func(c *config) { c.heartbeat, c.misses = interval, misses })
}

// WithConnectTimeout bounds how long NewCluster (and DiscoverNodes) wait
// for each drove node to answer and take the computation. A node that has
// not answered by then does not hold the cluster up: jobs start on the
// nodes that answered, and the late node joins when it answers
// (OnNodeStatus reports it as NodeInitialized); NewCluster fails only if
// no node answered. For Shell on SSH hosts it bounds connecting and
// logging in to each host, unless ssh_config sets ConnectTimeout. The
// default is 10s.
func WithConnectTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.connect = d })
}

// WithDiscoverTimeout makes NewCluster wait up to d for a first drove
// node when WithNodes has patterns ("*", "192.168.1.*", "*:29701"), and
// fail with an error wrapping ErrNoNodeFound, saying what it tried, if no
// node joined by then. The default, 0, returns at once: jobs wait until
// discovery finds a node.
func WithDiscoverTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.discover = d })
}

// WithMulticast makes node discovery ("*" and patterns in WithNodes) use
// the IPv4 multicast group 239.255.61.59, as nodes started with drove node
// --udp-multicast do, instead of broadcast. The default is broadcast.
func WithMulticast(on bool) Option {
	return optionFunc(func(c *config) { c.multicast = on })
}

// WithTLS talks to drove nodes over mutual TLS: nodes must present a
// certificate signed by the cluster CA in caFile, and the cluster presents
// certFile and keyFile (see drove cert). The default is no TLS.
func WithTLS(certFile, keyFile, caFile string) Option {
	return optionFunc(func(c *config) { c.tlsCert, c.tlsKey, c.tlsCA = certFile, keyFile, caFile })
}

// WithCPUs sets how many CPUs of this machine an embedded cluster uses: 0
// (the default) means all, a negative n leaves that many free (at least one
// is used). For Shell on SSH hosts, a positive n is the slot count of each
// host (default: the host's CPU count). With drove nodes, a positive n is
// how many CPUs of each node the computation uses; through a scheduler
// (WithScheduler), it runs at most n jobs per node up when the cluster
// starts, in all.
func WithCPUs(n int) Option {
	return optionFunc(func(c *config) { c.cpus = n })
}

// WithDepends stages files into every job's working directory. A relative
// path keeps its place below the working directory (if it does not climb
// out with ".."); other files land under their base name. Files are
// content-addressed and copied once; they are staged read-only unless
// executable. The default is none.
func WithDepends(paths ...string) Option {
	return optionFunc(func(c *config) { c.depends = append(c.depends, paths...) })
}

// WithSetup runs s once in every worker before its jobs, and its cleanup
// when the worker stops. The default is none.
func WithSetup[S any](s *Setup[S]) Option {
	return optionFunc(func(c *config) { c.setup = s.setupName() })
}

// WithEnv adds "KEY=value" variables to the environment of workers and
// programs. The default adds none to the client's environment.
func WithEnv(kv ...string) Option {
	return optionFunc(func(c *config) { c.env = append(c.env, kv...) })
}

// WithReentrant says jobs may run again from the start: a job whose node
// fails is resubmitted elsewhere instead of ending Abandoned. The default is
// false, as in dispy.
func WithReentrant(on bool) Option {
	return optionFunc(func(c *config) { c.reentrant = on })
}

// WithMaxPending bounds the unfinished jobs: Submit blocks while n jobs are
// queued or running, so a producer never holds more than n jobs' inputs in
// memory. 0 (the default) means no bound.
func WithMaxPending(n int) Option {
	return optionFunc(func(c *config) { c.maxPending = n })
}

// OnJobStatus calls fn on every status change of every job after Created —
// Running, each ProvisionalResult, and the final status — in order, on one
// goroutine of the cluster's. A slow fn delays later callbacks but not
// scheduling. Out must be the cluster's result type, or NewCluster fails.
func OnJobStatus[Out any](fn func(JobEvent[Out])) Option {
	return optionFunc(func(c *config) { c.onJob = fn })
}

// OnNodeStatus calls fn when a node joins, fails or is closed, on the same
// goroutine as the job callbacks. A node that cannot be reached when it is
// first dialled is reported NodeLost too (with why); one dialled again
// after it was lost is reported NodeInitialized when it is back.
func OnNodeStatus(fn func(NodeEvent)) Option {
	return optionFunc(func(c *config) { c.onNode = fn })
}

// WithDestDir sets where files sent back by jobs (SendFile) are written. The
// default is the current directory.
func WithDestDir(dir string) Option {
	return optionFunc(func(c *config) { c.destDir = dir })
}

// WithMaxFileSize bounds a file a job may send back; 0 (the default) means
// no bound.
func WithMaxFileSize(n int64) Option {
	return optionFunc(func(c *config) { c.maxFile = n })
}

// WithWorkDir sets the directory under which an embedded cluster makes its
// job directories. The default is a new directory under os.TempDir, removed
// by Close.
func WithWorkDir(dir string) Option {
	return optionFunc(func(c *config) { c.workDir = dir })
}

// WithCancelGrace sets how long each step of stopping a running job waits
// before the next: the job's context is cancelled (a program or shell
// command gets SIGINT), then SIGTERM, then SIGKILL. The default is 2s, the
// same for every kind of job, local or on SSH hosts.
func WithCancelGrace(d time.Duration) Option {
	return optionFunc(func(c *config) { c.grace = d })
}

// WithLogger sets the cluster's logger. The default discards logs.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// JobOption configures one job in Submit.
type JobOption interface {
	applyJob(*jobConfig)
}

type jobOptionFunc func(*jobConfig)

func (f jobOptionFunc) applyJob(c *jobConfig) { f(c) }

type jobConfig struct {
	id       int64
	hasID    bool
	timeout  time.Duration
	retries  int
	priority int
	node     string
}

// JobID sets the job's ID. By default jobs are numbered 1, 2, 3… in submit
// order.
func JobID(id int64) JobOption {
	return jobOptionFunc(func(c *jobConfig) { c.id, c.hasID = id, true })
}

// Timeout stops the job if it runs longer than d, as Cancel would; it then
// ends Terminated with ErrTimeout (or is retried). 0 (the default) means no
// limit.
func Timeout(d time.Duration) JobOption {
	return jobOptionFunc(func(c *jobConfig) { c.timeout = d })
}

// Retries runs the job up to n more times if it fails (an error, a panic,
// a crash, a timeout) or its node is lost. A retry runs on another node than
// the one it failed on, waiting for one to have a free slot (other jobs go
// ahead meanwhile); it goes back to the same node only when no other node
// is usable. The default is 0. A program's non-zero exit is a result, not a
// failure.
func Retries(n int) JobOption {
	return jobOptionFunc(func(c *jobConfig) { c.retries = n })
}

// Priority orders waiting jobs: higher first, equal priorities in submit
// order. The default is 0; negative values are allowed.
func Priority(p int) JobOption {
	return jobOptionFunc(func(c *jobConfig) { c.priority = p })
}

// OnNode pins the job to the named node (see Stats for node names). A
// pinned job is never moved to another node.
func OnNode(name string) JobOption {
	return jobOptionFunc(func(c *jobConfig) { c.node = name })
}
