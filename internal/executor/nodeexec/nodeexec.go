// Package nodeexec is the client side of a drove node: a sched.Executor
// that runs one computation's jobs on a remote drove node daemon over its
// API (proto/drove/v1 on connect-go, blobs over plain HTTP).
//
// Dial ships the computation by content hash — the client's own executable
// for Go functions, or the program, plus depends — sending only what the
// node lacks, and refuses a node of another GOOS/GOARCH. Jobs go out in
// batches and queue on the node ahead of its slots (sched.Prefetcher), so a
// worker never waits for a network round trip; results, provisional results,
// stdout/stderr and files sent back stream in on one Results stream, which
// is also the node's heartbeat. A node silent for Config.Misses heartbeat
// intervals, or one that lost the computation (it restarted), is reported
// with NodeDown; events are acknowledged, and a stream that breaks resumes
// where it stopped, so no result is lost or reported twice.
package nodeexec

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/local"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/sched"
)

// Protocol is the node API version this client speaks.
const Protocol = 1

// Reporter receives what runs produce and node failures;
// *sched.Scheduler implements it.
type Reporter interface {
	Started(r *sched.Run, at time.Time)
	Done(r *sched.Run, res sched.Result)
	Provisional(r *sched.Run, output []byte)
	NodeDown(name string, err error)
}

// Errors.
var (
	// ErrPlatform is wrapped by the error for a node whose GOOS/GOARCH
	// differs from this executable's: it cannot run a Go function's
	// executable.
	ErrPlatform = errors.New("drove: node platform differs from the client's")
	// ErrHeartbeat is wrapped by the error a node is reported down with
	// when it missed its heartbeats.
	ErrHeartbeat = errors.New("drove: node missed its heartbeats")
	// ErrGone is wrapped when the node no longer has the computation (it
	// restarted, or closed it as a zombie).
	ErrGone = errors.New("drove: node lost the computation")
	// ErrTooLarge is wrapped by the error of a job whose input is too large
	// for the node's message limit.
	ErrTooLarge = errors.New("drove: job input too large")
	// ErrClosed is reported for runs started after Close.
	ErrClosed = errors.New("drove: node executor closed")
	// ErrFileTooLarge is wrapped by the error for a node that cannot take
	// a file of the computation (its executable, program or a depends)
	// because of its --max-file-size: the node refuses the computation
	// for good.
	ErrFileTooLarge = errors.New("drove: file over the node's --max-file-size")
)

// ConnError is the error for a node that could not be reached, refused
// the client, or was reported down (Reporter.NodeDown): Err says why, and
// wraps ErrHeartbeat or ErrGone for a node that went down.
type ConnError struct {
	Addr string // the node's host:port
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("drove: node %s: %v", e.Addr, e.Err) }

func (e *ConnError) Unwrap() error { return e.Err }

// Config configures an Executor.
type Config struct {
	// Addr is the node's host:port.
	Addr string
	// Secret is the cluster secret; "" sends none.
	Secret string
	// TLS, if set, is the client's TLS configuration (mutual TLS: with a
	// client certificate and the cluster CA as RootCAs).
	TLS *tls.Config
	// ClientID identifies this client to the node; it stays the same
	// across reconnects.
	ClientID string
	// CPUs is how many of the node's CPUs to ask for; 0 means all.
	CPUs int
	// Heartbeat is the interval of heartbeats both ways. 0 lets the node
	// choose (its --ping-interval), which is what Executor.Heartbeat then
	// returns; a node too old to say gets 1s.
	Heartbeat time.Duration
	// Misses is how many heartbeat intervals the node may stay silent
	// before it is reported down; default 5.
	Misses int
	// Prefetch is how many jobs may wait on the node beyond its slots.
	// The default follows the jobs' run time (see Executor.Prefetch).
	Prefetch int
	// Files receives files that jobs send back; nil drops them.
	Files local.FileSink
	// Reattach is for a daemon that keeps the computation while it is
	// away (drove scheduler --state): one that is silent or unreachable
	// is not reported down, its runs are not given up, and the executor
	// keeps trying it, waiting longer after each failure up to
	// ReattachMax, until it answers — with the computation, which it then
	// takes up again where it stopped (results on the Results stream,
	// acknowledged), or without it (ErrGone: reported down). Without
	// Reattach a silent node is reported down after Misses intervals.
	Reattach bool
	// ReattachMax is the longest wait between attempts with Reattach;
	// default 5s.
	ReattachMax time.Duration
	// Machines is for a daemon that runs each job on one of its own
	// nodes (drove scheduler): every run is reported with the node it
	// went to (sched.Run.SetMachine), and the daemon's nodes are asked for
	// at every heartbeat (Executor.Machines, OnMachines).
	Machines bool
	// OnMachines, with Machines, is called with the node's name (as
	// SetName set it) and the daemon's nodes each time they were asked
	// for, from one goroutine; it must not block.
	OnMachines func(node string, ms []*drovev1.Machine)
	// OnSubmit, if set, is called with each batch of jobs before it is
	// sent to the node, from one goroutine; it may block. The daemon that
	// relays a client's jobs (drove scheduler) keeps where each went.
	OnSubmit func(compID string, jobs []*drovev1.Job)
	// BeforeAck, if set, is called before events are acknowledged to the
	// node; it may block. Whatever the Reporter did with the events
	// received so far must be kept when it returns: the node forgets
	// what is acknowledged.
	BeforeAck func()
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Metrics, if set, counts the blob bytes the executor moves and the
	// heartbeats the node misses (a client's or a scheduler's registry).
	Metrics *metrics.Links
	// HTTPClient, if set, carries every request (the API and blobs)
	// instead of connections made to Addr, which then only names the node
	// in errors: a node served over an SSH session (internal/sshnode).
	// Secret and TLS do not apply to it.
	HTTPClient *http.Client
	// Closer, if set, is closed when the executor closes, after the
	// computation is: the SSH session of such a node.
	Closer io.Closer
	// Lost, if set, is closed when the channel to the node has ended for
	// good (the SSH session of such a node): the node is reported down at
	// once, without waiting for missed heartbeats.
	Lost <-chan struct{}
}

