package drove_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove"
)

// Setup runs once per worker and its cleanup when the worker stops, at
// Close: one cleanup file per worker that ran a job.
func TestSetupCleanupPerWorker(t *testing.T) {
	dir := t.TempDir()
	c, err := drove.NewCluster(t.Context(), whichWorker, drove.WithCPUs(2), drove.WithSetup(counted),
		drove.WithEnv("DROVE_TEST_CLEANUP_DIR="+dir))
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for i := range 40 {
		j, err := c.Submit(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := j.Result(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cleaned := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "cleanup-"))
		if err != nil {
			t.Fatalf("unexpected file %s", filepath.Join(dir, e.Name()))
		}
		cleaned[pid] = true
	}
	if len(cleaned) != 2 {
		t.Errorf("%d workers ran cleanup, want 2", len(cleaned))
	}
	for pid := range pids {
		if !cleaned[pid] {
			t.Errorf("worker %d ran jobs but no cleanup", pid)
		}
	}
}

// A closed cluster leaves no goroutine behind: readers, callbacks, timers
// and escalations all end with it.
func TestCloseLeaksNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, err := drove.NewCluster(t.Context(), sleep, drove.WithCancelGrace(100*1e6),
		drove.OnJobStatus(func(drove.JobEvent[int64]) {}))
	if err == nil {
		t.Fatal("a callback for the wrong result type was accepted")
	}
	s, err := drove.NewCluster(t.Context(), square, drove.OnJobStatus(func(drove.JobEvent[int]) {}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := s.Submit(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = c
}
