package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/drove-dev/drove"
)

func TestMain(m *testing.M) {
	drove.Main()
	os.Exit(m.Run())
}

// startedWriter keeps what run prints and closes stop once every job has
// reported progress: a job stopped before it began would end Cancelled,
// which says nothing of the graceful stop under test.
type startedWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	jobs []string
	stop chan struct{}
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.stop != nil {
		for _, j := range w.jobs {
			if !strings.Contains(w.buf.String(), j) {
				return n, err
			}
		}
		close(w.stop)
		w.stop = nil
	}
	return n, err
}

func TestLongRun(t *testing.T) {
	stop := make(chan struct{})
	out := &startedWriter{jobs: []string{"job 1: ", "job 2: "}, stop: stop}
	if err := run(t.Context(), out, 2, stop); err != nil {
		t.Fatal(err)
	}
	done := regexp.MustCompile(`job \d Finished after [1-9]\d* steps, best \d+, <nil>`)
	out.mu.Lock()
	defer out.mu.Unlock()
	if got := len(done.FindAllString(out.buf.String(), -1)); got != 2 {
		t.Errorf("%d gracefully finished jobs in\n%s", got, out.buf.String())
	}
}