// Executor drives one computation on one node. It implements
// sched.Executor and sched.Prefetcher; its methods are safe for concurrent
// use.
type Executor struct {
	cfg    Config
	comp   *Computation
	rep    Reporter
	log    *slog.Logger
	hc     *http.Client
	bulk   *http.Client // blobs: HTTP/1.1, no HTTP/2 flow control on big files
	base   string
	api    drovev1connect.NodeServiceClient
	info   *drovev1.InfoResponse
	compID string
	slots  int
	name   atomic.Pointer[string] // as the scheduler knows the node

	ctx    context.Context // ends at Close or when the node is down
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, received atomic.Int64 // blob and setup bytes not yet in a Result
	totalSent      atomic.Int64
	totalReceived  atomic.Int64
	lastHeard      atomic.Int64 // Unix nanoseconds
	lastSeq        atomic.Uint64
	pulse          atomic.Pointer[drovev1.ResultsResponse] // latest heartbeat, events stripped
	machines       atomic.Pointer[[]*drovev1.Machine]      // Config.Machines: the daemon's nodes, as it last said
	avgRun         atomic.Int64                            // running average of the jobs' run times, ns; 0 before the first

	mu       sync.Mutex
	runs     map[uint64]*run
	byRun    map[*sched.Run]uint64
	nextID   uint64
	pending  []*drovev1.Job
	cancels  []uint64
	recalls  []uint64
	wake     chan struct{}
	down     bool
	downErr  error
	closed   bool
	downCh   chan struct{}
	downOnce sync.Once
}

type run struct {
	r    *sched.Run
	sent int64
}

var (
	_ sched.Executor   = (*Executor)(nil)
	_ sched.Prefetcher = (*Executor)(nil)
)

