package local_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
)

// markFile is where test.mark records the jobs it ran; the executor passes
// it to workers in their environment.
const markEnv = "DROVE_TEST_MARK_FILE"

func init() {
	registry.Register(&registry.Func{Name: "test.mark", In: "uint64", Out: "uint64", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		id := binary.LittleEndian.Uint64(in)
		f, err := os.OpenFile(os.Getenv(markEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := fmt.Fprintf(f, "%d\n", id); err != nil {
			return nil, err
		}
		// Mostly short jobs and now and then a longer one, so workers run
		// dry at different times and take jobs back from each other.
		switch {
		case id%97 == 0:
			time.Sleep(20 * time.Millisecond)
		case id%5 == 0:
			time.Sleep(200 * time.Microsecond)
		}
		return in, nil
	}})
}

// A job taken back from a worker (steal) that the worker had already begun
// goes on there and is not given to another worker as well: every job runs
// exactly once. Workers run ahead of the results they hold back, so with
// many short jobs and a few long ones, steals often catch a job that has
// just begun.
func TestStolenJobsRunOnce(t *testing.T) {
	const jobs = 3000
	marks := filepath.Join(t.TempDir(), "marks")
	s := sched.New(sched.Config{})
	e, err := local.New(t.Context(), local.Config{
		Slots:       3,
		Func:        "test.mark",
		Fingerprint: registry.Fingerprint(),
		Dir:         t.TempDir(),
		Env:         []string{markEnv + "=" + marks},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddNode("here", 3, e); err != nil {
		t.Fatal(err)
	}
	tasks := make([]*sched.Task, jobs)
	for i := range tasks {
		tasks[i] = &sched.Task{ID: int64(i + 1), Input: binary.LittleEndian.AppendUint64(nil, uint64(i+1))}
		if err := s.Submit(t.Context(), tasks[i]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.State() != sched.Finished {
			t.Fatalf("task %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	b, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, line := range bytes.Fields(b) {
		runs[string(line)]++
	}
	for i := 1; i <= jobs; i++ {
		if n := runs[fmt.Sprint(i)]; n != 1 {
			t.Errorf("job %d ran %d times", i, n)
		}
	}
}
