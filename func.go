package drove

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"reflect"

	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/internal/worker"
)

// Function is a computation: a registered Go function from In to Out, or a
// program (In is its argument list, Out its exit code).
type Function[In, Out any] struct {
	name    string
	program string
	shell   bool
	encode  func(In) ([]byte, error)
	decode  func([]byte) (Out, error)
}

// Name returns the name the function was registered under, or the program's
// path.
func (f *Function[In, Out]) Name() string {
	switch {
	case f.program != "":
		return f.program
	case f.shell:
		return "shell"
	}
	return f.name
}

// Func registers fn under name and returns the computation to pass to
// NewCluster. Call it at package initialisation (in a package-level var or
// an init function), so that worker processes, which run the same
// initialisation, know the function too. Names are global to the program;
// registering a name twice panics.
//
// fn runs in a worker process. Its context is cancelled when the job is
// cancelled or times out. A returned error ends the job Terminated (only its
// text reaches the client); a panic does too, with a *[PanicError]. What fn
// writes to os.Stdout and os.Stderr is captured into the job.
func Func[In, Out any](name string, fn func(context.Context, In) (Out, error)) *Function[In, Out] {
	var outCodec gobCodec[Out]
	registry.Register(&registry.Func{
		Name: name,
		In:   typeName[In](),
		Out:  typeName[Out](),
		Call: func(ctx context.Context, in []byte) ([]byte, error) {
			v, err := gobDecode[In](in)
			if err != nil {
				return nil, fmt.Errorf("drove: decoding the job's input: %w", err)
			}
			res, err := fn(ctx, v)
			if err != nil {
				return nil, err
			}
			b, err := outCodec.encode(res)
			if err != nil {
				return nil, fmt.Errorf("drove: encoding the job's result: %w", err)
			}
			return b, nil
		},
	})
	var in gobCodec[In]
	return &Function[In, Out]{name: name, encode: in.encode, decode: gobDecode[Out]}
}

// Program returns a computation that runs the executable at path once per
// job, with the job's input as its arguments. The job's result is the exit
// code — a non-zero exit is a result, not an error — and its stdout and
// stderr are captured. A path without a slash is looked up in PATH; a
// missing or non-executable path is an error from NewCluster.
func Program(path string) *Function[[]string, int] {
	return &Function[[]string, int]{
		program: path,
		encode:  func(args []string) ([]byte, error) { return wire.AppendStrings(nil, args), nil },
		decode:  wire.ParseExitCode,
	}
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

func gobEncode[T any](v T) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gobDecode[T any](b []byte) (T, error) {
	var v T
	err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v)
	return v, err
}

// Setup is a per-worker setup hook with its state: it runs once in each
// worker before the worker's first job, and its value is what [Setup.State]
// returns inside jobs — data loaded once and kept in memory, as dispy's
// node_setup. The cleanup runs when the worker stops.
type Setup[S any] struct {
	name string
}

// NewSetup registers a setup hook under name. Like Func, call it at package
// initialisation; a duplicate name panics. cleanup may be nil.
func NewSetup[S any](name string, setup func(context.Context) (S, error), cleanup func(context.Context, S) error) *Setup[S] {
	registry.RegisterHook(name, func(ctx context.Context) (any, func(context.Context) error, error) {
		s, err := setup(ctx)
		if err != nil {
			return nil, nil, err
		}
		var c func(context.Context) error
		if cleanup != nil {
			c = func(ctx context.Context) error { return cleanup(ctx, s) }
		}
		return s, c, nil
	})
	return &Setup[S]{name: name}
}

// State returns the value the setup returned in this worker. It returns the
// zero value outside a job, or in a job of a cluster without this setup.
func (s *Setup[S]) State(ctx context.Context) S {
	var zero S
	j := worker.FromContext(ctx)
	if j == nil {
		return zero
	}
	v, _ := j.State().(S)
	return v
}

func (s *Setup[S]) setupName() string { return s.name }
