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
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/local"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/nodeproto"
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
)

// File is a local file shipped to nodes as a blob.
type File struct {
	Path string
	Sum  string // hex SHA-256 of the contents
	Mode os.FileMode
	Size int64
}

// HashFile returns the File for path.
func HashFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("drove: %s is not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("drove: hashing %s: %w", path, err)
	}
	return &File{Path: path, Sum: hex.EncodeToString(h.Sum(nil)), Mode: fi.Mode().Perm(), Size: n}, nil
}

// Depend is a file staged into every job directory on the node.
type Depend struct {
	Name string // relative to the job directory
	File *File
}

// Computation is what runs on the nodes; build it once and share it
// between the executors of all nodes, so files are hashed once.
type Computation struct {
	Func        string // registered function; "" for a program
	Setup       string
	Fingerprint string
	Executable  *File // the client's executable, for Func
	Program     *File
	ProgramName string
	Depends     []Depend
	Env         []string
	Grace       time.Duration
}

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
	// Prefetch is how many jobs may wait on the node beyond its slots;
	// default twice the slots plus 16.
	Prefetch int
	// Files receives files that jobs send back; nil drops them.
	Files local.FileSink
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
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

// NewHTTPClient returns the HTTP client for talking to nodes: HTTP/2 (over
// TLS, or cleartext with prior knowledge), requests signed with secret if
// it is not empty.
func NewHTTPClient(secret string, tlsCfg *tls.Config) *http.Client {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone() // the transport sets its ALPN protocols in it
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	if tlsCfg != nil {
		p.SetHTTP2(true)
		p.SetHTTP1(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &p
	var rt http.RoundTripper = tr
	if secret != "" {
		rt = &nodeauth.Transport{Secret: secret, Base: tr}
	}
	return &http.Client{Transport: rt}
}

// newBulkClient returns the client for blob transfers: HTTP/1.1, one TCP
// connection per transfer, whose throughput is not bounded by HTTP/2's
// per-stream flow-control window.
func newBulkClient(secret string, tlsCfg *tls.Config) *http.Client {
	if tlsCfg != nil {
		// Offer only HTTP/1.1 in ALPN, or the node picks h2.
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	tr := &http.Transport{
		DialContext:     (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig: tlsCfg,
		WriteBufferSize: 256 << 10,
		ReadBufferSize:  256 << 10,
		// Below the node's --idle-timeout (2 min): the client drops an
		// idle connection first, so an upload never starts on one the
		// node is closing (a PUT is not retried on a stale connection).
		IdleConnTimeout: 90 * time.Second,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	tr.Protocols = &p
	var rt http.RoundTripper = tr
	if secret != "" {
		rt = &nodeauth.Transport{Secret: secret, Base: tr}
	}
	return &http.Client{Transport: rt}
}

func baseURL(addr string, tlsCfg *tls.Config) string {
	if tlsCfg != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// Info asks the node at addr to describe itself.
func Info(ctx context.Context, hc *http.Client, addr string, tlsCfg *tls.Config) (*drovev1.InfoResponse, error) {
	api := newAPI(hc, baseURL(addr, tlsCfg))
	resp, err := api.Info(ctx, connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		return nil, &ConnError{Addr: addr, Err: err}
	}
	return resp.Msg, nil
}

// newAPI returns the API client. It does not ask for compressed answers:
// on a LAN, gzip costs more CPU than it saves time (it was the largest
// cost of a no-op job).
func newAPI(hc *http.Client, base string) drovev1connect.NodeServiceClient {
	return drovev1connect.NewNodeServiceClient(hc, base, connect.WithAcceptCompression("gzip", nil, nil))
}

// ConnError is the error for a node that could not be reached or refused
// the client.
type ConnError struct {
	Addr string
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("drove: node %s: %v", e.Addr, e.Err) }
func (e *ConnError) Unwrap() error { return e.Err }

// Dial connects to the node, ships the computation and opens it there. The
// returned executor is ready for the scheduler (see Name and Slots). ctx
// bounds only the set-up.
func Dial(ctx context.Context, cfg Config, comp *Computation, rep Reporter) (*Executor, error) {
	cfg.Heartbeat = max(cfg.Heartbeat, 0)
	if cfg.Misses <= 0 {
		cfg.Misses = 5
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "client"
	}
	e := &Executor{
		cfg:    cfg,
		comp:   comp,
		rep:    rep,
		log:    cfg.Logger,
		hc:     NewHTTPClient(cfg.Secret, cfg.TLS),
		bulk:   newBulkClient(cfg.Secret, cfg.TLS),
		base:   baseURL(cfg.Addr, cfg.TLS),
		runs:   map[uint64]*run{},
		byRun:  map[*sched.Run]uint64{},
		wake:   make(chan struct{}, 1),
		downCh: make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.api = newAPI(e.hc, e.base)
	info, err := Info(ctx, e.hc, cfg.Addr, cfg.TLS)
	if err != nil {
		return nil, err
	}
	if info.Protocol != Protocol {
		return nil, &ConnError{Addr: cfg.Addr, Err: fmt.Errorf("node speaks protocol %d, this client %d (upgrade them together)", info.Protocol, Protocol)}
	}
	if comp.Func != "" && (info.Goos != runtime.GOOS || info.Goarch != runtime.GOARCH) {
		return nil, &ConnError{Addr: cfg.Addr, Err: fmt.Errorf("%w: node %s is %s/%s, this executable is %s/%s (build the client for %s/%s, or use a program)",
			ErrPlatform, info.Name, info.Goos, info.Goarch, runtime.GOOS, runtime.GOARCH, info.Goos, info.Goarch)}
	}
	e.info = info
	e.SetName(info.Name)
	req := &drovev1.SetupRequest{
		ClientId:            cfg.ClientID,
		FuncName:            comp.Func,
		Setup:               comp.Setup,
		Fingerprint:         comp.Fingerprint,
		Goos:                runtime.GOOS,
		Goarch:              runtime.GOARCH,
		ProgramName:         comp.ProgramName,
		Env:                 comp.Env,
		Cpus:                int32(max(0, cfg.CPUs)),
		HeartbeatIntervalMs: uint32(cfg.Heartbeat / time.Millisecond),
		GraceMs:             uint64(comp.Grace / time.Millisecond),
		FileAcks:            true,
	}
	var files []*File
	if comp.Func != "" {
		if comp.Executable == nil {
			return nil, errors.New("drove: a function computation needs the executable")
		}
		files = append(files, comp.Executable)
		req.Executable = blobProto(comp.Executable)
	} else {
		if comp.Program == nil {
			return nil, errors.New("drove: a computation needs a function or a program")
		}
		files = append(files, comp.Program)
		req.Program = blobProto(comp.Program)
	}
	for _, d := range comp.Depends {
		files = append(files, d.File)
		req.Depends = append(req.Depends, &drovev1.Depend{Name: d.Name, Blob: blobProto(d.File)})
	}
	for _, f := range files {
		if err := e.upload(ctx, f); err != nil {
			return nil, &ConnError{Addr: cfg.Addr, Err: err}
		}
	}
	resp, err := e.api.Setup(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, &ConnError{Addr: cfg.Addr, Err: err}
	}
	e.compID = resp.Msg.ComputationId
	e.slots = int(resp.Msg.Slots)
	// The node's answer is the interval both sides use: the one asked
	// for, or the node's own when none was.
	if hb := time.Duration(resp.Msg.HeartbeatIntervalMs) * time.Millisecond; hb > 0 {
		e.cfg.Heartbeat = hb
	} else if e.cfg.Heartbeat == 0 {
		e.cfg.Heartbeat = time.Second
	}
	if e.cfg.Prefetch <= 0 {
		e.cfg.Prefetch = 2*e.slots + 16
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.lastHeard.Store(time.Now().UnixNano())
	e.wg.Add(3)
	go e.sender()
	go e.receiver()
	go e.heartbeat()
	return e, nil
}

func blobProto(f *File) *drovev1.Blob {
	return &drovev1.Blob{Sum: f.Sum, Mode: uint32(f.Mode), Size: uint64(f.Size)}
}

// upload sends f unless the node has it already.
func (e *Executor) upload(ctx context.Context, f *File) error {
	url := e.base + "/blobs/" + f.Sum
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("checking blob %s: %s", f.Path, resp.Status)
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, url, fh)
	if err != nil {
		return err
	}
	req.ContentLength = f.Size
	// Sent again if the node restarted since the signing client learnt its
	// id (nodeauth.Transport).
	req.GetBody = func() (io.ReadCloser, error) { return os.Open(f.Path) }
	// A blob is named by its hash: the signature covers the file without
	// reading it twice, and the node checks the contents against the name.
	req.Header.Set(nodeauth.BodyHeader, f.Sum)
	resp, err = e.bulk.Do(req)
	if err != nil {
		return fmt.Errorf("sending %s: %w", f.Path, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sending %s: %s: %s", f.Path, resp.Status, msg)
	}
	e.sent.Add(f.Size)
	e.totalSent.Add(f.Size)
	return nil
}

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

// Down is closed once the executor has reported its node down.
func (e *Executor) Down() <-chan struct{} { return e.downCh }

// Bytes returns the bytes sent to and received from the node so far.
func (e *Executor) Bytes() (sent, received int64) {
	return e.totalSent.Load(), e.totalReceived.Load()
}

// Prefetch implements sched.Prefetcher.
func (e *Executor) Prefetch() int { return e.cfg.Prefetch }

// Start implements sched.Executor.
func (e *Executor) Start(r *sched.Run) {
	e.mu.Lock()
	if e.closed || e.down {
		e.mu.Unlock()
		go e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s", ErrClosed, e.cfg.Addr)})
		return
	}
	if r.Cause() != nil {
		e.mu.Unlock()
		go e.rep.Done(r, sched.Result{Outcome: sched.Killed})
		return
	}
	e.nextID++
	id := e.nextID
	e.runs[id] = &run{r: r, sent: int64(len(r.Task.Input))}
	e.byRun[r] = id
	e.pending = append(e.pending, &drovev1.Job{RunId: id, Input: r.Task.Input, JobId: r.Task.ID})
	e.mu.Unlock()
	e.poke()
}

func (e *Executor) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Cancel implements sched.Executor.
func (e *Executor) Cancel(r *sched.Run) { e.stop(r, false) }

// Recall implements sched.Prefetcher.
func (e *Executor) Recall(r *sched.Run) { e.stop(r, true) }

func (e *Executor) stop(r *sched.Run, recall bool) {
	e.mu.Lock()
	id, ok := e.byRun[r]
	if !ok {
		e.mu.Unlock()
		return
	}
	for i, j := range e.pending {
		if j.RunId == id {
			// Not sent yet: it ends here.
			e.pending = append(e.pending[:i], e.pending[i+1:]...)
			delete(e.runs, id)
			delete(e.byRun, r)
			e.mu.Unlock()
			out := sched.Killed
			if recall {
				out = sched.NotStarted
			}
			e.rep.Done(r, sched.Result{Outcome: out})
			return
		}
	}
	if recall {
		e.recalls = append(e.recalls, id)
		e.mu.Unlock()
		e.poke()
		return
	}
	e.cancels = append(e.cancels, id)
	e.mu.Unlock()
	e.poke()
}

// sender sends queued jobs and cancellations in batches, in order: a
// batch that failed is sent again (the node drops run ids it has seen).
func (e *Executor) sender() {
	defer e.wg.Done()
	const maxJobs = 4096
	// Batches stay well under the node's message limit.
	maxBytes := 16 << 20
	if m := int(e.info.MaxMessage); m > 0 {
		maxBytes = min(maxBytes, m/2)
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.wake:
		}
		for {
			e.mu.Lock()
			var jobs []*drovev1.Job
			var tooBig []*run
			size := 0
			for len(e.pending) > 0 && len(jobs) < maxJobs {
				j := e.pending[0]
				if len(j.Input) > maxBytes {
					// It can never be sent: fail it rather than retry.
					if r := e.runs[j.RunId]; r != nil {
						delete(e.runs, j.RunId)
						delete(e.byRun, r.r)
						tooBig = append(tooBig, r)
					}
					e.pending = e.pending[1:]
					continue
				}
				if len(jobs) > 0 && size+len(j.Input) > maxBytes {
					break
				}
				size += len(j.Input)
				jobs = append(jobs, j)
				e.pending = e.pending[1:]
			}
			if len(e.pending) == 0 {
				e.pending = nil
			}
			cancels, recalls := e.cancels, e.recalls
			e.cancels, e.recalls = nil, nil
			e.mu.Unlock()
			for _, r := range tooBig {
				e.rep.Done(r.r, sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("%w: input of %d bytes over the limit of %d for node %s", ErrTooLarge, len(r.r.Task.Input), maxBytes, e.Name())})
			}
			if len(jobs) == 0 && len(cancels) == 0 && len(recalls) == 0 {
				break
			}
			if len(jobs) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Submit(ctx, connect.NewRequest(&drovev1.SubmitRequest{ComputationId: e.compID, Jobs: jobs}))
				return err
			}) {
				return
			}
			if len(cancels) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Cancel(ctx, connect.NewRequest(&drovev1.CancelRequest{ComputationId: e.compID, RunIds: cancels}))
				return err
			}) {
				return
			}
			if len(recalls) > 0 && !e.retry(func(ctx context.Context) error {
				_, err := e.api.Cancel(ctx, connect.NewRequest(&drovev1.CancelRequest{ComputationId: e.compID, RunIds: recalls, Recall: true}))
				return err
			}) {
				return
			}
		}
	}
}

// retry calls f until it succeeds or the executor stops; it reports false
// in the latter case.
func (e *Executor) retry(f func(ctx context.Context) error) bool {
	for {
		err := f(e.ctx)
		if err == nil {
			return true
		}
		if e.ctx.Err() != nil {
			return false
		}
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return false
		}
		e.log.Debug("node request failed; retrying", "node", e.Name(), "err", err)
		select {
		case <-e.ctx.Done():
			return false
		case <-time.After(e.cfg.Heartbeat / 2):
		}
	}
}

// receiver reads the Results stream, reconnecting when it breaks.
func (e *Executor) receiver() {
	defer e.wg.Done()
	for e.ctx.Err() == nil {
		err := e.stream()
		if e.ctx.Err() != nil {
			return
		}
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return
		}
		e.log.Debug("results stream broke; reconnecting", "node", e.Name(), "err", err)
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(e.cfg.Heartbeat / 2):
		}
	}
}

