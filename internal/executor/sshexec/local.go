package sshexec

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

// LocalConfig configures a [Local] executor.
type LocalConfig struct {
	// Slots is how many commands run at once; zero means the CPU count.
	Slots int
	// NonZeroIsResult: see [Config.NonZeroIsResult].
	NonZeroIsResult bool
	// KillGrace is how long a stopped command's process group has between
	// SIGTERM and SIGKILL. Zero means 2 seconds.
	KillGrace time.Duration
	// Shell runs the command lines; empty means /bin/sh.
	Shell string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Local runs shell commands on this machine, each in its own process group.
// It is GNU parallel's ":" login; internal/executor/local runs Go
// functions and fixed programs, not shell command lines with streamed
// output, so this small executor stands beside it. Transfers and returns
// are no-ops: the files are already here.
type Local struct {
	runner
	cfg LocalConfig
	rep Reporter
}

var _ sched.Executor = (*Local)(nil)

// NewLocal returns a local shell executor reporting to rep.
func NewLocal(cfg LocalConfig, rep Reporter) *Local {
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 2 * time.Second
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	l := &Local{cfg: cfg, rep: rep}
	l.execute, l.report = l.runCommand, rep.Done
	return l
}

// Slots returns the number of commands run at once.
func (l *Local) Slots() int { return l.cfg.Slots }

// Close stops all runs and waits for them.
func (l *Local) Close(ctx context.Context) error {
	if err := l.stop(ctx); err != nil {
		return fmt.Errorf("sshexec: local: close: %w", err)
	}
	return nil
}

func (l *Local) runCommand(ctx context.Context, r *sched.Run, slot int) sched.Result {
	j := jobOf(r.Task)
	stdout, stderr, collect := outputs(j)
	command := j.command(r.Node, slot)
	res := sched.Result{Start: time.Now(), Sent: int64(len(command) + len(j.Stdin))}
	cmd := exec.Command(l.cfg.Shell, "-c", command)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if j.Stdin != nil {
		cmd.Stdin = bytes.NewReader(j.Stdin)
	}
	if len(j.Env) > 0 {
		cmd.Env = append(os.Environ(), j.Env...)
	}
	if j.Dir != "" {
		if err := os.MkdirAll(j.Dir, 0o755); err != nil {
			res.End = time.Now()
			res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: %w", err)
			return res
		}
		cmd.Dir = j.Dir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background process that left the group but kept the output pipes
	// must not hold the run forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		res.End = time.Now()
		res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: %w", err)
		return res
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	killed := false
	select {
	case werr = <-waited:
	case <-ctx.Done():
		killed = true
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case werr = <-waited:
		case <-time.After(l.cfg.KillGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			werr = <-waited
		}
	}
	res.End = time.Now()
	// Whatever the command left running in its group goes with it.
	syscall.Kill(-pgid, syscall.SIGKILL)
	collect(&res)
	if killed {
		res.Outcome, res.Err = sched.Killed, stopped(context.Cause(ctx))
		return res
	}
	// Wait's error may be exec.ErrWaitDelay for a command that exited fine;
	// the process state is the truth.
	if cmd.ProcessState == nil {
		res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: %w", werr)
		return res
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	code, sig := ws.ExitStatus(), syscall.Signal(0)
	if ws.Signaled() {
		code, sig = -1, ws.Signal()
	}
	exitResult(&res, code, sig, l.cfg.NonZeroIsResult)
	return res
}
