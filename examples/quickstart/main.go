// Command quickstart is the README's Go quickstart.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/drove-dev/drove"
)

// Register functions at package initialisation: workers are started from
// this same executable and must know them too.
var Square = drove.Func("square", func(ctx context.Context, n int) (int, error) {
	return n * n, nil
})

func main() {
	drove.Main() // first statement: in a worker process this serves jobs
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, Square) // embedded: one worker per CPU
	if err != nil {
		log.Fatal(err)
	}
	var jobs []*drove.Job[int]
	for n := range 10 {
		j, err := c.Submit(ctx, n, drove.Timeout(time.Minute), drove.Retries(1))
		if err != nil {
			log.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		v, err := j.Result(ctx)
		fmt.Println(j.ID(), v, err, j.Node(), j.EndTime().Sub(j.StartTime()))
	}
	c.Close(ctx)
	c.Stats().Print(os.Stdout) // dispy's table
}