func (e *Executor) stream() error {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	st, err := e.api.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: e.compID, Ack: e.lastSeq.Load()}))
	if err != nil {
		return err
	}
	defer st.Close()
	for st.Receive() {
		e.lastHeard.Store(time.Now().UnixNano())
		e.pulse.Store(&drovev1.ResultsResponse{Busy: st.Msg().Busy, Avail: st.Msg().Avail})
		for _, ev := range st.Msg().Events {
			if ev.Seq <= e.lastSeq.Load() {
				continue // sent again after a reconnect
			}
			e.handle(ev)
			e.lastSeq.Store(ev.Seq)
		}
	}
	if err := st.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

func (e *Executor) lookup(id uint64) *run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id]
}

func (e *Executor) handle(ev *drovev1.Event) {
	switch k := ev.Kind.(type) {
	case *drovev1.Event_StartedUnixNano:
		if r := e.lookup(ev.RunId); r != nil {
			e.rep.Started(r.r, time.Unix(0, k.StartedUnixNano))
		}
	case *drovev1.Event_Provisional:
		if r := e.lookup(ev.RunId); r != nil {
			e.received.Add(int64(len(k.Provisional)))
			e.totalReceived.Add(int64(len(k.Provisional)))
			e.rep.Provisional(r.r, k.Provisional)
		}
	case *drovev1.Event_File:
		// The job's SendFile waits for the answer: a refused file is
		// its error, not a silent loss.
		var msg string
		if err := e.fetchFile(k.File); err != nil {
			e.log.Warn("file sent back by a job not received", "node", e.Name(), "file", k.File.GetName(), "err", err)
			msg = err.Error()
		}
		e.retry(func(ctx context.Context) error {
			_, err := e.api.FileDone(ctx, connect.NewRequest(&drovev1.FileDoneRequest{ComputationId: e.compID, Seq: ev.Seq, Error: msg}))
			return err
		})
	case *drovev1.Event_Result:
		e.mu.Lock()
		r := e.runs[ev.RunId]
		if r != nil {
			delete(e.runs, ev.RunId)
			delete(e.byRun, r.r)
		}
		e.mu.Unlock()
		if r == nil {
			return
		}
		res := nodeproto.ResultFromProto(k.Result)
		rcvd := int64(len(res.Output) + len(res.Stdout) + len(res.Stderr))
		e.totalSent.Add(r.sent)
		e.totalReceived.Add(rcvd)
		res.Sent = r.sent + e.sent.Swap(0)
		res.Received = rcvd + e.received.Swap(0)
		e.rep.Done(r.r, res)
	}
}

