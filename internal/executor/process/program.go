package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/jobdir"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/internal/worker"
)

// dir returns slot's job directory, made on first use and reused by the
// jobs that run in the slot after it.
func (e *Executor) dir(slot int) (*jobdir.Dir, error) {
	e.mu.Lock()
	d := e.dirs[slot]
	e.mu.Unlock()
	if d != nil {
		return d, nil
	}
	d, err := jobdir.Make(filepath.Join(e.cfg.Dir, fmt.Sprintf("slot-%d", slot)), e.cfg.Blobs, e.cfg.Depends)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.dirs[slot] = d
	e.mu.Unlock()
	return d, nil
}

// runProgram runs the program once for r in slot: its exit code is the
// result (a non-zero exit is a result, not a failure), with its stdout
// and stderr. A program killed by a signal fails, or is Killed if it was
// asked to stop.
func (e *Executor) runProgram(ctx context.Context, r *sched.Run, slot int) sched.Result {
	args, err := wire.ParseStrings(r.Task.Input)
	if err != nil {
		return sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("drove: program arguments: %w", err)}
	}
	d, err := e.dir(slot)
	if err != nil {
		return sched.Result{Outcome: sched.Failed, Err: err}
	}
	cmd := exec.Command(e.cfg.Program, args...)
	cmd.Dir = d.Path
	cmd.Env = append(append(os.Environ(), e.cfg.Env...), "PATH="+d.Path+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout = d.Stdout
	cmd.Stderr = d.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sched.Result{Outcome: sched.Failed, Err: fmt.Errorf("drove: starting %s: %w", e.cfg.Program, err), Start: start, End: time.Now()}
	}
	g := proc.Group(cmd.Process.Pid)
	e.started(slot, g)
	_, stopped := e.wait(ctx, g, cmd.Wait)
	end := time.Now()
	e.ended(slot, g)

	res := sched.Result{Start: start, End: end, Stdout: worker.TakeOutput(d.Stdout), Stderr: worker.TakeOutput(d.Stderr), Sent: int64(len(r.Task.Input))}
	res.Received = int64(len(res.Stdout) + len(res.Stderr))
	code, sig := proc.StateOf(cmd.ProcessState)
	ending := proc.End{Code: code, Signal: sig, Exited: true, Stderr: res.Stderr}
	if stopped {
		ending.Stopped = context.Cause(ctx)
	}
	proc.Classify(&res, ending, proc.Rules{NonZeroIsResult: true, StatusAfterStop: true})
	return res
}
