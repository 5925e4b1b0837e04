package sshexec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// client returns the pool's SFTP session for the host. The directories
// known to exist are forgotten when the session is a new one, as after a
// lost connection.
func (e *Executor) client(ctx context.Context) (*sshconn.SFTP, error) {
	s, err := e.pool.SFTP(ctx, e.target)
	if err != nil {
		return nil, err
	}
	e.fmu.Lock()
	if e.session != s {
		e.session = s
		e.dirs = map[string]bool{}
	}
	e.fmu.Unlock()
	return s, nil
}

// mkdirAll creates dir on the host once per SFTP session.
func (e *Executor) mkdirAll(s *sshconn.SFTP, dir string) error {
	if dir == "" || dir == "." || dir == "/" {
		return nil
	}
	e.fmu.Lock()
	known := e.dirs[dir]
	e.fmu.Unlock()
	if known {
		return nil
	}
	if err := s.MkdirAll(dir); err != nil {
		return sftpengine.SessionPathErr(s, "mkdir", dir, err)
	}
	e.fmu.Lock()
	e.dirs[dir] = true
	e.fmu.Unlock()
	return nil
}

// transfer creates dir and copies the local files into it, returning the
// bytes sent. Each file is written under a temporary name and renamed when
// complete, with its mode and modification time; cancelling ctx stops the
// copy in the middle of a file and removes the temporary file.
func (e *Executor) transfer(ctx context.Context, dir string, files []string) (int64, error) {
	s, err := e.client(ctx)
	if err != nil {
		return 0, err
	}
	if err := e.mkdirAll(s, dir); err != nil {
		return 0, err
	}
	var sent int64
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return sent, context.Cause(ctx)
		}
		remote, local := paths(dir, f)
		n, err := e.put(ctx, s, local, remote)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (e *Executor) put(ctx context.Context, s *sshconn.SFTP, local, remote string) (int64, error) {
	fi, err := os.Stat(local)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, &fs.PathError{Op: "transfer", Path: local, Err: errors.New("not a regular file")}
	}
	if err := e.mkdirAll(s, path.Dir(remote)); err != nil {
		return 0, err
	}
	// A relative remote path is relative to the login directory, where
	// the SFTP session starts, and so is its temporary name.
	var n int64
	err = sftpengine.UploadFile(ctx, s, local, remote, fi, func(k int64) { n += k })
	if err != nil {
		if ctx.Err() != nil {
			return n, context.Cause(ctx)
		}
		return n, sftpengine.SessionPathErr(s, "upload", remote, err)
	}
	return n, nil
}

// fetch copies the files back from the host, returning the bytes received.
func (e *Executor) fetch(ctx context.Context, dir string, files []string) (int64, error) {
	s, err := e.client(ctx)
	if err != nil {
		return 0, err
	}
	var got int64
	for _, f := range files {
		remote, local := paths(dir, f)
		if i := strings.Index(local, "/./"); i >= 0 {
			local = local[i+3:]
		}
		n, err := get(ctx, s, remote, local)
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// get copies the remote file to local, with its mode and modification
// time, through the engine's temporary name and rename. A local path inside
// the current directory (the usual case: the same relative path as on the
// host) is written through an os.Root confined to the current directory, so
// that a symbolic link on the way that leads out of it, such as one an
// earlier download from a hostile server left, is refused rather than
// followed. An absolute path or one climbing out with ".." names its place
// explicitly; only its last element is confined.
func get(ctx context.Context, s *sshconn.SFTP, remote, local string) (int64, error) {
	fi, err := s.Stat(remote)
	if err != nil {
		return 0, sftpengine.SessionPathErr(s, "return", remote, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, sftpengine.PathErr("return", remote, errors.New("not a regular file"))
	}
	dir, rel := ".", filepath.ToSlash(filepath.Clean(local))
	if !filepath.IsLocal(local) {
		dir, rel = filepath.Dir(local), filepath.Base(local)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	dst, err := filesink.Open(dir, 0)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	if d := path.Dir(rel); d != "." {
		if err := dst.MkdirAll(d); err != nil {
			return 0, err
		}
	}
	var n int64
	err = sftpengine.DownloadFile(ctx, s, remote, dst, rel, fi, func(k int64) { n += k })
	if err != nil {
		if ctx.Err() != nil {
			return n, context.Cause(ctx)
		}
		return n, fmt.Errorf("copy %s to %s: %w", remote, local, s.ConnErr(err, false))
	}
	return n, nil
}

// remove deletes the files from the host; missing files are fine.
func (e *Executor) remove(ctx context.Context, dir string, files []string) error {
	s, err := e.client(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		remote, _ := paths(dir, f)
		if err := s.Remove(remote); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, sftpengine.SessionPathErr(s, "remove", remote, err))
		}
	}
	return errors.Join(errs...)
}

// removeAll deletes dir and its contents from the host.
func (e *Executor) removeAll(ctx context.Context, dir string) error {
	s, err := e.client(ctx)
	if err != nil {
		return err
	}
	if path.Clean(dir) == "/" {
		return sftpengine.PathErr("removeall", dir, fs.ErrInvalid)
	}
	if err := sftpengine.RemoveAll(ctx, s, dir); err != nil {
		return sftpengine.SessionPathErr(s, "removeall", dir, err)
	}
	e.fmu.Lock()
	delete(e.dirs, dir)
	e.fmu.Unlock()
	return nil
}

// FileJob is implemented by a task's Ref whose job moves files over the
// host's SFTP session instead of running a command (drove exec --copy and
// --rcopy, as pscp, pslurp and clush --copy/--rcopy do).
type FileJob interface {
	// FileOp returns the work to do with the host's SFTP session; nil
	// means the task is a command after all.
	FileOp() func(ctx context.Context, s *sshconn.SFTP) error
}

// runFiles runs a file job: it ends OK when op succeeds, Lost when the
// host cannot be reached or its connection breaks, Killed when stopped
// (a timeout, a cancel), and Failed with op's error otherwise.
func (e *Executor) runFiles(ctx context.Context, op func(context.Context, *sshconn.SFTP) error) (res sched.Result) {
	res.Start = time.Now()
	s, err := e.client(ctx)
	if err == nil {
		if err = op(ctx, s); err != nil {
			err = s.ConnErr(err, false)
		}
	}
	res.End = time.Now()
	end := proc.End{Exited: err == nil, Err: err, Lost: isConnErr(err)}
	if ctx.Err() != nil {
		end.Stopped = context.Cause(ctx)
	}
	if end.Lost {
		end.Err = fmt.Errorf("drove: %s: %w", e.target, err)
	}
	proc.Classify(&res, end, proc.Rules{})
	return res
}
