package bench

import (
	"bufio"
	"context"
	"flag"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

var droveBin = flag.String("drove", "", "drove binary for the node and scheduler processes (default: build ./cmd/drove)")

// fleet is two drove node processes on loopback, of one CPU each (as
// Dask's peers run two workers of one thread), and a drove scheduler
// process driving them, all started from the same drove binary.
type fleet struct {
	nodes     []string // the nodes' addresses
	scheduler string   // the scheduler's address
}

// startFleet starts the fleet for one run of a benchmark; it stops at its
// end.
func startFleet(b *testing.B) fleet {
	b.Helper()
	bin := *droveBin
	if bin == "" {
		bin = nodetest.Build(b)
	}
	var f fleet
	for range 2 {
		f.nodes = append(f.nodes, nodetest.StartProcess(b, bin, nil, "--cpus", "1").Addr)
	}
	f.scheduler = startScheduler(b, bin, f.nodes)
	return f
}

var schedulerRE = regexp.MustCompile(`^drove scheduler \S+ on (\S+) for nodes`)

// startScheduler runs "bin scheduler" on a free loopback port over nodes
// and returns its address once it serves; it is stopped with SIGTERM at the
// end of the benchmark.
func startScheduler(b *testing.B, bin string, nodes []string) string {
	b.Helper()
	cmd := exec.Command(bin, "scheduler", "--port", "0", "--host", "127.0.0.1", "--dest-path", b.TempDir(),
		"--log-level", "warn", "--nodes", strings.Join(nodes, ","))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			b.Errorf("drove scheduler did not stop on SIGTERM; its log:\n%s", stderr.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = cmd.Wait()
		close(done)
		b.Fatalf("drove scheduler did not start: %s", stderr.String())
	}
	m := schedulerRE.FindStringSubmatch(lines.Text())
	go func() { _, _ = io.Copy(io.Discard, stdout); done <- cmd.Wait() }()
	if m == nil {
		b.Fatalf("drove scheduler: unexpected first line %q", lines.Text())
	}
	return m[1]
}

// BenchmarkFleet runs one client's no-op jobs on two drove node processes,
// through a drove scheduler process and directly (drove.WithNodes), one
// after the other on the same processes: jobs per second with all
// submitted at once (Throughput) and one job at a time (RoundTrip).
func BenchmarkFleet(b *testing.B) {
	f := startFleet(b)
	paths := []struct {
		name string
		opt  drove.Option
	}{
		{"direct", drove.WithNodes(f.nodes...)},
		{"scheduler", drove.WithScheduler(f.scheduler)},
	}
	for _, p := range paths {
		b.Run("Throughput/"+p.name, func(b *testing.B) { throughput(b, p.opt) })
	}
	for _, p := range paths {
		b.Run("RoundTrip/"+p.name, func(b *testing.B) { roundTrip(b, p.opt) })
	}
}

// throughput submits b.N no-op jobs from two goroutines and waits for them
// all, as BenchmarkThroughput does on the embedded cluster.
func throughput(b *testing.B, opts ...drove.Option) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop, append(opts, drove.WithWorkDir(b.TempDir()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	b.ResetTimer()
	jobs := make([]*drove.Job[int], b.N)
	var wg sync.WaitGroup
	half := b.N / 2
	for _, part := range [][]*drove.Job[int]{jobs[:half], jobs[half:]} {
		wg.Go(func() {
			for i := range part {
				j, err := c.Submit(ctx, i)
				if err != nil {
					b.Error(err)
					return
				}
				part[i] = j
			}
		})
	}
	wg.Wait()
	if err := c.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for i, j := range jobs {
		if j == nil {
			b.Fatalf("job %d was not submitted", i)
		}
		if _, err := j.Result(ctx); err != nil {
			b.Fatalf("job %d: %v", i, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// roundTrip runs one no-op job at a time: Submit, then Result.
func roundTrip(b *testing.B, opts ...drove.Option) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop, append(opts, drove.WithWorkDir(b.TempDir()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	for i := 0; b.Loop(); i++ {
		j, err := c.Submit(ctx, i)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := j.Result(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
