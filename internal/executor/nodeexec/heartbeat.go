package nodeexec

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
)

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
		if silent > 2*e.cfg.Heartbeat {
			// One late heartbeat is jitter; two intervals without a
			// word is a miss.
			e.cfg.Metrics.HeartbeatMiss()
		}
		if silent > time.Duration(e.cfg.Misses)*e.cfg.Heartbeat && !e.cfg.Reattach {
			e.nodeDown(fmt.Errorf("%w: silent for %v (%d intervals of %v)", ErrHeartbeat, silent.Round(time.Millisecond), e.cfg.Misses, e.cfg.Heartbeat))
			return
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Heartbeat)
		_, err := e.api.Heartbeat(ctx, connect.NewRequest(&drovev1.HeartbeatRequest{ComputationId: e.compID, Ack: e.ack()}))
		cancel()
		if connect.CodeOf(err) == connect.CodeNotFound {
			e.nodeDown(fmt.Errorf("%w: %w", ErrGone, err))
			return
		}
		if e.cfg.Machines && err == nil {
			e.askMachines()
		}
	}
}

// askMachines asks a daemon that runs its jobs on other nodes for them
// (Config.Machines).
func (e *Executor) askMachines() {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Heartbeat)
	defer cancel()
	resp, err := e.api.Info(ctx, connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		e.log.Debug("asking for the daemon's nodes", "node", e.Name(), "err", err)
		return
	}
	e.machines.Store(&resp.Msg.Machines)
	if e.cfg.OnMachines != nil {
		e.cfg.OnMachines(e.Name(), resp.Msg.Machines)
	}
}
