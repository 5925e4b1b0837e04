// Command longrun is dispy's longrun.py: jobs that would run forever send
// provisional results; when the user has seen enough (Enter, or the time
// limit), they are cancelled and each returns its best result, ending
// Finished.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/drove-dev/drove"
)

// Progress is a job's running state.
type Progress struct {
	Steps int
	Best  int
}

// Work counts steps until cancelled, reporting every 100th.
var Work = drove.Func("longrun.work", func(ctx context.Context, id int) (Progress, error) {
	var p Progress
	for {
		select {
		case <-ctx.Done():
			return p, nil // a graceful stop: the best so far is the result
		default:
		}
		time.Sleep(100 * time.Microsecond)
		p.Steps++
		p.Best = max(p.Best, (p.Steps*7919+id)%1000)
		if p.Steps%100 == 0 {
			_ = drove.Provisional(ctx, p)
		}
	}
})

func main() {
	drove.Main()
	limit := flag.Duration("for", 0, "stop after this long (0: when Enter is pressed)")
	flag.Parse()
	stop := make(chan struct{})
	go func() {
		if *limit > 0 {
			time.Sleep(*limit)
		} else {
			fmt.Println("press Enter to stop the jobs")
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		}
		close(stop)
	}()
	if err := run(context.Background(), os.Stdout, 2, stop); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, n int, stop <-chan struct{}) error {
	c, err := drove.NewCluster(ctx, Work, drove.OnJobStatus(func(e drove.JobEvent[Progress]) {
		if e.Status == drove.ProvisionalResult {
			fmt.Fprintf(w, "job %d: %d steps so far\n", e.Job.ID(), e.Result.Steps)
		}
	}))
	if err != nil {
		return err
	}
	var jobs []*drove.Job[Progress]
	for i := range n {
		j, err := c.Submit(ctx, i)
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	<-stop
	for _, j := range jobs {
		_ = c.Cancel(j)
	}
	if err := c.Close(ctx); err != nil {
		return err
	}
	for _, j := range jobs {
		p, err := j.Result(ctx)
		fmt.Fprintf(w, "job %d %s after %d steps, best %d, %v\n", j.ID(), j.Status(), p.Steps, p.Best, err)
	}
	return nil
}
