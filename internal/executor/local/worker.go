package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/internal/worker"
)

// ErrFingerprint is wrapped by the error for a worker whose function
// registry differs from the client's: it was built from other code, and
// never runs a job.
var ErrFingerprint = errors.New("drove: worker registry fingerprint mismatch")

// workerProc is a warm worker process serving one slot.
type workerProc struct {
	e    *Executor
	cmd  *exec.Cmd
	wmu  sync.Mutex
	w    *wire.Writer
	in   *os.File // our end of its fd 3
	r    *wire.Reader
	out  *os.File // our end of its fd 4
	pid  int
	runs uint64 // run ids, guarded by e.mu

	// exited is closed by the reader once the process has been waited for;
	// only the reader waits, as os/exec allows one Wait.
	exited  chan struct{}
	waitErr error

	// Guarded by e.mu.
	run   *sched.Run
	runID uint64
}

func (e *Executor) startWorker(ctx context.Context, s *slot) (*workerProc, error) {
	jobsR, jobsW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		jobsR.Close()
		jobsW.Close()
		return nil, err
	}
	cmd := exec.Command(e.cfg.Executable)
	cmd.Dir = s.dir
	cmd.Env = append(append(os.Environ(), e.cfg.Env...), worker.EnvMode+"=1")
	if os.Getenv("GORACE") == "" {
		// A binary built with -race sleeps a second at exit unless told
		// not to; workers exit at every Close.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	cmd.ExtraFiles = []*os.File{jobsR, resW} // fds 3 and 4
	// Its own process group: a terminal's Ctrl-C reaches the client, which
	// stops jobs in order, not every worker at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	jobsR.Close()
	resW.Close()
	if err != nil {
		jobsW.Close()
		resR.Close()
		return nil, fmt.Errorf("drove: starting worker %s: %w", e.cfg.Executable, err)
	}
	w := &workerProc{e: e, cmd: cmd, in: jobsW, w: wire.NewWriter(jobsW), out: resR, r: wire.NewReader(resR, 0), pid: cmd.Process.Pid, exited: make(chan struct{})}
	if err := w.handshake(ctx, s); err != nil {
		w.signal(syscall.SIGKILL)
		w.in.Close()
		w.out.Close()
		_ = cmd.Wait()
		return nil, err
	}
	e.wg.Add(1)
	go w.read(s)
	return w, nil
}

func (w *workerProc) handshake(ctx context.Context, s *slot) error {
	e := w.e
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			m, err := w.r.Read()
			if err != nil {
				return fmt.Errorf("drove: worker %s did not say hello: %w%s", e.cfg.Executable, err, stderrNote(s))
			}
			hello, ok := m.(*wire.Hello)
			if !ok {
				return fmt.Errorf("drove: worker sent %s before hello", m.Type())
			}
			if hello.Version != wire.Version {
				return fmt.Errorf("drove: worker speaks protocol version %d, this client %d", hello.Version, wire.Version)
			}
			if hello.Fingerprint != e.cfg.Fingerprint {
				return fmt.Errorf("%w: worker %s has %s, client has %s (was the binary rebuilt or replaced?)",
					ErrFingerprint, e.cfg.Executable, hello.Fingerprint, e.cfg.Fingerprint)
			}
			if err := w.w.Send(&wire.Setup{Func: e.cfg.Func, Setup: e.cfg.Setup}); err != nil {
				return fmt.Errorf("drove: sending setup: %w", err)
			}
			m, err = w.r.Read()
			if err != nil {
				return fmt.Errorf("drove: worker died during setup: %w%s", err, stderrNote(s))
			}
			ready, ok := m.(*wire.Ready)
			if !ok {
				return fmt.Errorf("drove: worker sent %s instead of ready", m.Type())
			}
			if ready.Err != "" {
				return fmt.Errorf("drove: %s", ready.Err)
			}
			return nil
		}()
	}()
	timer := time.NewTimer(e.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		w.signal(syscall.SIGKILL)
		<-done
		return ctx.Err()
	case <-timer.C:
		w.signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("drove: worker did not start within %v", e.cfg.StartTimeout)
	}
}

