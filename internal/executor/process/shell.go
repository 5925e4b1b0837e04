package process

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
	"strings"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
)

// copyBase copies the base files into BaseDir, once.
func (e *Executor) copyBase() error {
	e.baseOnce.Do(func() {
		if e.cfg.BaseDir == "" || len(e.cfg.BaseFiles) == 0 {
			return
		}
		dir, _, err := localTransfer(&Job{Dir: e.cfg.BaseDir, Transfer: e.cfg.BaseFiles})
		e.baseDir, e.baseErr = dir, err
	})
	return e.baseErr
}

// runShell runs r's shell job in slot.
func (e *Executor) runShell(ctx context.Context, r *sched.Run, slot int) sched.Result {
	j := JobOf(r.Task)
	stdout, stderr, collect := Outputs(j)
	command := j.CommandLine(r.Node, slot)
	res := sched.Result{Start: time.Now(), Sent: int64(len(command) + len(j.Stdin))}
	cmd := exec.Command(e.cfg.Shell, "-c", command)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if j.Stdin != nil {
		cmd.Stdin = bytes.NewReader(j.Stdin)
	}
	if len(j.Env) > 0 || len(e.cfg.Env) > 0 {
		cmd.Env = append(append(os.Environ(), e.cfg.Env...), j.Env...)
	}
	if err := e.copyBase(); err != nil {
		res.End = time.Now()
		res.Outcome, res.Err = sched.Failed, fmt.Errorf("drove: local: basefile: %w", err)
		return res
	}
	if j.Dir != "" {
		dir, n, err := localTransfer(j)
		res.Sent += n
		if err != nil {
			res.End = time.Now()
			res.Outcome, res.Err = sched.Failed, fmt.Errorf("drove: local: transfer: %w", err)
			return res
		}
		cmd.Dir = dir
		defer localCleanup(e.log, j, dir)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background process that left the group but kept the output pipes
	// must not hold the run forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		res.End = time.Now()
		res.Outcome, res.Err = sched.Failed, fmt.Errorf("drove: local: %w", err)
		return res
	}
	g := proc.Group(cmd.Process.Pid)
	e.started(slot, g)
	werr, stopped := e.wait(ctx, g, cmd.Wait)
	res.End = time.Now()
	// Whatever the command left running in its group goes with it.
	e.ended(slot, g)
	collect(&res)
	// Wait's error may be exec.ErrWaitDelay for a command that exited fine;
	// the process state is the truth.
	code, sig := proc.StateOf(cmd.ProcessState)
	ending := proc.End{Code: code, Signal: sig, Exited: cmd.ProcessState != nil, Stderr: res.Stderr}
	switch {
	case stopped:
		ending.Stopped = context.Cause(ctx)
	case cmd.ProcessState == nil:
		ending.Err = fmt.Errorf("drove: local: %w", werr)
	case cmd.Dir != "" && len(j.Return) > 0:
		n, err := localReturn(j, cmd.Dir)
		res.Received += n
		if err != nil {
			ending.Err = fmt.Errorf("drove: local: return: %w", err)
		}
	}
	proc.Classify(&res, ending, proc.Rules{NonZeroIsResult: e.cfg.NonZeroIsResult})
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
		dst, src := Paths(dir, f)
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
		src, dst := Paths(dir, f)
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
			copyPath, orig := Paths(dir, f)
			if sameFile(copyPath, orig) {
				continue // an absolute path: the copy is the original
			}
			if err := os.Remove(copyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("drove: local: cleanup failed", "err", err)
			}
		}
	}
	if j.RemoveDir {
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("drove: local: removing workdir failed", "err", err)
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
	var n int64
	err = atomicfile.WriteFile(atomicfile.OS, dst, fi.Mode().Perm(), fi.ModTime(), func(w io.Writer) error {
		var err error
		n, err = io.Copy(w, in)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return n, nil
}
