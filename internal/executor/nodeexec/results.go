package nodeexec

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
)

// receiver reads the Results stream, reconnecting when it breaks.
func (e *Executor) receiver() {
	defer e.wg.Done()
	var wait backoff
	for e.ctx.Err() == nil {
		heard, err := e.stream()
		if e.ctx.Err() != nil {
			return
		}
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return
		}
		if heard {
			wait = backoff{}
		}
		e.log.Debug("results stream broke; reconnecting", "node", e.Name(), "err", err)
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(wait.next(e)):
		}
	}
}

// backoff is the wait between attempts to reach the node: half a
// heartbeat interval, and with Config.Reattach twice as long after each
// failure, up to Config.ReattachMax.
type backoff struct{ d time.Duration }

func (b *backoff) next(e *Executor) time.Duration {
	first := e.cfg.Heartbeat / 2
	if !e.cfg.Reattach {
		return first
	}
	if b.d == 0 {
		b.d = first
	} else {
		b.d = min(2*b.d, max(e.cfg.ReattachMax, first))
	}
	return b.d
}

// ack returns how far events may be acknowledged to the node, once what
// was done with them is kept (Config.BeforeAck).
func (e *Executor) ack() uint64 {
	seq := e.lastSeq.Load()
	if e.cfg.BeforeAck != nil {
		e.cfg.BeforeAck()
	}
	return seq
}

// stream reads one Results stream until it breaks; heard reports whether
// the node answered.
func (e *Executor) stream() (heard bool, err error) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	st, err := e.api.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: e.compID, Ack: e.ack()}))
	if err != nil {
		return false, err
	}
	defer st.Close()
	for st.Receive() {
		heard = true
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
		return heard, err
	}
	return heard, io.ErrUnexpectedEOF
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
			if e.cfg.Machines {
				r.r.SetMachine(ev.Machine)
			}
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
		e.noteRun(k.Result.StartUnixNano, k.Result.EndUnixNano)
		res := nodeproto.ResultFromProto(k.Result)
		rcvd := int64(len(res.Output) + len(res.Stdout) + len(res.Stderr))
		e.totalSent.Add(r.sent)
		e.totalReceived.Add(rcvd)
		res.Sent = r.sent + e.sent.Swap(0)
		res.Received = rcvd + e.received.Swap(0)
		if e.cfg.Machines {
			r.r.SetMachine(ev.Machine)
		}
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
		e.cfg.Metrics.BlobReceived(int64(n))
		if last {
			return nil
		}
	}
}

// Recovered is the result of a job that a client which went away left on a
// node.
type Recovered struct {
	JobID  int64 // the job's ID in the client that submitted it
	Result sched.Result
}

// State is the final state the job ended in, as the client's scheduler
// would have set it: Finished, Cancelled (stopped on request), Abandoned
// (its node failed under it) or Terminated (it failed).
func (r Recovered) State() sched.State {
	switch r.Result.Outcome {
	case sched.OK:
		return sched.Finished
	case sched.Killed:
		return sched.Cancelled
	case sched.Lost, sched.NotStarted:
		return sched.Abandoned
	}
	return sched.Terminated
}

// Recover comes back, as client cfg.ClientID, for the results a node kept
// for that client after it went away (it crashed, or its process ended
// without closing its cluster): it waits for the client's jobs still queued
// or running on the node, collects every result, and closes those
// computations. It returns every result the client had not acknowledged:
// one delivered just before the client went away may also have reached it.
func Recover(ctx context.Context, cfg Config) ([]Recovered, error) {
	return collect(ctx, cfg, true)
}

// Peek is Recover without closing the computations: the results stay on
// the node, for a Recover that can decode them (the process that owns the
// function). Files the jobs send are refused all the same.
func Peek(ctx context.Context, cfg Config) ([]Recovered, error) {
	return collect(ctx, cfg, false)
}

func collect(ctx context.Context, cfg Config, close bool) ([]Recovered, error) {
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
		if !close {
			continue
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