// Dial connects to the node, ships the computation and opens it there. The
// returned executor is ready for the scheduler (see Name and Slots). ctx
// bounds only the set-up.
func Dial(ctx context.Context, cfg Config, comp *Computation, rep Reporter) (*Executor, error) {
	cfg.Heartbeat = max(cfg.Heartbeat, 0)
	if cfg.Misses <= 0 {
		cfg.Misses = 5
	}
	if cfg.ReattachMax <= 0 {
		cfg.ReattachMax = 5 * time.Second
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "client"
	}
	e := &Executor{
		cfg:    cfg,
		comp:   comp,
		rep:    rep,
		log:    cfg.Logger,
		hc:     cfg.HTTPClient,
		bulk:   cfg.HTTPClient,
		base:   "http://drove-node",
		runs:   map[uint64]*run{},
		byRun:  map[*sched.Run]uint64{},
		wake:   make(chan struct{}, 1),
		downCh: make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.hc == nil {
		e.hc = NewHTTPClient(cfg.Secret, cfg.TLS)
		e.bulk = newBulkClient(cfg.Secret, cfg.TLS)
		e.base = baseURL(cfg.Addr, cfg.TLS)
	}
	e.api = newAPI(e.hc, e.base)
	resp0, err := e.api.Info(ctx, connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		return nil, &ConnError{Addr: cfg.Addr, Err: err}
	}
	info := resp0.Msg
	if info.Protocol != Protocol {
		return nil, &ConnError{Addr: cfg.Addr, Err: fmt.Errorf("node speaks protocol %d, this client %d (upgrade them together)", info.Protocol, Protocol)}
	}
	if goos, goarch := comp.platform(); comp.Func != "" && (info.Goos != goos || info.Goarch != goarch) {
		return nil, &ConnError{Addr: cfg.Addr, Err: fmt.Errorf("%w: node %s is %s/%s, the client's executable is %s/%s (build the client for %s/%s, or use a program)",
			ErrPlatform, info.Name, info.Goos, info.Goarch, goos, goarch, info.Goos, info.Goarch)}
	}
	e.info = info
	e.machines.Store(&info.Machines)
	e.SetName(info.Name)
	resp, err := e.setup(ctx)
	if err != nil {
		return nil, err
	}
	e.compID = resp.ComputationId
	e.slots = int(resp.Slots)
	// The node's answer is the interval both sides use: the one asked
	// for, or the node's own when none was.
	if hb := time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond; hb > 0 {
		e.cfg.Heartbeat = hb
	} else if e.cfg.Heartbeat == 0 {
		e.cfg.Heartbeat = time.Second
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.lastHeard.Store(time.Now().UnixNano())
	e.wg.Add(3)
	go e.sender()
	go e.receiver()
	go e.heartbeat()
	if cfg.Lost != nil {
		e.wg.Go(func() {
			select {
			case <-cfg.Lost:
				e.nodeDown(errors.New("the connection to the node ended"))
			case <-e.ctx.Done():
			}
		})
	}
	return e, nil
}

// ComputationID is the computation's id on the node.
func (e *Executor) ComputationID() string { return e.compID }

// Name is the node's name: as it reports it, or as set by SetName.
func (e *Executor) Name() string { return *e.name.Load() }

// SetName sets the name the executor reports the node under
// (Reporter.NodeDown); call it before adding the node to the scheduler
// under another name than Name.
func (e *Executor) SetName(name string) { e.name.Store(&name) }

// Addr is the node's address.
func (e *Executor) Addr() string { return e.cfg.Addr }

// Slots is how many jobs the node runs at once for this computation.
func (e *Executor) Slots() int { return e.slots }

// Heartbeat is the heartbeat interval agreed with the node (see
// Config.Heartbeat).
func (e *Executor) Heartbeat() time.Duration { return e.cfg.Heartbeat }

// NodeInfo is what the node said about itself when dialled.
func (e *Executor) NodeInfo() *drovev1.InfoResponse { return e.info }

// BootID identifies the node's daemon process.
func (e *Executor) BootID() string { return e.info.BootId }

// Avail returns what the node last said about its load: the jobs it holds
// for all its clients and its free resources (dispy's DispyNodeAvailInfo).
func (e *Executor) Avail() (busy int, avail *drovev1.AvailInfo) {
	if p := e.pulse.Load(); p != nil {
		return int(p.Busy), p.Avail
	}
	return int(e.info.Busy), e.info.Avail
}

// Machines returns the nodes of a daemon that runs its jobs on others
// (Config.Machines), as it last said; nil for a drove node.
func (e *Executor) Machines() []*drovev1.Machine { return *e.machines.Load() }

// SetCPUs bounds how many of the computation's jobs run at once on one of
// the daemon's machines (Config.Machines); a negative cpus removes the
// bound.
func (e *Executor) SetCPUs(ctx context.Context, machine string, cpus int) error {
	_, err := e.api.SetCPUs(ctx, connect.NewRequest(&drovev1.SetCPUsRequest{ComputationId: e.compID, Machine: machine, Cpus: int32(cpus)}))
	if err != nil {
		return &ConnError{Addr: e.cfg.Addr, Err: err}
	}
	return nil
}

// Down is closed once the executor has reported its node down.
func (e *Executor) Down() <-chan struct{} { return e.downCh }

// Bytes returns the bytes sent to and received from the node so far.
func (e *Executor) Bytes() (sent, received int64) {
	return e.totalSent.Load(), e.totalReceived.Load()
}

// Err returns why the node was reported down, or nil.
func (e *Executor) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.downErr
}
