package bench

import (
	"bytes"
	"context"
	"encoding/gob"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
)

// nodeCluster starts a drove node daemon on a loopback port (in this
// process: it runs its jobs in worker processes started from a copy of this
// binary, as a separate daemon would) and a scheduler driving it.
func nodeCluster(b *testing.B) *sched.Scheduler {
	b.Helper()
	n, err := node.New(node.Config{Hosts: []string{"127.0.0.1"}, Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	f, err := nodeexec.HashFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	s := sched.New(sched.Config{})
	ex, err := nodeexec.Dial(ctx, nodeexec.Config{Addr: n.Addr().String(), ClientID: "bench"},
		&nodeexec.Computation{Func: "bench.noop", Fingerprint: registry.Fingerprint(), Executable: f}, s)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.AddNode(ex.Name(), ex.Slots(), ex); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func gobInt(b *testing.B, v int) []byte {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkNodeThroughput submits b.N no-op jobs at once through one node
// on loopback and waits for all: jobs per second through the node API.
func BenchmarkNodeThroughput(b *testing.B) {
	s := nodeCluster(b)
	in := gobInt(b, 1)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	ts := make([]sched.Task, b.N)
	for i := range ts {
		ts[i].ID, ts[i].Input = int64(i), in
		if err := s.Submit(ctx, &ts[i]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	for i := range ts {
		if ts[i].State() != sched.Finished {
			b.Fatalf("job %d: %v %v", i, ts[i].State(), ts[i].Result().Err)
		}
	}
}

// BenchmarkNodeRoundTrip runs one no-op job at a time through the node: the
// latency of submit → node → worker → node → result.
func BenchmarkNodeRoundTrip(b *testing.B) {
	s := nodeCluster(b)
	in := gobInt(b, 1)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		t := &sched.Task{ID: int64(i), Input: in}
		if err := s.Submit(ctx, t); err != nil {
			b.Fatal(err)
		}
		<-t.Done()
		if t.State() != sched.Finished {
			b.Fatalf("job %d: %v %v", i, t.State(), t.Result().Err)
		}
	}
}

// BenchmarkNodeDependsTransfer ships a 256 MiB depends file (or
// $DROVE_BENCH_DEPENDS_MIB MiB) to a fresh node (so nothing is
// deduplicated) and reports the transfer rate; then ships the same
// computation again and reports the blob bytes that took (0).
func BenchmarkNodeDependsTransfer(b *testing.B) {
	size := 256 << 20
	if mib, err := strconv.Atoi(os.Getenv("DROVE_BENCH_DEPENDS_MIB")); err == nil && mib > 0 {
		size = mib << 20
	}
	path := b.TempDir() + "/big.bin"
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range size / len(buf) {
		buf[0] = byte(i)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	// On disk before the clock starts: its writeback must not share the
	// disk with the transfer measured.
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	dep, err := nodeexec.HashFile(path)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := nodeexec.HashFile("/bin/true")
	if err != nil {
		b.Fatal(err)
	}
	comp := &nodeexec.Computation{Program: prog, ProgramName: "true", Depends: []nodeexec.Depend{{Name: "big.bin", File: dep}}}
	var elapsed time.Duration
	var again int64
	for range b.N {
		n, err := node.New(node.Config{Hosts: []string{"127.0.0.1"}, Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		s := sched.New(sched.Config{})
		start := time.Now()
		ex, err := nodeexec.Dial(ctx, nodeexec.Config{Addr: n.Addr().String(), ClientID: "bench"}, comp, s)
		if err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		_ = ex.Close(ctx)
		ex2, err := nodeexec.Dial(ctx, nodeexec.Config{Addr: n.Addr().String(), ClientID: "bench"}, comp, s)
		if err != nil {
			b.Fatal(err)
		}
		sent, _ := ex2.Bytes()
		again += sent
		_ = ex2.Close(ctx)
		_ = s.Close(ctx)
		cancel()
		<-done
	}
	b.ReportMetric(float64(size)*float64(b.N)/elapsed.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(again)/float64(b.N), "resubmit-bytes")
}
