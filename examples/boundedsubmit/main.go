// Command boundedsubmit is dispy's bounded_submit.py done with one option:
// WithMaxPending makes Submit wait while that many jobs are unfinished, so
// a producer of many jobs never holds them all in memory.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"sync/atomic"

	"github.com/drove-dev/drove"
)

// Double doubles its input.
var Double = drove.Func("boundedsubmit.double", func(ctx context.Context, n int) (int, error) {
	return 2 * n, nil
})

func main() {
	drove.Main()
	if err := run(context.Background(), os.Stdout, 1000, 100); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, n, bound int) error {
	var sum atomic.Int64
	c, err := drove.NewCluster(ctx, Double, drove.WithMaxPending(bound),
		drove.OnJobStatus(func(e drove.JobEvent[int]) {
			if e.Status.Final() {
				sum.Add(int64(e.Result))
			}
		}))
	if err != nil {
		return err
	}
	// live holds the jobs not yet seen to end, to show the bound holds.
	var live []*drove.Job[int]
	peak := 0
	for i := range n {
		j, err := c.Submit(ctx, i)
		if err != nil {
			return err
		}
		live = append(live, j)
		kept := live[:0]
		for _, l := range live {
			if !l.Status().Final() {
				kept = append(kept, l)
			}
		}
		live = kept
		peak = max(peak, len(live))
	}
	if err := c.Close(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d jobs, sum %d, at most %d unfinished (bound %d)\n", n, sum.Load(), peak, bound)
	return nil
}
