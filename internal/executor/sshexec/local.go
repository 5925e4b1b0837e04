package sshexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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
	// BaseFiles are copied into BaseDir before the first job that runs
	// there, when BaseDir is set (a workdir: see [Local]); without one the
	// files are already here. CleanupBase removes the copies at Close.
	BaseFiles   []string
	BaseDir     string
	CleanupBase bool
	// Shell runs the command lines; empty means /bin/sh.
	Shell string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Local runs shell commands on this machine, each in its own process group.
// It is GNU parallel's ":" login; internal/executor/local runs Go
// functions and fixed programs, not shell command lines with streamed
// output, so this small executor stands beside it.
//
// A job with a Dir is treated as on any host: a relative Dir is relative
// to the home directory (the login directory of an SSH host), Transfer
// files are copied into it and Return files copied back from it to the
// current directory, and Cleanup and RemoveDir remove the copies. A job
// without a Dir runs in the current directory, where its files already
// are: transfers and returns are no-ops and nothing is removed.
type Local struct {
	runner
	cfg LocalConfig
	rep Reporter

	baseOnce sync.Once
	baseDir  string // where the base files were copied; "" if not
	baseErr  error
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
	// Runs have stopped: baseDir is no longer written.
	l.baseOnce.Do(func() {})
	if l.cfg.CleanupBase && l.baseDir != "" {
		localCleanup(l.cfg.Logger, &Job{Transfer: l.cfg.BaseFiles, Cleanup: true}, l.baseDir)
	}
	return nil
}

// copyBase copies the base files into BaseDir, once.
func (l *Local) copyBase() error {
	l.baseOnce.Do(func() {
		if l.cfg.BaseDir == "" || len(l.cfg.BaseFiles) == 0 {
			return
		}
		dir, _, err := localTransfer(&Job{Dir: l.cfg.BaseDir, Transfer: l.cfg.BaseFiles})
		l.baseDir, l.baseErr = dir, err
	})
	return l.baseErr
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
	if err := l.copyBase(); err != nil {
		res.End = time.Now()
		res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: basefile: %w", err)
		return res
	}
	if j.Dir != "" {
		dir, n, err := localTransfer(j)
		res.Sent += n
		if err != nil {
			res.End = time.Now()
			res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: transfer: %w", err)
			return res
		}
		cmd.Dir = dir
		defer localCleanup(l.cfg.Logger, j, dir)
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
	if cmd.Dir != "" && len(j.Return) > 0 && cmd.ProcessState != nil {
		n, err := localReturn(j, cmd.Dir)
		res.Received += n
		if err != nil {
			res.Outcome, res.Err = sched.Failed, fmt.Errorf("sshexec: local: return: %w", err)
			return res
		}
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

// localDir returns the directory a job with Dir dir runs in: a relative dir
// is relative to the home directory, as it is to the login directory on an
// SSH host.
func localDir(dir string) (string, error) {
	if filepath.IsAbs(dir) {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, dir), nil
}

// localTransfer creates j's directory and copies j.Transfer into it,
// returning the directory and the bytes copied.
func localTransfer(j *Job) (string, int64, error) {
	dir, err := localDir(j.Dir)
	if err != nil {
		return "", 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	var sent int64
	for _, f := range j.Transfer {
		dst, src := paths(dir, f)
		n, err := copyLocal(src, dst)
		sent += n
		if err != nil {
			return dir, sent, err
		}
	}
	return dir, sent, nil
}

// localReturn copies j.Return from dir back to the current directory.
func localReturn(j *Job, dir string) (int64, error) {
	var got int64
	for _, f := range j.Return {
		src, dst := paths(dir, f)
		if i := strings.Index(dst, "/./"); i >= 0 {
			dst = dst[i+3:]
		}
		n, err := copyLocal(src, dst)
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// localCleanup removes the copies j made in dir, as on an SSH host.
func localCleanup(log *slog.Logger, j *Job, dir string) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if j.Cleanup {
		for _, f := range append(append([]string(nil), j.Transfer...), j.Return...) {
			copyPath, orig := paths(dir, f)
			if sameFile(copyPath, orig) {
				continue // an absolute path: the copy is the original
			}
			if err := os.Remove(copyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("sshexec: local: cleanup failed", "err", err)
			}
		}
	}
	if j.RemoveDir {
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("sshexec: local: removing workdir failed", "err", err)
		}
	}
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// copyLocal copies src to dst with src's permissions, through a temporary
// file so that an interrupted copy leaves no truncated dst. Copying a file
// onto itself (an absolute path) does nothing.
func copyLocal(src, dst string) (int64, error) {
	if sameFile(src, dst) {
		return 0, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".drove-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), fi.Mode().Perm())
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return n, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return n, nil
}