// fetchFile gets a file a job sent back and writes it to the file sink.
func (e *Executor) fetchFile(f *drovev1.File) error {
	if e.cfg.Files == nil || f.Blob == nil {
		return nil
	}
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.base+"/blobs/"+f.Blob.Sum, nil)
	if err != nil {
		return err
	}
	resp, err := e.bulk.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching: %s", resp.Status)
	}
	mode := os.FileMode(f.Blob.Mode).Perm()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, rerr := io.ReadFull(resp.Body, buf)
		last := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !last {
			return rerr
		}
		if err := e.cfg.Files.WriteChunk(f.Name, mode, off, buf[:n], last); err != nil {
			return err
		}
		off += int64(n)
		e.received.Add(int64(n))
		e.totalReceived.Add(int64(n))
		if last {
			return nil
		}
	}
}

// heartbeat acknowledges events and watches the node's heartbeats.
func (e *Executor) heartbeat() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		silent := time.Since(time.Unix(0, e.lastHeard.Load()))
		if silent > time.Duration(e.cfg.Misses)*e.cfg.Heartbeat {
			e.nodeDown(fmt.Errorf("%w: silent for %v (%d intervals of %v)", ErrHeartbeat, silent.Round(time.Millisecond), e.cfg.Misses, e.cfg.Heartbeat))
			return
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Heartbeat)
		_, err := e.api.Heartbeat(ctx, connect.NewRequest(&drovev1.HeartbeatRequest{ComputationId: e.compID, Ack: e.lastSeq.Load()}))
		cancel()
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return
		}
	}
}

