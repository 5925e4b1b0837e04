// Command objinstances is dispy's obj_instances.py: instances of a user type
// are shipped as arguments, and what the job prints is captured with it.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/drove-dev/drove"
)

// C is a user type shipped to the workers.
type C struct {
	I int
	N float64
}

// Show prints itself, as dispy's C.show.
func (c C) Show() { fmt.Printf("%d: %.2f\n", c.I, c.N) }

// Compute prints the instance (captured into the job's stdout) and returns
// it changed.
var Compute = drove.Func("objinstances.compute", func(ctx context.Context, c C) (C, error) {
	c.Show()
	c.N *= 2
	return c, nil
})

func main() {
	drove.Main()
	if err := run(context.Background(), os.Stdout, 5); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, n int) error {
	c, err := drove.NewCluster(ctx, Compute)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var jobs []*drove.Job[C]
	for i := range n {
		j, err := c.Submit(ctx, C{I: i, N: float64(i) + 0.5})
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		r, err := j.Result(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "job %d printed %q and returned %.2f\n", j.ID(), j.Stdout(), r.N)
	}
	return nil
}
