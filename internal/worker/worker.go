// Package worker is the runtime behind drove.Main in worker mode: it serves
// one computation's jobs over the framed protocol of package wire, on file
// descriptors 3 (frames in) and 4 (frames out) inherited from the executor
// that started it.
//
// A worker runs one job at a time. What a job writes to file descriptors 1
// and 2 lands in files the executor gave it (opened for appending); after
// each job the worker reads them back into the result and truncates them, so
// each job gets exactly its own output, and a crash leaves the crashing job's
// output for the executor to read.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/wire"
)

// EnvMode is the environment variable that starts a drove binary as a
// worker. It is set by executors, never by users.
const EnvMode = "DROVE_WORKER"

// Descriptors of the protocol streams in a worker process.
const (
	FDIn  = 3
	FDOut = 4
)

// IsWorker reports whether this process was started as a worker.
func IsWorker() bool { return os.Getenv(EnvMode) == "1" }

// Main serves the worker protocol and returns the exit code.
func Main() int {
	in := os.NewFile(FDIn, "drove-in")
	out := os.NewFile(FDOut, "drove-out")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "drove: worker started without its protocol descriptors")
		return 2
	}
	err := Serve(context.Background(), in, out, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drove: worker:", err)
		return 1
	}
	return 0
}

// Serve speaks the worker side of the protocol on in and out until in ends.
// stdout and stderr are the job output files, captured after each job when
// they are regular files.
func Serve(ctx context.Context, in io.Reader, out io.Writer, stdout, stderr *os.File) error {
	s := &server{
		r:        wire.NewReader(in, 0),
		w:        wire.NewWriter(out),
		stdout:   captureOf(stdout),
		stderr:   captureOf(stderr),
		skip:     map[uint64]bool{},
		queued:   map[uint64]bool{},
		answered: map[uint64]bool{},
		sending:  map[string][]chan string{},
		readDone: make(chan struct{}),
	}
	if err := s.send(&wire.Hello{Version: wire.Version, Fingerprint: registry.Fingerprint(), PID: uint64(os.Getpid())}); err != nil {
		return err
	}
	m, err := s.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil // the executor refused us after Hello
		}
		return fmt.Errorf("reading setup: %w", err)
	}
	setup, ok := m.(*wire.Setup)
	if !ok {
		return fmt.Errorf("expected setup, got %s", m.Type())
	}
	fn, ok := registry.Lookup(setup.Func)
	if !ok {
		return s.send(&wire.Ready{Err: fmt.Sprintf("function %q is not registered in this binary", setup.Func)})
	}
	var cleanup func(context.Context) error
	if setup.Setup != "" {
		hook, ok := registry.LookupHook(setup.Setup)
		if !ok {
			return s.send(&wire.Ready{Err: fmt.Sprintf("setup %q is not registered in this binary", setup.Setup)})
		}
		state, c, err := runHook(ctx, hook)
		if err != nil {
			return s.send(&wire.Ready{Err: fmt.Sprintf("setup %q: %v", setup.Setup, err)})
		}
		s.state, cleanup = state, c
		s.truncateOutput() // setup's own output belongs to no job
	}
	if err := s.send(&wire.Ready{}); err != nil {
		return err
	}
	err = s.loop(ctx, fn)
	if cleanup != nil {
		if cerr := cleanup(ctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup %q: %w", setup.Setup, cerr))
		}
	}
	return err
}

func runHook(ctx context.Context, h registry.Hook) (state any, cleanup func(context.Context) error, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	return h(ctx)
}

type server struct {
	r   *wire.Reader
	wmu sync.Mutex
	w   *wire.Writer
	// held: frames written to w but not flushed (see sendResult); flush
	// is the timer that bounds how long they wait.
	held   bool
	flush  *time.Timer
	stdout *os.File // nil when not capturing
	stderr *os.File
	state  any

	mu      sync.Mutex
	current uint64
	cancel  context.CancelFunc
	skip    map[uint64]bool // runs cancelled while queued
	// queued are the runs read but not begun; answered, those of them
	// already reported Skipped (a Skip answered at once, so that a job
	// taken back from behind a long one runs elsewhere now, not when the
	// long one ends).
	queued   map[uint64]bool
	answered map[uint64]bool
	// sending holds, by name, the SendFile calls waiting for the
	// executor's FileDone, oldest first.
	sending map[string][]chan string
	// readDone is closed when the executor's frames end: no FileDone
	// comes after it.
	readDone chan struct{}
}

