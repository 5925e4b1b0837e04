package sshexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/drove-dev/drove/internal/filesink"
)

// client returns the executor's SFTP client, opening one on its own pool
// lease the first time and again after the connection was lost.
func (e *Executor) client(ctx context.Context) (*sftp.Client, error) {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if e.sftp != nil {
		select {
		case <-e.lease.Lost():
			e.closeSFTPLocked()
		default:
			return e.sftp, nil
		}
	}
	l, err := e.pool.Acquire(ctx, e.target)
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(l.Client(), sftp.UseConcurrentWrites(true))
	if err != nil {
		l.Release()
		return nil, fmt.Errorf("sftp subsystem: %w", err)
	}
	e.sftp, e.lease = c, l
	return c, nil
}

func (e *Executor) closeSFTP() {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	e.closeSFTPLocked()
}

func (e *Executor) closeSFTPLocked() {
	if e.sftp != nil {
		e.sftp.Close()
		e.lease.Release()
		e.sftp, e.lease = nil, nil
		e.dirs = map[string]bool{}
	}
}

// mkdirAll creates dir on the host once per executor.
func (e *Executor) mkdirAll(c *sftp.Client, dir string) error {
	if dir == "" || dir == "." || dir == "/" {
		return nil
	}
	e.fmu.Lock()
	known := e.dirs[dir]
	e.fmu.Unlock()
	if known {
		return nil
	}
	if err := c.MkdirAll(dir); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	e.fmu.Lock()
	e.dirs[dir] = true
	e.fmu.Unlock()
	return nil
}

// transfer creates dir and copies the local files into it, returning the
// bytes sent.
func (e *Executor) transfer(ctx context.Context, dir string, files []string) (int64, error) {
	c, err := e.client(ctx)
	if err != nil {
		return 0, err
	}
	if err := e.mkdirAll(c, dir); err != nil {
		return 0, err
	}
	var sent int64
	for _, f := range files {
		remote, local := paths(dir, f)
		n, err := e.put(c, local, remote)
		sent += n
		if err != nil {
			return sent, err
		}
		if ctx.Err() != nil {
			return sent, context.Cause(ctx)
		}
	}
	return sent, nil
}

func (e *Executor) put(c *sftp.Client, local, remote string) (int64, error) {
	src, err := os.Open(local)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return 0, err
	}
	if err := e.mkdirAll(c, path.Dir(remote)); err != nil {
		return 0, err
	}
	dst, err := c.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", remote, err)
	}
	n, err := io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", remote, err)
	}
	if err := c.Chmod(remote, fi.Mode().Perm()); err != nil {
		return n, fmt.Errorf("chmod %s: %w", remote, err)
	}
	return n, nil
}

// fetch copies the files back from the host, returning the bytes received.
func (e *Executor) fetch(ctx context.Context, dir string, files []string) (int64, error) {
	c, err := e.client(ctx)
	if err != nil {
		return 0, err
	}
	var got int64
	for _, f := range files {
		remote, local := paths(dir, f)
		if i := strings.Index(local, "/./"); i >= 0 {
			local = local[i+3:]
		}
		n, err := get(c, remote, local)
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// get copies the remote file to local. A local path inside the current
// directory (the usual case: the same relative path as on the host) is
// written through an os.Root confined to the current directory, so that a
// symbolic link on the way that leads out of it, such as one an earlier
// download from a hostile server left, is refused rather than followed. An
// absolute path or one climbing out with ".." names its place explicitly;
// only its last element is confined.
func get(c *sftp.Client, remote, local string) (int64, error) {
	src, err := c.Open(remote)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", remote, err)
	}
	defer src.Close()
	n, err := writeLocal(src, local)
	if err != nil {
		return n, fmt.Errorf("copy %s to %s: %w", remote, local, err)
	}
	return n, nil
}

func writeLocal(src *sftp.File, local string) (int64, error) {
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
	perm := fs.FileMode(0o600)
	if fi, err := src.Stat(); err == nil {
		perm = fi.Mode().Perm()
	}
	var n int64
	err = dst.WriteFile(rel, perm, time.Time{}, func(w io.Writer) error {
		var err error
		n, err = io.Copy(w, src)
		return err
	})
	return n, err
}

// remove deletes the files from the host; missing files are fine.
func (e *Executor) remove(ctx context.Context, dir string, files []string) error {
	c, err := e.client(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		remote, _ := paths(dir, f)
		if err := c.Remove(remote); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", remote, err))
		}
	}
	return errors.Join(errs...)
}

// removeAll deletes dir and its contents from the host.
func (e *Executor) removeAll(ctx context.Context, dir string) error {
	c, err := e.client(ctx)
	if err != nil {
		return err
	}
	if err := c.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	e.fmu.Lock()
	delete(e.dirs, dir)
	e.fmu.Unlock()
	return nil
}