// nodeDown reports the node failed, once, and stops talking to it. The
// scheduler ends or requeues its runs; late reports about them are dropped.
func (e *Executor) nodeDown(err error) {
	e.downOnce.Do(func() {
		e.mu.Lock()
		e.down = true
		e.downErr = err
		closed := e.closed
		e.runs = map[uint64]*run{}
		e.byRun = map[*sched.Run]uint64{}
		e.pending = nil
		e.cancels = nil
		e.recalls = nil
		e.mu.Unlock()
		e.cancel()
		close(e.downCh)
		if !closed {
			e.log.Warn("node down", "node", e.Name(), "addr", e.cfg.Addr, "err", err)
			e.rep.NodeDown(e.Name(), err)
		}
	})
}

// Err returns why the node was reported down, or nil.
func (e *Executor) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.downErr
}

// Close implements sched.Executor: it closes the computation on the node
// (stopping jobs still running there) and reports the runs left as Lost.
func (e *Executor) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	down := e.down
	left := make([]*sched.Run, 0, len(e.runs))
	for _, r := range e.runs {
		left = append(left, r.r)
	}
	e.runs = map[uint64]*run{}
	e.byRun = map[*sched.Run]uint64{}
	e.mu.Unlock()
	var err error
	if !down {
		_, err = e.api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: e.compID, Terminate: len(left) > 0}))
		if err != nil {
			err = &ConnError{Addr: e.cfg.Addr, Err: err}
		}
	}
	e.cancel()
	e.wg.Wait()
	for _, r := range left {
		e.rep.Done(r, sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s", ErrClosed, e.cfg.Addr)})
	}
	e.hc.CloseIdleConnections()
	e.bulk.CloseIdleConnections()
	return err
}

