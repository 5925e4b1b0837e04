package local_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/worker"
)

func init() {
	registry.Register(&registry.Func{Name: "test.square", In: "int", Out: "int", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		return in, nil
	}})
}

// TestMain makes the test binary its own worker: the executor starts it
// with the worker environment, and it then serves jobs instead of tests.
func TestMain(m *testing.M) {
	registry.Seal()
	if worker.IsWorker() {
		os.Exit(worker.Main())
	}
	os.Exit(m.Run())
}

// A worker whose registry differs from the client's never runs a job: the
// executor refuses it at the handshake. The test binary is the worker here;
// the client claims another fingerprint, as a client built from other code
// would.
func TestFingerprintMismatchRefused(t *testing.T) {
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	_, err := local.New(t.Context(), local.Config{
		Slots:       1,
		Func:        "test.square",
		Fingerprint: "0123456789abcdef01234567",
		Dir:         t.TempDir(),
	}, s)
	if !errors.Is(err, local.ErrFingerprint) {
		t.Fatalf("got %v, want ErrFingerprint", err)
	}
}

func TestUnknownFunctionInWorker(t *testing.T) {
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	_, err := local.New(t.Context(), local.Config{
		Slots: 1,
		Func:  "no.such.function",
		Dir:   t.TempDir(),
		// The right fingerprint: the worker gets to setup and refuses there.
		Fingerprint: registry.Fingerprint(),
	}, s)
	if err == nil {
		t.Fatal("a worker accepted an unknown function")
	}
}

// The counterpart of the two above: the same worker with the right
// fingerprint and a registered function is accepted, so their refusals
// come from the handshake, not from a worker that cannot start.
func TestWorkerAccepted(t *testing.T) {
	s := sched.New(sched.Config{})
	defer s.Close(t.Context())
	e, err := local.New(t.Context(), local.Config{
		Slots:       1,
		Func:        "test.square",
		Fingerprint: registry.Fingerprint(),
		Dir:         t.TempDir(),
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// doneRecorder is a Reporter that records what Done is given.
type doneRecorder struct {
	mu   sync.Mutex
	done []sched.Result
}

func (d *doneRecorder) Started(*sched.Run, time.Time)  {}
func (d *doneRecorder) Provisional(*sched.Run, []byte) {}
func (d *doneRecorder) Done(_ *sched.Run, res sched.Result) {
	d.mu.Lock()
	d.done = append(d.done, res)
	d.mu.Unlock()
}

// TestStartAfterClose: a run given to a closed executor of functions is
// reported Lost before Start returns, so no goroutine is left behind to
// report it.
func TestStartAfterClose(t *testing.T) {
	rec := &doneRecorder{}
	e, err := local.New(t.Context(), local.Config{
		Slots:       1,
		Func:        "test.square",
		Fingerprint: registry.Fingerprint(),
		Dir:         t.TempDir(),
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.Start(&sched.Run{Task: &sched.Task{ID: 1}})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.done) != 1 || rec.done[0].Outcome != sched.Lost || !errors.Is(rec.done[0].Err, local.ErrClosed) {
		t.Errorf("reported %+v by the time Start returned, want one Lost with ErrClosed", rec.done)
	}
}
