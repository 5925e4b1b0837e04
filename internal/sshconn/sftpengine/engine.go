package sftpengine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/sshconn"
)

// PathErr returns the *fs.PathError of a failed op on name, with Op
// "remote: op", unwrapping the sftp package's own PathError so that only
// one op and path appear in the message.
func PathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: "remote: " + op, Path: name, Err: UnwrapPath(err)}
}

// SessionPathErr is PathErr for an error of a request on s: one caused by
// the session's end becomes a *sshconn.ConnError.
func SessionPathErr(s *sshconn.SFTP, op, name string, err error) error {
	if err == nil {
		return nil
	}
	return PathErr(op, name, s.ConnErr(UnwrapPath(err), false))
}

// UnwrapPath returns the error inside an *fs.PathError or *os.LinkError.
func UnwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Rename renames oldp to newp, replacing newp if it exists (with the
// server's posix-rename extension, which OpenSSH has; otherwise SFTP's
// plain rename, which fails if newp exists).
func Rename(s *sshconn.SFTP, oldp, newp string) error {
	if _, ok := s.HasExtension("posix-rename@openssh.com"); ok {
		return s.PosixRename(oldp, newp)
	}
	return s.Rename(oldp, newp)
}

// ReadDir lists the directory p, refusing a listing with a name that is not
// a single path element, or the same name twice: joined to a path, such a
// name could lead elsewhere (path.Join(p, "/") is p itself), and pkg/sftp
// reduces a listed "a/b" to "b", so "a/b" and "c/b" come as two b's. The
// error then wraps [filesink.ErrBadElement].
func ReadDir(ctx context.Context, s *sshconn.SFTP, p string) ([]fs.FileInfo, error) {
	infos, err := s.ReadDirContext(ctx, p)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(infos))
	for _, fi := range infos {
		name := fi.Name()
		if err := filesink.CheckName(name); err != nil {
			return nil, fmt.Errorf("server listed %w", err)
		}
		if seen[name] {
			return nil, fmt.Errorf("server listed %q twice: %w", name, filesink.ErrBadElement)
		}
		seen[name] = true
	}
	return infos, nil
}

// RemoveAll removes p and everything below it, like os.RemoveAll: a missing
// p is not an error, and symbolic links are removed, never followed. The
// listings are checked by [ReadDir] and the walk stops at
// [filesink.MaxDepth] directories.
func RemoveAll(ctx context.Context, s *sshconn.SFTP, p string) error {
	return removeAll(ctx, s, p, 0)
}

func removeAll(ctx context.Context, s *sshconn.SFTP, p string, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if depth > filesink.MaxDepth {
		return PathErr("removeall", p, filesink.ErrTooDeep)
	}
	fi, err := s.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !fi.IsDir() {
		return ignoreNotExist(s.Remove(p))
	}
	entries, err := ReadDir(ctx, s, p)
	if err != nil {
		return ignoreNotExist(err)
	}
	for _, e := range entries {
		if err := removeAll(ctx, s, path.Join(p, e.Name()), depth+1); err != nil {
			return err
		}
	}
	return ignoreNotExist(s.RemoveDirectory(p))
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Reader returns r that fails with ctx's error once ctx ends, and reports
// the bytes read to progress (if not nil). size is r's size, which lets
// pkg/sftp's ReadFrom send concurrent writes.
func Reader(ctx context.Context, r io.Reader, size int64, progress func(int64)) io.Reader {
	return &ctxReader{ctx: ctx, r: r, size: size, progress: progress}
}

type ctxReader struct {
	ctx      context.Context
	r        io.Reader
	size     int64
	progress func(int64)
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if r.progress != nil && n > 0 {
		r.progress(int64(n))
	}
	return n, err
}

func (r *ctxReader) Size() int64 { return r.size }

// Writer returns w that fails with ctx's error once ctx ends, and reports
// the bytes written to progress (if not nil).
func Writer(ctx context.Context, w io.Writer, progress func(int64)) io.Writer {
	return ctxWriter{ctx, w, progress}
}

type ctxWriter struct {
	ctx      context.Context
	w        io.Writer
	progress func(int64)
}

func (w ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := w.w.Write(p)
	if w.progress != nil && n > 0 {
		w.progress(int64(n))
	}
	return n, err
}
