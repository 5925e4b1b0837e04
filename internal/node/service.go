package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/filesink"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/sched"
)

// busy is how many jobs the daemon's machines run.
func (n *Node) busy() int {
	busy := 0
	for _, ns := range n.sched.Stats().Nodes {
		busy += ns.Busy
	}
	return busy
}

// Protocol is the version of the node API; clients refuse another.
const Protocol = 1

// service implements the connect API.
type service struct {
	n *Node
}

var _ drovev1connect.NodeServiceHandler = (*service)(nil)

func (n *Node) infoProto() *drovev1.InfoResponse {
	n.mu.Lock()
	comps := len(n.comps)
	n.mu.Unlock()
	busy := n.busy()
	return &drovev1.InfoResponse{
		Name:         n.cfg.Name,
		BootId:       n.bootID,
		Goos:         runtime.GOOS,
		Goarch:       runtime.GOARCH,
		Cpus:         int32(n.machines.Slots(0)),
		Busy:         int32(busy),
		Computations: int32(comps),
		Avail:        n.info.sample(),
		Protocol:     Protocol,
		MaxFileSize:  uint64(n.cfg.MaxFileSize),
		MaxMessage:   uint64(n.cfg.MaxMessage),
		Machines:     n.machineList(),
	}
}

// machineList returns the machines of a daemon that relays jobs to
// others, nil for a drove node.
func (n *Node) machineList() []*drovev1.Machine {
	if n.relay == nil {
		return nil
	}
	return n.relay.List()
}

func (s *service) SetCPUs(ctx context.Context, req *connect.Request[drovev1.SetCPUsRequest]) (*connect.Response[drovev1.SetCPUsResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	if s.n.relay == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("drove: node %s runs its jobs itself: it has no machines to bound a computation on", s.n.cfg.Name))
	}
	if err := s.n.relay.SetCPUs(c, req.Msg.Machine, int(req.Msg.Cpus)); err != nil {
		if errors.Is(err, sched.ErrNoNode) {
			return nil, connect.NewError(connect.CodeNotFound, err)
		}
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewResponse(&drovev1.SetCPUsResponse{}), nil
}

func (s *service) Info(ctx context.Context, req *connect.Request[drovev1.InfoRequest]) (*connect.Response[drovev1.InfoResponse], error) {
	return connect.NewResponse(s.n.infoProto()), nil
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("drove: "+format, args...))
}

func (s *service) Setup(ctx context.Context, req *connect.Request[drovev1.SetupRequest]) (*connect.Response[drovev1.SetupResponse], error) {
	n := s.n
	m := req.Msg
	if !validClientID(m.ClientId) {
		return nil, invalid("bad client id %q", m.ClientId)
	}
	if (m.FuncName == "") == (m.Program == nil) {
		return nil, invalid("a computation needs exactly one of a function and a program")
	}
	if m.FuncName != "" {
		if m.Executable == nil {
			return nil, invalid("a function computation needs the client's executable")
		}
	}
	blobs := []*drovev1.Blob{m.Executable, m.Program}
	for _, d := range m.Depends {
		if d.Blob == nil || !filepath.IsLocal(d.Name) {
			return nil, invalid("depends name %q must be a relative path inside the job directory", d.Name)
		}
		blobs = append(blobs, d.Blob)
	}
	for _, b := range blobs {
		if b != nil && (!validSum(b.Sum) || !n.blobs.Has(b.Sum)) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("drove: blob %q missing: upload it first", b.Sum))
		}
	}
	if n.serveFull(m.ClientId) {
		return nil, errServed(n.cfg.Serve)
	}
	slots := n.machines.Slots(int(m.Cpus))
	// A client that asks for an interval gets it; one that does not gets
	// the node's --ping-interval. The answer tells the client which.
	hb := time.Duration(m.HeartbeatIntervalMs) * time.Millisecond
	if hb <= 0 {
		hb = n.cfg.PingInterval
	}
	hb = max(hb, 10*time.Millisecond)
	c := &Computation{
		n:        n,
		id:       newID(),
		clientID: m.ClientId,
		req:      m,
		slots:    slots,
		hb:       hb,
		jobs:     map[uint64]*job{},
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
		fileAcks: m.FileAcks,
		closing:  make(chan struct{}),
		fileWait: map[uint64]chan string{},
		st:       n.cfg.State,
	}
	c.dir = filepath.Join(n.cfg.Dir, "comp", m.ClientId, c.id)
	if err := c.prepare(ctx, m); err != nil {
		_ = os.RemoveAll(c.dir)
		return nil, err
	}
	ten, err := n.machines.Open(ctx, c)
	if err != nil {
		c.discard()
		return nil, err
	}
	c.ten = ten
	n.mu.Lock()
	if n.cfg.Serve > 0 && !n.clients[c.clientID] && len(n.clients) >= n.cfg.Serve {
		// Another new client took the last place meanwhile.
		n.mu.Unlock()
		if err := n.sched.CloseTenant(ctx, c.ten); err != nil {
			n.log.Warn("closing computation", "computation", c.id, "err", err)
		}
		n.machines.Close(ctx, c)
		c.discard()
		return nil, errServed(n.cfg.Serve)
	}
	n.clients[c.clientID] = true
	n.comps[c.id] = c
	n.mu.Unlock()
	n.met.computations.Inc()
	if err := c.saveComp(); err != nil {
		c.close(ctx, true, "cannot keep it in the state")
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("drove: keeping the computation: %w", err))
	}
	n.log.Info("computation set up", "computation", c.id, "client", c.clientID, "func", m.FuncName, "program", m.ProgramName, "slots", slots, "remote", req.Peer().Addr)
	return connect.NewResponse(&drovev1.SetupResponse{ComputationId: c.id, Slots: int32(slots), BootId: n.bootID, HeartbeatIntervalMs: uint32(hb / time.Millisecond)}), nil
}

