package process_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/sched"
)

// doneRecorder is a process.Reporter that records what Done is given.
type doneRecorder struct {
	mu   sync.Mutex
	done []sched.Result
}

func (d *doneRecorder) Done(_ *sched.Run, res sched.Result) {
	d.mu.Lock()
	d.done = append(d.done, res)
	d.mu.Unlock()
}

// TestStartAfterClose: a run given to a closed executor is reported Lost
// before Start returns, so no goroutine is left behind to report it.
func TestStartAfterClose(t *testing.T) {
	rec := &doneRecorder{}
	l := process.New(process.Config{Slots: 1}, rec)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.Start(&sched.Run{Task: &sched.Task{ID: 1, Ref: &process.Job{Command: "true"}}})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.done) != 1 || rec.done[0].Outcome != sched.Lost || !errors.Is(rec.done[0].Err, process.ErrClosed) {
		t.Errorf("reported %+v by the time Start returned, want one Lost with ErrClosed", rec.done)
	}
}