func stderrNote(s *slot) string {
	if b := takeOutput(s.stderr); len(b) > 0 {
		return "; its stderr: " + string(tail(b, 2048))
	}
	return ""
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// send hands r to the worker.
func (e *Executor) send(s *slot, r *sched.Run) {
	w := s.w
	e.mu.Lock()
	w.runs++
	w.run, w.runID = r, w.runs
	id := w.runID
	if r.Cause() != nil && s.stop == nil {
		s.stop = e.newEscalation(s, r)
	}
	e.mu.Unlock()
	w.wmu.Lock()
	err := w.w.Send(&wire.Run{ID: id, Input: r.Task.Input})
	w.wmu.Unlock()
	if err != nil {
		// The reader sees the worker die and reports the run.
		w.signal(syscall.SIGKILL)
	}
}

func (w *workerProc) cancel(r *sched.Run) {
	w.e.mu.Lock()
	id, cur := w.runID, w.run
	w.e.mu.Unlock()
	if cur != r {
		return
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.w.Send(&wire.Cancel{ID: id})
}

func (w *workerProc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-w.pid, sig)
}

// shutdown ends an idle worker: closing its input makes it run its cleanup
// and exit.
func (w *workerProc) shutdown(ctx context.Context) error {
	w.in.Close()
	select {
	case <-w.exited:
		if w.waitErr != nil {
			return fmt.Errorf("drove: worker %d: %w", w.pid, w.waitErr)
		}
		return nil
	case <-ctx.Done():
		w.signal(syscall.SIGKILL)
		<-w.exited
		return ctx.Err()
	}
}

// wait reaps the process; only the reader goroutine calls it.
func (w *workerProc) wait() {
	w.waitErr = w.cmd.Wait()
	w.out.Close()
	close(w.exited)
}

// read handles the worker's frames until it exits.
func (w *workerProc) read(s *slot) {
	e := w.e
	defer e.wg.Done()
	for {
		m, err := w.r.Read()
		if err != nil {
			w.died(s, err)
			return
		}
		switch m := m.(type) {
		case *wire.Result:
			e.mu.Lock()
			r := w.run
			ok := r != nil && m.ID == w.runID
			w.run = nil
			e.mu.Unlock()
			if !ok {
				w.signal(syscall.SIGKILL)
				continue // died() reports whatever is running
			}
			res := resultOf(m)
			res.Sent = int64(len(r.Task.Input))
			res.Received = int64(len(m.Output) + len(m.Stdout) + len(m.Stderr))
			keep := m.Kind != wire.ResultPanic
			if !keep {
				// The worker exits after a panic; replace it.
				w.in.Close()
			}
			e.finish(s, r, res, keep)
			if !keep {
				w.reap()
				return
			}
		case *wire.Provisional:
			e.mu.Lock()
			r := w.run
			ok := r != nil && m.ID == w.runID
			e.mu.Unlock()
			if ok {
				e.rep.Provisional(r, m.Output)
			}
		case *wire.File:
			if err := e.receiveFile(m); err != nil {
				e.log.Warn("file from job refused", "file", m.Name, "err", err)
			}
		default:
			e.log.Warn("unexpected frame from worker", "type", m.Type())
			w.signal(syscall.SIGKILL)
		}
	}
}

func (e *Executor) receiveFile(m *wire.File) error {
	if e.cfg.Files == nil {
		return errors.New("this cluster takes no files")
	}
	if m.Offset > 1<<62 {
		return errors.New("offset out of range")
	}
	return e.cfg.Files.WriteChunk(m.Name, os.FileMode(m.Mode)&os.ModePerm, int64(m.Offset), m.Data, m.Last)
}

func (w *workerProc) reap() {
	_, _ = io.Copy(io.Discard, w.out)
	w.wait()
}

// died handles the end of the worker's frame stream: the process exited or
// was killed, or sent garbage.
func (w *workerProc) died(s *slot, readErr error) {
	e := w.e
	if !errors.Is(readErr, io.EOF) && !errors.Is(readErr, os.ErrClosed) {
		w.signal(syscall.SIGKILL)
	}
	w.in.Close()
	w.wait()
	waitErr := w.waitErr
	e.mu.Lock()
	r := w.run
	w.run = nil
	e.mu.Unlock()
	if r == nil {
		// Idle worker died (or Close shut it down): retire the slot.
		e.mu.Lock()
		for i, is := range e.idle {
			if is == s {
				e.idle = append(e.idle[:i], e.idle[i+1:]...)
				e.count--
				s.release()
				break
			}
		}
		e.mu.Unlock()
		return
	}
	stdout, stderr := takeOutput(s.stdout), takeOutput(s.stderr)
	res := sched.Result{Outcome: sched.Failed, Stdout: stdout, Stderr: stderr, End: time.Now(), Sent: int64(len(r.Task.Input))}
	xe := exitError(waitErr, w.cmd.ProcessState, stderr)
	if errors.Is(readErr, wire.ErrMalformed) || errors.Is(readErr, wire.ErrTooLarge) {
		res.Err = fmt.Errorf("drove: worker protocol error: %w", readErr)
	} else {
		res.Err = xe
	}
	if r.Cause() != nil {
		res.Outcome = sched.Killed
	}
	e.finish(s, r, res, false)
}

func exitError(waitErr error, ps *os.ProcessState, stderr []byte) *joberr.ExitError {
	xe := &joberr.ExitError{Code: -1, Stderr: tail(stderr, 4096)}
	if ps == nil {
		return xe
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		xe.Signal = ws.Signal()
		return xe
	}
	xe.Code = ps.ExitCode()
	return xe
}

func resultOf(m *wire.Result) sched.Result {
	res := sched.Result{
		Output: m.Output,
		Stdout: m.Stdout,
		Stderr: m.Stderr,
		Start:  time.Unix(0, m.Start),
		End:    time.Unix(0, m.End),
	}
	switch m.Kind {
	case wire.ResultOK:
		res.Outcome = sched.OK
	case wire.ResultError:
		res.Outcome = sched.Failed
		res.Err = &joberr.RemoteError{Msg: m.Err}
	case wire.ResultPanic:
		res.Outcome = sched.Failed
		res.Err = &joberr.PanicError{Value: m.Err, Stack: m.Stack}
	}
	return res
}
