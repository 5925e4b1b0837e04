// Package nodetest runs drove node daemons for tests, on loopback ports:
// inside the test's process (Start, and StartScheduler for a drove
// scheduler over given nodes), or as real drove node processes (Build and
// StartProcess).
package nodetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/scheduler"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
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

// StartScheduler runs a drove scheduler (a node daemon whose machines are
// the drove nodes at nodes) as Start runs a node: on 127.0.0.1, a free
// port, a temporary directory, warnings logged to the test's output. Its
// heartbeats, with clients and with nodes, are every 200 ms: it relays
// every job in the test's process, which the race detector slows. The
// nodes are redialled every 200 ms when down, and the scheduler signs its
// requests to them with the clients' secret unless mut sets
// scheduler.Config.Secret, as drove scheduler does without
// --node-secret-file. mut, if not nil, changes both configurations first.
// It returns once the scheduler serves, the nodes that answered in time
// (scheduler.Config.ConnectTimeout) among its nodes. It stops at the end
// of the test, or when stop is called.
func StartScheduler(t testing.TB, nodes []string, mut func(*node.Config, *scheduler.Config)) (n *node.Node, stop func()) {
	t.Helper()
	var mc scheduler.Config
	serving := make(chan struct{})
	n, stop = Start(t, func(cfg *node.Config) {
		cfg.PingInterval = 200 * time.Millisecond
		mc = scheduler.Config{
			Nodes:     nodes,
			Heartbeat: 200 * time.Millisecond,
			Retry:     200 * time.Millisecond,
			// Only patterns in nodes use it: no fixed UDP port.
			Discovery: discovery.ClientConfig{ListenAddr: "127.0.0.1:0"},
		}
		if mut != nil {
			mut(cfg, &mc)
		}
		if mc.Secret == "" {
			mc.Secret = cfg.Secret
		}
		if mc.Dir == "" {
			mc.Dir = cfg.Dir
		}
		if mc.Logger == nil {
			mc.Logger = cfg.Logger
		}
		cfg.Machines = scheduler.New(mc)
		// Clients discovering nodes must not take the scheduler for one.
		cfg.Discovery = false
		onListen := cfg.OnListen
		cfg.OnListen = func() {
			if onListen != nil {
				onListen()
			}
			close(serving)
		}
	})
	select {
	case <-serving:
	case <-time.After(time.Minute):
		t.Fatal("the scheduler did not serve within a minute")
	}
	return n, stop
}

// Build builds the drove command into a temporary directory and returns
// its path, for tests that run real drove node processes.
func Build(t testing.TB) string {
	t.Helper()
	bin, err := BuildInto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildInto builds the drove command into dir and returns its path, for
// tests that share one binary.
func BuildInto(dir string) (string, error) {
	bin := filepath.Join(dir, "drove")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/drove-dev/drove/cmd/drove").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Process is a drove node or scheduler daemon running as a process of its
// own.
type Process struct {
	Cmd    *exec.Cmd
	Addr   string          // where it serves
	Stderr *syncbuf.Buffer // its log
	Done   chan error      // receives Wait's error when it exits
}

var (
	servingRE      = regexp.MustCompile(`serving \d+ CPUs on (\S+)`)
	schedServingRE = regexp.MustCompile(`^drove scheduler \S+ on (\S+) for nodes`)
)

// StartProcess runs "bin node" on a free loopback port with a temporary
// directory, 100 ms heartbeats and no discovery, plus args, and waits until
// it serves. At the end of the test it is stopped with SIGTERM (its log is
// printed if the test failed).
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	args = append([]string{"node", "--port", "0", "--host", "127.0.0.1", "--dest-path", t.TempDir(), "--ping-interval", "100ms", "--log-level", "warn", "--no-discovery"}, args...)
	return start(t, "drove node", servingRE, bin, env, args)
}

// StartSchedulerProcess runs "bin scheduler" on a free loopback port with a
// temporary directory, 100 ms heartbeats, nodes tried again every 300 ms
// and logs at info level (a node's joining is logged as msg="node up"),
// plus args, and waits until it serves. At the end of the test it is
// stopped with SIGTERM (its log is printed if the test failed).
func StartSchedulerProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	args = append([]string{"scheduler", "--port", "0", "--host", "127.0.0.1", "--dest-path", t.TempDir(), "--ping-interval", "100ms", "--node-retry", "300ms", "--log-level", "info"}, args...)
	return start(t, "drove scheduler", schedServingRE, bin, env, args)
}

// start runs bin with args, a daemon called what that prints its address
// as the first submatch of serving on its first line.
func start(t testing.TB, what string, serving *regexp.Regexp, bin string, env, args []string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Stderr: &syncbuf.Buffer{}, Done: make(chan error, 1)}
	cmd.Stderr = p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = cmd.Wait()
		t.Fatalf("%s %v did not start: %s", what, args, p.Stderr.String())
	}
	m := serving.FindStringSubmatch(lines.Text())
	if m == nil {
		_ = cmd.Process.Kill()
		t.Fatalf("unexpected first line %q", lines.Text())
	}
	p.Addr = m[1]
	go func() { _, _ = io.Copy(io.Discard, stdout); p.Done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop on SIGTERM", what)
		}
		if t.Failed() {
			t.Logf("%s %s stderr:\n%s", what, p.Addr, p.Stderr.String())
		}
	})
	return p
}