// serveFull reports whether a node with Config.Serve has served its
// clients already and client is not one of them.
func (n *Node) serveFull(client string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.Serve > 0 && !n.clients[client] && len(n.clients) >= n.cfg.Serve
}

func errServed(serve int) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("drove: node serves %d clients (--serve) and takes no other", serve))
}

// discard undoes a prepared computation that was never registered.
func (c *Computation) discard() {
	c.out.close()
	c.files.Close()
	c.root.Close()
	_ = os.RemoveAll(c.dir)
}

// prepare makes the computation's directory, its sink for files jobs send
// back and its outbox. On error, what it opened is closed again.
func (c *Computation) prepare(ctx context.Context, m *drovev1.SetupRequest) (err error) {
	n := c.n
	for _, d := range []string{"jobs", "out"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o700); err != nil {
			return connect.NewError(connect.CodeInternal, err)
		}
	}
	if c.files, err = filesink.Open(filepath.Join(c.dir, "out"), n.cfg.MaxFileSize); err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	defer func() {
		if err != nil {
			c.files.Close()
		}
	}()
	if c.root, err = os.OpenRoot(filepath.Join(c.dir, "out")); err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	defer func() {
		if err != nil {
			c.root.Close()
		}
	}()
	if err := c.writeMeta(); err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	c.out = newOutbox(filepath.Join(c.dir, spoolName), func(err error) {
		n.log.Warn("event spool", "computation", c.id, "err", err)
	})
	return nil
}

func (n *Node) comp(id string) (*Computation, error) {
	n.mu.Lock()
	c := n.comps[id]
	n.mu.Unlock()
	if c == nil {
		if n.keepsOnStop() {
			// Its computations are kept for the next start: the client
			// waits for it rather than giving them up.
			return nil, errStopping(n.cfg.Name)
		}
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("drove: node %s has no computation %q (closed, or the node restarted)", n.cfg.Name, id))
	}
	c.out.touch()
	return c, nil
}

func (s *service) Submit(ctx context.Context, req *connect.Request[drovev1.SubmitRequest]) (*connect.Response[drovev1.SubmitResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	if err := c.submit(req.Msg.Jobs); err != nil {
		if c.Kept() {
			return nil, errStopping(s.n.cfg.Name)
		}
		return nil, connect.NewError(connect.CodeNotFound, err)
	}
	if err := c.syncState(); err != nil {
		// Taken, but perhaps not kept: the client sends the batch
		// again, and jobs it had sent are not taken twice.
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("drove: keeping the jobs: %w", err))
	}
	return connect.NewResponse(&drovev1.SubmitResponse{}), nil
}