// CloseStale closes a computation the client left on a node (one reported
// down that may be alive after all), stopping its jobs. A node that no
// longer has it (it restarted, or closed it already) counts as success; on
// another error the caller may try again later, or leave it to the node's
// zombie reaper.
func (e *Executor) CloseStale(ctx context.Context) error {
	_, err := e.api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: e.compID, Terminate: true}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return &ConnError{Addr: e.cfg.Addr, Err: err}
	}
	return nil
}

// Recovered is the result of a job that a client which went away left on a
// node.
type Recovered struct {
	JobID  int64 // the job's ID in the client that submitted it
	Result sched.Result
}

// Recover comes back, as client cfg.ClientID, for the results a node kept
// for that client after it went away (it crashed, or its process ended
// without closing its cluster): it waits for the client's jobs still queued
// or running on the node, collects every result, and closes those
// computations. It returns every result the client had not acknowledged:
// one delivered just before the client went away may also have reached it.
func Recover(ctx context.Context, cfg Config) ([]Recovered, error) {
	hc := NewHTTPClient(cfg.Secret, cfg.TLS)
	defer hc.CloseIdleConnections()
	api := newAPI(hc, baseURL(cfg.Addr, cfg.TLS))
	list, err := api.Computations(ctx, connect.NewRequest(&drovev1.ComputationsRequest{ClientId: cfg.ClientID}))
	if err != nil {
		return nil, &ConnError{Addr: cfg.Addr, Err: err}
	}
	var out []Recovered
	for _, id := range list.Msg.ComputationIds {
		rs, err := recoverComputation(ctx, api, id)
		out = append(out, rs...)
		if err != nil {
			return out, &ConnError{Addr: cfg.Addr, Err: err}
		}
		if _, err := api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: id})); err != nil {
			return out, &ConnError{Addr: cfg.Addr, Err: err}
		}
	}
	return out, nil
}