func captureOf(f *os.File) *os.File {
	if f == nil {
		return nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return f
}

func (s *server) send(m wire.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.held = false
	return s.w.Send(m)
}

// maxHold bounds how long a finished job's result may wait in the buffer
// for the next one's.
const maxHold = 100 * time.Microsecond

// sendResult sends a job's result. With more runs in hand (hold), the
// result may wait for the next job's, so that short jobs' results share
// one write and the executor answers them with one write of new runs: a
// pipe write that wakes another process is most of a short job's cost.
// The timer flushes a held result after maxHold, so a long next job never
// keeps a finished one's result back.
func (s *server) sendResult(m *wire.Result, hold bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !hold {
		s.held = false
		return s.w.Send(m)
	}
	if err := s.w.Write(m); err != nil {
		return err
	}
	if !s.held {
		s.held = true
		if s.flush == nil {
			s.flush = time.AfterFunc(maxHold, s.flushHeld)
		} else {
			s.flush.Reset(maxHold)
		}
	}
	return nil
}

func (s *server) flushHeld() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.held {
		s.held = false
		_ = s.w.Flush() // a broken pipe shows in the next send
	}
}

// loop reads frames on its own goroutine, so a Cancel can reach a running
// job, and runs jobs one at a time on this one.
func (s *server) loop(ctx context.Context, fn *registry.Func) error {
	// The executor queues at most a couple of runs per worker; the buffer
	// only keeps the reader from blocking behind a long job, so Cancel
	// frames are always seen.
	runs := make(chan *wire.Run, 64)
	readErr := make(chan error, 1)
	go func() {
		defer close(runs)
		defer close(s.readDone)
		for {
			m, err := s.r.Read()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr <- err
				}
				return
			}
			switch m := m.(type) {
			case *wire.Run:
				s.mu.Lock()
				s.queued[m.ID] = true
				s.mu.Unlock()
				runs <- m
			case *wire.Cancel:
				s.mu.Lock()
				if s.current == m.ID && s.cancel != nil {
					s.cancel()
				} else {
					s.skip[m.ID] = true // still queued: never start it
				}
				s.mu.Unlock()
			case *wire.Skip:
				s.mu.Lock()
				if s.queued[m.ID] {
					// Not begun: never start it, and say so now.
					delete(s.queued, m.ID)
					s.answered[m.ID] = true
					s.mu.Unlock()
					// A broken pipe shows in the loop's next send.
					_ = s.send(&wire.Result{ID: m.ID, Kind: wire.ResultSkipped})
					continue
				}
				s.mu.Unlock()
				// Begun or over: it goes on, and its result comes (or
				// came: the send flushes any result held back) before
				// this answer, which the executor needs to know that the
				// job it recalled is running after all.
				_ = s.send(&wire.Begun{ID: m.ID})
			case *wire.FileDone:
				s.mu.Lock()
				if ws := s.sending[m.Name]; len(ws) > 0 {
					ws[0] <- m.Err // buffered: never blocks
					if len(ws) == 1 {
						delete(s.sending, m.Name)
					} else {
						s.sending[m.Name] = ws[1:]
					}
				}
				s.mu.Unlock()
			default:
				readErr <- fmt.Errorf("unexpected %s frame", m.Type())
				return
			}
		}
	}()
	defer s.flushHeld()
	for run := range runs {
		s.mu.Lock()
		skip, answered := s.skip[run.ID], s.answered[run.ID]
		delete(s.skip, run.ID)
		delete(s.answered, run.ID)
		if !answered {
			// Begun from here on: a Skip now lets it run.
			delete(s.queued, run.ID)
			if !skip {
				s.current = run.ID
			}
		}
		s.mu.Unlock()
		if answered {
			continue
		}
		if skip {
			if err := s.send(&wire.Result{ID: run.ID, Kind: wire.ResultSkipped}); err != nil {
				return err
			}
			continue
		}
		res, panicked := s.runJob(ctx, fn, run)
		// Hold the result only while two runs wait: with one, the
		// executor must hear now to send more before the worker runs dry.
		if err := s.sendResult(res, !panicked && len(runs) >= 2); err != nil {
			return err
		}
		if panicked {
			// The function's state may be broken; the executor replaces us.
			return nil
		}
	}
	select {
	case err := <-readErr:
		return err
	default:
		return nil
	}
}