func (s *service) Cancel(ctx context.Context, req *connect.Request[drovev1.CancelRequest]) (*connect.Response[drovev1.CancelResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	c.cancel(req.Msg.RunIds, req.Msg.Recall)
	return connect.NewResponse(&drovev1.CancelResponse{}), nil
}

func (s *service) Heartbeat(ctx context.Context, req *connect.Request[drovev1.HeartbeatRequest]) (*connect.Response[drovev1.HeartbeatResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	c.out.ack(req.Msg.Ack)
	c.saveAck(req.Msg.Ack)
	return connect.NewResponse(&drovev1.HeartbeatResponse{}), nil
}

func (s *service) Close(ctx context.Context, req *connect.Request[drovev1.CloseRequest]) (*connect.Response[drovev1.CloseResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	c.close(ctx, req.Msg.Terminate, "closed by client")
	return connect.NewResponse(&drovev1.CloseResponse{}), nil
}

func (s *service) FileDone(ctx context.Context, req *connect.Request[drovev1.FileDoneRequest]) (*connect.Response[drovev1.FileDoneResponse], error) {
	c, err := s.n.comp(req.Msg.ComputationId)
	if err != nil {
		return nil, err
	}
	c.fileDone(req.Msg.Seq, req.Msg.Error)
	return connect.NewResponse(&drovev1.FileDoneResponse{}), nil
}

// maxBatch bounds the events in one Results message.
const maxBatch = 1024

func (s *service) Results(ctx context.Context, req *connect.Request[drovev1.ResultsRequest], stream *connect.ServerStream[drovev1.ResultsResponse]) error {
	n := s.n
	c, err := n.comp(req.Msg.ComputationId)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gen, notify := c.out.attach(req.Msg.Ack, cancel)
	defer c.out.detach(gen)
	c.saveAck(req.Msg.Ack)
	n.met.streams.Inc()
	defer n.met.streams.Dec()
	cursor := req.Msg.Ack
	tick := time.NewTicker(c.hb)
	defer tick.Stop()
	// The first message tells the client the stream is up.
	if err := stream.Send(c.heartbeat()); err != nil {
		return err
	}
	for {
		if evs := c.out.after(cursor, maxBatch); len(evs) > 0 {
			msg := c.heartbeat()
			msg.Events = evs
			if err := stream.Send(msg); err != nil {
				return err
			}
			cursor = evs[len(evs)-1].Seq
			continue
		}
		select {
		case <-notify:
		case <-tick.C:
			if err := stream.Send(c.heartbeat()); err != nil {
				return err
			}
		case <-c.done:
			if c.Kept() {
				return errStopping(n.cfg.Name)
			}
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("drove: computation %s closed", c.id))
		case <-ctx.Done():
			return nil
		}
	}
}

// heartbeat is a Results message without events: the node's load and the
// computation's progress.
func (c *Computation) heartbeat() *drovev1.ResultsResponse {
	n := c.n
	busy := n.busy()
	c.mu.Lock()
	pending := len(c.jobs)
	last, acked := c.out.last()
	c.mu.Unlock()
	return &drovev1.ResultsResponse{Busy: int32(busy), Avail: n.info.cached(), Pending: int32(pending), LastSeq: last, Acked: acked}
}

func (s *service) Computations(ctx context.Context, req *connect.Request[drovev1.ComputationsRequest]) (*connect.Response[drovev1.ComputationsResponse], error) {
	n := s.n
	resp := &drovev1.ComputationsResponse{}
	n.mu.Lock()
	for id, c := range n.comps {
		if c.clientID == req.Msg.ClientId {
			resp.ComputationIds = append(resp.ComputationIds, id)
		}
	}
	n.mu.Unlock()
	return connect.NewResponse(resp), nil
}

// stageExecutable copies an executable blob to dst. It holds
// syscall.ForkLock for reading while dst is open for writing: a process
// forked meanwhile (another computation starting its workers) would inherit
// the descriptor until it execs, and exec of dst would then fail with "text
// file busy".
func stageExecutable(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