func recoverComputation(ctx context.Context, api drovev1connect.NodeServiceClient, id string) ([]Recovered, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := api.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: id}))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []Recovered
	var cursor uint64
	for st.Receive() {
		m := st.Msg()
		// Events up to Acked were acknowledged by the client before it
		// went away: they will not come.
		cursor = max(cursor, m.Acked)
		for _, ev := range m.Events {
			if ev.Seq <= cursor {
				continue
			}
			cursor = ev.Seq
			switch k := ev.Kind.(type) {
			case *drovev1.Event_Result:
				if k.Result.GetOutcome() != drovev1.Outcome_OUTCOME_NOT_STARTED {
					out = append(out, Recovered{JobID: ev.JobId, Result: nodeproto.ResultFromProto(k.Result)})
				}
			case *drovev1.Event_File:
				// Files are not recovered; the job waiting in SendFile
				// learns so and goes on.
				msg := fmt.Sprintf("drove: file %s not received: the client that ran the job went away", k.File.GetName())
				if _, err := api.FileDone(ctx, connect.NewRequest(&drovev1.FileDoneRequest{ComputationId: id, Seq: ev.Seq, Error: msg})); err != nil {
					return out, err
				}
			}
		}
		// Every message says how far the node's events go and what is
		// still to come: done when nothing is pending and all is read.
		if m.Pending == 0 && cursor >= m.LastSeq {
			return out, nil
		}
	}
	if err := st.Err(); err != nil {
		return out, err
	}
	return out, io.ErrUnexpectedEOF
}
