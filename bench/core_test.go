// Package bench holds drove's benchmarks: go test -bench . ./bench/ for the
// Go ones, and compare.sh to run drove beside its peers on this machine.
package bench

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

var noop = drove.Func("bench.noop", func(ctx context.Context, n int) (int, error) { return n, nil })

// BenchmarkThroughput submits b.N no-op jobs with many in flight and waits
// for all of them: the embedded cluster's jobs per second.
func BenchmarkThroughput(b *testing.B) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	b.ResetTimer()
	// Two submitters, as a client with concurrent producers would have.
	var wg sync.WaitGroup
	per := b.N / 2
	for w := range 2 {
		n := per
		if w == 0 {
			n = b.N - per
		}
		wg.Go(func() {
			for i := range n {
				if _, err := c.Submit(ctx, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := c.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkRoundTrip is one Submit then Result at a time: the latency of a
// job through the embedded cluster.
func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, noop)
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

// BenchmarkProgramTrue runs /bin/true as a program computation, many in
// flight: the process-spawn path, to compare with xargs -P.
func BenchmarkProgramTrue(b *testing.B) {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, drove.Program("/bin/true"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Submit(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
