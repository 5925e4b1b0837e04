// Package nodetest runs drove node daemons inside a test's process, on
// loopback ports, for the tests of the node, its executor and the clusters
// built on them.
package nodetest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/node"
)

// Start runs a node on 127.0.0.1 (a free port) with a temporary directory,
// 2 CPUs and 50 ms heartbeats, logging warnings to the test's output; mut,
// if not nil, changes the configuration first. The node stops at the end of
// the test, or when stop is called; Run's error fails the test.
func Start(t testing.TB, mut func(*node.Config)) (n *node.Node, stop func()) {
	t.Helper()
	cfg := node.Config{
		Hosts:        []string{"127.0.0.1"},
		Dir:          t.TempDir(),
		CPUs:         2,
		PingInterval: 50 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mut != nil {
		mut(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return n, stop
}
