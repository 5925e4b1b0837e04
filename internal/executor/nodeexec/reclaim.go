package nodeexec

import (
	"context"
	"fmt"
	"io"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
)

// Reclaim takes up computation compID that this client (cfg.ClientID)
// left on the node at cfg.Addr when its process died, for the runs it had
// sent there (run ids on the node): each run's result is passed to
// result as it comes, and events are acknowledged to the node after
// cfg.BeforeAck. It returns when every run has a result, or when the node
// holds no job of the computation any more, with the runs that never
// reached it (unseen), and closes the computation on the node. A run
// given back unstarted (a recall) comes as a result with Outcome
// NotStarted. An error leaves the rest for a later Reclaim; one wrapping
// ErrGone means the node does not have the computation (it restarted
// without it, or closed it as a zombie): what it ran is lost.
func Reclaim(ctx context.Context, cfg Config, compID string, runs map[uint64]bool, result func(run uint64, res sched.Result)) (unseen []uint64, err error) {
	hc := NewHTTPClient(cfg.Secret, cfg.TLS)
	defer hc.CloseIdleConnections()
	api := newAPI(hc, baseURL(cfg.Addr, cfg.TLS))
	left := make(map[uint64]bool, len(runs))
	for r := range runs {
		left[r] = true
	}
	ack := func(seq uint64) error {
		if cfg.BeforeAck != nil {
			cfg.BeforeAck()
		}
		_, err := api.Heartbeat(ctx, connect.NewRequest(&drovev1.HeartbeatRequest{ComputationId: compID, Ack: seq}))
		return err
	}
	done, err := reclaimStream(ctx, api, compID, left, result, ack)
	if err != nil {
		if connect.CodeOf(err) == connect.CodeNotFound {
			err = fmt.Errorf("%w: %w", ErrGone, err)
		}
		return nil, &ConnError{Addr: cfg.Addr, Err: err}
	}
	if done {
		for r := range left {
			unseen = append(unseen, r)
		}
	}
	if _, err := api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: compID})); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return unseen, &ConnError{Addr: cfg.Addr, Err: err}
	}
	return unseen, nil
}

// reclaimStream reads the computation's Results stream until every run in
// left has its result (which it removes from left) or the node holds no
// job of it and every event is read (done).
func reclaimStream(ctx context.Context, api interface {
	Results(context.Context, *connect.Request[drovev1.ResultsRequest]) (*connect.ServerStreamForClient[drovev1.ResultsResponse], error)
	FileDone(context.Context, *connect.Request[drovev1.FileDoneRequest]) (*connect.Response[drovev1.FileDoneResponse], error)
}, compID string, left map[uint64]bool, result func(uint64, sched.Result), ack func(uint64) error) (done bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := api.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: compID}))
	if err != nil {
		return false, err
	}
	defer st.Close()
	var cursor uint64
	for st.Receive() {
		m := st.Msg()
		cursor = max(cursor, m.Acked)
		got := false
		for _, ev := range m.Events {
			if ev.Seq <= cursor {
				continue
			}
			cursor = ev.Seq
			got = true
			switch k := ev.Kind.(type) {
			case *drovev1.Event_Result:
				if left[ev.RunId] {
					delete(left, ev.RunId)
					result(ev.RunId, nodeproto.ResultFromProto(k.Result))
				}
			case *drovev1.Event_File:
				msg := fmt.Sprintf("drove: file %s not received: the scheduler that ran the job restarted", k.File.GetName())
				if _, err := api.FileDone(ctx, connect.NewRequest(&drovev1.FileDoneRequest{ComputationId: compID, Seq: ev.Seq, Error: msg})); err != nil {
					return false, err
				}
			}
		}
		if got {
			if err := ack(cursor); err != nil {
				return false, err
			}
		}
		if len(left) == 0 {
			return false, nil
		}
		if m.Pending == 0 && cursor >= m.LastSeq {
			return true, nil
		}
	}
	if err := st.Err(); err != nil {
		return false, err
	}
	return false, io.ErrUnexpectedEOF
}

// CloseComputation closes computation compID of this client on the node at
// cfg.Addr, stopping its jobs if terminate; one the node no longer has
// counts as closed.
func CloseComputation(ctx context.Context, cfg Config, compID string, terminate bool) error {
	hc := NewHTTPClient(cfg.Secret, cfg.TLS)
	defer hc.CloseIdleConnections()
	api := newAPI(hc, baseURL(cfg.Addr, cfg.TLS))
	_, err := api.Close(ctx, connect.NewRequest(&drovev1.CloseRequest{ComputationId: compID, Terminate: terminate}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return &ConnError{Addr: cfg.Addr, Err: err}
	}
	return nil
}

// CancelRuns cancels runs (run ids on the node) of computation compID of
// this client on the node at cfg.Addr; their results come as usual.
func CancelRuns(ctx context.Context, cfg Config, compID string, runs []uint64) error {
	hc := NewHTTPClient(cfg.Secret, cfg.TLS)
	defer hc.CloseIdleConnections()
	api := newAPI(hc, baseURL(cfg.Addr, cfg.TLS))
	if _, err := api.Cancel(ctx, connect.NewRequest(&drovev1.CancelRequest{ComputationId: compID, RunIds: runs})); err != nil {
		return &ConnError{Addr: cfg.Addr, Err: err}
	}
	return nil
}
