package scheduler

import (
	"context"

	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/node"
)

var (
	_ node.MachineDescriber = (*Machines)(nil)
	_ node.NodeAdder        = (*Machines)(nil)
)

// Describe implements node.MachineDescriber: a node's address and what it
// said it has free at its latest heartbeat.
func (m *Machines) Describe(mn *monitor.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for x := range m.muxes {
		if x.name == mn.Name {
			mn.Address = x.addr
			node.DescribeAvail(mn, x.info.Load().GetAvail())
			return
		}
	}
	for addr, name := range m.names {
		if name == mn.Name {
			mn.Address = addr
		}
	}
}

// AddNode implements node.NodeAdder: the node at addr joins the fleet,
// which keeps it as it keeps the nodes given at start.
func (m *Machines) AddNode(ctx context.Context, addr string) error {
	m.log.Info("adding node from the monitor", "addr", addr)
	// The fleet keeps trying a node that does not answer in time; only
	// a permanent refusal is an error here.
	for _, err := range m.add(ctx, []string{addr}) {
		if err != nil {
			return err
		}
	}
	return nil
}
