// Command provisional is dispy's provisional_results.py: jobs search for a
// value and send each improvement as a provisional result; as soon as one is
// good enough, the client cancels every job.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/drove-dev/drove"
)

// Search draws random numbers and reports each new maximum.
var Search = drove.Func("provisional.search", func(ctx context.Context, seed uint64) (float64, error) {
	r := rand.New(rand.NewPCG(seed, seed))
	best := 0.0
	for {
		select {
		case <-ctx.Done():
			return best, nil // cancelled: return the best found so far
		case <-time.After(time.Millisecond):
		}
		if v := r.Float64(); v > best {
			best = v
			if err := drove.Provisional(ctx, best); err != nil {
				return best, err
			}
		}
	}
})

func main() {
	drove.Main()
	if err := run(context.Background(), os.Stdout, 4, 0.999); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, n int, goal float64) error {
	var (
		mu      sync.Mutex
		found   = make(chan float64, 1)
		reached bool
	)
	c, err := drove.NewCluster(ctx, Search, drove.OnJobStatus(func(e drove.JobEvent[float64]) {
		if e.Status != drove.ProvisionalResult || e.Result < goal {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !reached {
			reached = true
			found <- e.Result
		}
	}))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[float64]
	for i := range n {
		j, err := c.Submit(ctx, uint64(i+1))
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	v := <-found
	fmt.Fprintf(w, "good enough: %.4f; cancelling\n", v)
	for _, j := range jobs {
		_ = c.Cancel(j)
	}
	for _, j := range jobs {
		best, err := j.Result(ctx)
		fmt.Fprintf(w, "job %d: %s, best %.4f, %v\n", j.ID(), j.Status(), best, err)
	}
	return nil
}
