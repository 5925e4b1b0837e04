package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/internal/worker"
)

// runProgram runs the program once for r in slot s and reports the result:
// its exit code (a non-zero exit is a result, not a failure), stdout and
// stderr. A program killed by a signal fails, unless it was asked to stop.
func (e *Executor) runProgram(s *slot, r *sched.Run) {
	args, err := wire.ParseStrings(r.Task.Input)
	if err != nil {
		e.finishProgram(s, r, sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("drove: program arguments: %w", err)})
		return
	}
	cmd := exec.Command(e.cfg.Program, args...)
	cmd.Dir = s.dir
	cmd.Env = append(append(os.Environ(), e.cfg.Env...), "PATH="+s.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		e.finishProgram(s, r, sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("drove: starting %s: %w", e.cfg.Program, err), Start: start, End: time.Now()})
		return
	}
	e.mu.Lock()
	s.proc = cmd.Process
	if r.Cause() != nil && s.stop == nil {
		s.stop = e.newEscalation(s, r)
	}
	e.mu.Unlock()
	waitErr := cmd.Wait()
	end := time.Now()
	e.mu.Lock()
	s.proc = nil
	e.mu.Unlock()
	// The group may hold children that outlived the program; they must not
	// hold the slot's output files or leak into the next job.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	res := sched.Result{Start: start, End: end, Stdout: worker.TakeOutput(s.stdout), Stderr: worker.TakeOutput(s.stderr), Sent: int64(len(r.Task.Input))}
	res.Received = int64(len(res.Stdout) + len(res.Stderr))
	var xe *exec.ExitError
	switch {
	case waitErr == nil:
		res.Outcome = sched.OK
		res.Output = wire.AppendExitCode(nil, 0)
	case errors.As(waitErr, &xe) && !xe.Sys().(syscall.WaitStatus).Signaled():
		res.Outcome = sched.OK
		res.Output = wire.AppendExitCode(nil, xe.ExitCode())
	default:
		res.Outcome = sched.Failed
		if r.Cause() != nil {
			res.Outcome = sched.Killed
		}
		res.Err = exitError(cmd.ProcessState, res.Stderr)
	}
	e.finishProgram(s, r, res)
}
