package drove_test

import (
	"errors"
	"testing"

	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/sched"
)

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
		Fingerprint: fingerprint(),
	}, s)
	if err == nil {
		t.Fatal("a worker accepted an unknown function")
	}
}
