// Package schedtest has what the executors' tests share for driving a
// scheduler: run one task to its end, read a shell job's exit code.
package schedtest

import (
	"context"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
)

// Run submits task to sc, waits for it to end (at most 30 s) and returns
// its result.
func Run(t testing.TB, sc *sched.Scheduler, task *sched.Task) *sched.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sc.Submit(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return task.Result()
}

// ExitCode returns the exit code a shell or program job's result carries.
func ExitCode(t testing.TB, res *sched.Result) int {
	t.Helper()
	c, err := wire.ParseExitCode(res.Output)
	if err != nil {
		t.Fatalf("output %q: %v (result %+v)", res.Output, err, res)
	}
	return c
}