func (s *server) runJob(ctx context.Context, fn *registry.Func, run *wire.Run) (res *wire.Result, panicked bool) {
	jctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.current, s.cancel = run.ID, cancel
	if s.skip[run.ID] {
		// Cancelled as it began, before it had a cancel func.
		delete(s.skip, run.ID)
		cancel()
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.current, s.cancel = 0, nil
		s.mu.Unlock()
		cancel()
	}()
	jctx = context.WithValue(jctx, jobKey{}, &Job{ID: run.ID, s: s, ctx: jctx})

	res = &wire.Result{ID: run.ID, Start: time.Now().UnixNano()}
	func() {
		defer func() {
			if v := recover(); v != nil {
				res.Kind = wire.ResultPanic
				res.Err = fmt.Sprint(v)
				res.Stack = string(debug.Stack())
				panicked = true
			}
		}()
		out, err := fn.Call(jctx, run.Input)
		if err != nil {
			res.Kind = wire.ResultError
			res.Err = err.Error()
			return
		}
		res.Output = out
	}()
	res.End = time.Now().UnixNano()
	res.Stdout = TakeOutput(s.stdout)
	res.Stderr = TakeOutput(s.stderr)
	return res, panicked
}

func (s *server) truncateOutput() {
	TakeOutput(s.stdout)
	TakeOutput(s.stderr)
}

// TakeOutput returns what was written to an output file and empties it.
// The file is opened for appending, so the next write starts again at
// offset 0. Workers call it after each job; executors for the output a
// crashed worker left. A nil file gives nil.
func TakeOutput(f *os.File) []byte {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	b := make([]byte, fi.Size())
	n, _ := f.ReadAt(b, 0)
	_ = f.Truncate(0)
	return b[:n]
}

type jobKey struct{}

// Job is the running job, as seen from inside a function through its
// context.
type Job struct {
	ID  uint64
	s   *server
	ctx context.Context // the job's
}

// FromContext returns the job running with ctx, or nil outside a worker.
func FromContext(ctx context.Context) *Job {
	j, _ := ctx.Value(jobKey{}).(*Job)
	return j
}

// State returns the value the computation's setup hook returned, or nil.
func (j *Job) State() any { return j.s.state }

// Provisional sends an intermediate result.
func (j *Job) Provisional(out []byte) error {
	return j.s.send(&wire.Provisional{ID: j.ID, Output: out})
}

// fileChunk is the size of the pieces SendFile streams a file in.
const fileChunk = 1 << 20

// ErrFileRefused is wrapped by SendFile's error for a file the client did
// not take (a name it refuses, a size over its limit, a full disk).
var ErrFileRefused = errors.New("drove: the client refused the file")

// SendFile streams the file at path to the client under name, and waits
// until the client has it or refused it.
func (j *Job) SendFile(path, name string) error {
	done := make(chan string, 1)
	j.s.mu.Lock()
	j.s.sending[name] = append(j.s.sending[name], done)
	j.s.mu.Unlock()
	if err := j.sendFile(path, name); err != nil {
		j.s.forget(name, done)
		return err
	}
	select {
	case msg := <-done:
		if msg != "" {
			return fmt.Errorf("%w: %s", ErrFileRefused, msg)
		}
		return nil
	case <-j.s.readDone:
		return errors.New("drove: the executor went away before confirming the file")
	case <-j.ctx.Done():
		j.s.forget(name, done)
		return fmt.Errorf("drove: waiting for the client to confirm the file: %w", context.Cause(j.ctx))
	}
}

// forget drops a SendFile waiter that stopped waiting.
func (s *server) forget(name string, done chan string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := slices.DeleteFunc(s.sending[name], func(c chan string) bool { return c == done })
	if len(ws) == 0 {
		delete(s.sending, name)
	} else {
		s.sending[name] = ws
	}
}

func (j *Job) sendFile(path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	buf := make([]byte, fileChunk)
	var off uint64
	for {
		n, rerr := io.ReadFull(f, buf)
		last := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !last {
			return rerr
		}
		m := &wire.File{ID: j.ID, Name: name, Mode: uint32(fi.Mode().Perm()), Offset: off, Data: buf[:n], Last: last}
		if err := j.s.send(m); err != nil {
			return err
		}
		off += uint64(n)
		if last {
			return nil
		}
	}
}
