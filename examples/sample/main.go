// Command sample is dispy's canonical sample.py: a function that sleeps and
// reports where it ran, ten jobs, their results, and the cluster's stats.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"github.com/drove-dev/drove"
)

// Result is what a job returns: where it ran and its input.
type Result struct {
	Host string
	N    int
}

// Compute sleeps n units and reports the host.
var Compute = drove.Func("sample.compute", func(ctx context.Context, in struct {
	N    int
	Unit time.Duration
}) (Result, error) {
	time.Sleep(time.Duration(in.N) * in.Unit)
	host, err := os.Hostname()
	return Result{Host: host, N: in.N}, err
})

func main() {
	drove.Main()
	jobs := flag.Int("jobs", 10, "jobs to submit")
	unit := flag.Duration("unit", time.Second, "length of one unit of sleep")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *jobs, *unit); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, n int, unit time.Duration) error {
	c, err := drove.NewCluster(ctx, Compute)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[Result]
	for range n {
		j, err := c.Submit(ctx, struct {
			N    int
			Unit time.Duration
		}{rand.IntN(5) + 1, unit})
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		r, err := j.Result(ctx)
		if err != nil {
			return fmt.Errorf("job %d: %w", j.ID(), err)
		}
		fmt.Fprintf(w, "%s executed job %d at %s with %d\n", r.Host, j.ID(), j.StartTime().Format(time.TimeOnly), r.N)
	}
	if err := c.Close(ctx); err != nil {
		return err
	}
	return c.Stats().Print(w)
}
