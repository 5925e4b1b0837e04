package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// TempDir creates a new directory with a unique name in dir (the remote
// /tmp if dir is empty) and returns its absolute path. As with os.MkdirTemp,
// a "*" in pattern is replaced by a random string, which is otherwise
// appended. The directory has mode 0700. It is exec_proxy's newdir.
func (h *Host) TempDir(ctx context.Context, dir, pattern string) (string, error) {
	if dir == "" {
		dir = "/tmp"
	}
	if strings.Contains(pattern, "/") {
		return "", pathErr("tempdir", pattern, errors.New("pattern contains a path separator"))
	}
	prefix, suffix, _ := strings.Cut(pattern, "*")
	if !strings.Contains(pattern, "*") {
		prefix, suffix = pattern, ""
	}
	for try := 0; ; try++ {
		name := path.Join(dir, prefix+sftpengine.RandHex(6)+suffix)
		err := h.Mkdir(ctx, name, 0o700)
		if err == nil {
			return h.Abs(name), nil
		}
		if !errors.Is(err, fs.ErrExist) || try > 10 {
			return "", err
		}
	}
}

// Mkdir creates the directory name with mode perm, applied exactly (the
// remote umask does not reduce it). An existing name is an error matching
// fs.ErrExist.
func (h *Host) Mkdir(ctx context.Context, name string, perm fs.FileMode) error {
	p, sc, err := h.prep(ctx, "mkdir", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "mkdir", name, call0(ctx, h, 0, func() error {
		if err := sc.Mkdir(p); err != nil {
			// SFTP v3 reports an existing name as a generic failure.
			if _, serr := sc.Lstat(p); serr == nil {
				return fs.ErrExist
			}
			return err
		}
		return sc.Chmod(p, perm&fs.ModePerm)
	}))
}

// MkdirAll creates name and any missing parents with mode perm, like
// os.MkdirAll. It does nothing if name is already a directory.
func (h *Host) MkdirAll(ctx context.Context, name string, perm fs.FileMode) error {
	p, sc, err := h.prep(ctx, "mkdir", name)
	if err != nil {
		return err
	}
	if fi, err := call(ctx, h, 0, func() (fs.FileInfo, error) { return sc.Stat(p) }, nil); err == nil {
		if fi.IsDir() {
			return nil
		}
		return pathErr("mkdir", name, errNotDir)
	}
	if parent := path.Dir(p); parent != p {
		if err := h.MkdirAll(ctx, parent, perm); err != nil {
			return err
		}
	}
	if err := h.Mkdir(ctx, p, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return pathErr("mkdir", name, err)
	}
	return nil
}

// Rmdir removes the empty directory name.
func (h *Host) Rmdir(ctx context.Context, name string) error {
	p, sc, err := h.prep(ctx, "rmdir", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "rmdir", name, call0(ctx, h, 0, func() error { return sc.RemoveDirectory(p) }))
}

// Remove removes the file, symbolic link or empty directory name (exec_proxy's
// unlink).
func (h *Host) Remove(ctx context.Context, name string) error {
	p, sc, err := h.prep(ctx, "remove", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "remove", name, call0(ctx, h, 0, func() error { return sc.Remove(p) }))
}

// RemoveAll removes name and everything below it, like os.RemoveAll: a
// missing name is not an error, and symbolic links are removed, never
// followed.
func (h *Host) RemoveAll(ctx context.Context, name string) error {
	p, sc, err := h.prep(ctx, "removeall", name)
	if err != nil {
		return err
	}
	if p == "/" {
		return pathErr("removeall", name, fs.ErrInvalid)
	}
	return scPathErr(sc, "removeall", name, call0(ctx, h, 0, func() error { return sftpengine.RemoveAll(ctx, sc, p) }))
}

// Stat returns the FileInfo of name, following symbolic links. Its Sys()
// is a *sftp.FileStat. Stat never opens the file, so a FIFO does not block.
func (h *Host) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	p, sc, err := h.prep(ctx, "stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := call(ctx, h, 0, func() (fs.FileInfo, error) { return sc.Stat(p) }, nil)
	if err != nil {
		return nil, scPathErr(sc, "stat", name, err)
	}
	return fi, nil
}

// Lstat is like Stat but describes a symbolic link itself.
func (h *Host) Lstat(ctx context.Context, name string) (fs.FileInfo, error) {
	p, sc, err := h.prep(ctx, "lstat", name)
	if err != nil {
		return nil, err
	}
	fi, err := call(ctx, h, 0, func() (fs.FileInfo, error) { return sc.Lstat(p) }, nil)
	if err != nil {
		return nil, scPathErr(sc, "lstat", name, err)
	}
	return fi, nil
}

// Exists reports whether name exists, following symbolic links (a dangling
// link does not exist). A missing name is (false, nil); any other failure is
// an error.
func (h *Host) Exists(ctx context.Context, name string) (bool, error) {
	_, err := h.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// IsDir reports whether name is a directory (following symbolic links).
// A missing name is (false, nil).
func (h *Host) IsDir(ctx context.Context, name string) (bool, error) {
	fi, err := h.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && fi.IsDir(), err
}

// IsFile reports whether name is a regular file (following symbolic links).
// A missing name is (false, nil).
func (h *Host) IsFile(ctx context.Context, name string) (bool, error) {
	fi, err := h.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && fi.Mode().IsRegular(), err
}

// ReadDir returns the entries of directory name sorted by name, without
// "." and "..". A listing with a name that is not a single path element, or
// with a name twice, is an error matching [ErrBadName].
func (h *Host) ReadDir(ctx context.Context, name string) ([]fs.DirEntry, error) {
	p, sc, err := h.prep(ctx, "readdir", name)
	if err != nil {
		return nil, err
	}
	// ReadDirContext takes ctx, but not for opening the directory.
	infos, err := call(ctx, h, 0, func() ([]fs.FileInfo, error) { return sftpengine.ReadDir(ctx, sc, p) }, nil)
	if err != nil {
		return nil, scPathErr(sc, "readdir", name, err)
	}
	out := make([]fs.DirEntry, 0, len(infos))
	for _, fi := range infos {
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Chmod changes the mode of name (following symbolic links).
func (h *Host) Chmod(ctx context.Context, name string, mode fs.FileMode) error {
	p, sc, err := h.prep(ctx, "chmod", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "chmod", name, call0(ctx, h, 0, func() error { return sc.Chmod(p, mode) }))
}

// Chown changes the numeric owner and group of name.
func (h *Host) Chown(ctx context.Context, name string, uid, gid int) error {
	p, sc, err := h.prep(ctx, "chown", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "chown", name, call0(ctx, h, 0, func() error { return sc.Chown(p, uid, gid) }))
}

// Chtimes changes the access and modification times of name (SFTP keeps
// whole seconds).
func (h *Host) Chtimes(ctx context.Context, name string, atime, mtime time.Time) error {
	p, sc, err := h.prep(ctx, "chtimes", name)
	if err != nil {
		return err
	}
	return scPathErr(sc, "chtimes", name, call0(ctx, h, 0, func() error { return sc.Chtimes(p, atime, mtime) }))
}

// Symlink creates newname as a symbolic link to oldname. oldname is stored
// as given: a relative target stays relative to the link's directory.
func (h *Host) Symlink(ctx context.Context, oldname, newname string) error {
	if strings.IndexByte(oldname, 0) >= 0 || oldname == "" {
		return &os.LinkError{Op: "remote: symlink", Old: oldname, New: newname, Err: fs.ErrInvalid}
	}
	p, sc, err := h.prep(ctx, "symlink", newname)
	if err != nil {
		return err
	}
	err = call0(ctx, h, 0, func() error {
		err := sc.Symlink(oldname, p)
		if err != nil {
			if _, serr := sc.Lstat(p); serr == nil {
				return fs.ErrExist
			}
		}
		return err
	})
	if err != nil {
		return &os.LinkError{Op: "remote: symlink", Old: oldname, New: newname, Err: connErr(sc, unwrapPath(err), false)}
	}
	return nil
}

// Readlink returns the target of the symbolic link name.
func (h *Host) Readlink(ctx context.Context, name string) (string, error) {
	p, sc, err := h.prep(ctx, "readlink", name)
	if err != nil {
		return "", err
	}
	t, err := call(ctx, h, 0, func() (string, error) { return sc.ReadLink(p) }, nil)
	if err != nil {
		return "", scPathErr(sc, "readlink", name, err)
	}
	return t, nil
}

// Rename renames oldname to newname, replacing newname if it exists (with
// the server's posix-rename extension, which OpenSSH has; otherwise SFTP's
// plain rename, which fails if newname exists).
func (h *Host) Rename(ctx context.Context, oldname, newname string) error {
	op, sc, err := h.prep(ctx, "rename", oldname)
	if err != nil {
		return err
	}
	if strings.IndexByte(newname, 0) >= 0 || newname == "" {
		return &os.LinkError{Op: "remote: rename", Old: oldname, New: newname, Err: fs.ErrInvalid}
	}
	np := h.Abs(newname)
	if err := call0(ctx, h, 0, func() error { return sftpengine.Rename(sc, op, np) }); err != nil {
		return &os.LinkError{Op: "remote: rename", Old: oldname, New: newname, Err: connErr(sc, unwrapPath(err), false)}
	}
	return nil
}

// Mkfifo creates the named pipe name with mode perm. SFTP has no such
// request, so it runs mkfifo(1) on the host, with the name quoted.
func (h *Host) Mkfifo(ctx context.Context, name string, perm fs.FileMode) error {
	p, _, err := h.prep(ctx, "mkfifo", name)
	if err != nil {
		return err
	}
	var stderr strings.Builder
	res, err := h.Run(ctx, &Cmd{
		Args:   []string{"mkfifo", "-m", fmt.Sprintf("%04o", perm&fs.ModePerm), "--", p},
		Stderr: &stderr,
	})
	if err != nil {
		if res != nil && res.ExitCode > 0 {
			if ok, _ := h.Exists(ctx, p); ok {
				return pathErr("mkfifo", name, fs.ErrExist)
			}
			return pathErr("mkfifo", name, errors.New(strings.TrimSpace(stderr.String())))
		}
		return pathErr("mkfifo", name, err)
	}
	return nil
}

// File is an open remote file. It implements io.Reader, io.Writer,
// io.ReaderAt, io.WriterAt, io.Seeker, io.Closer, io.ReaderFrom and
// io.WriterTo; io.Copy to and from it uses SFTP's concurrent requests. A File
// is not safe for concurrent use.
//
// Read, ReadAt, Write, WriteAt, ReadFrom, WriteTo, Close and Stat report a
// lost connection as an *fs.PathError wrapping a *ConnError; io.EOF is
// returned as is. The other methods of the embedded *sftp.File return the
// sftp package's errors.
type File struct {
	*sftp.File
	name string
	c    *sshconn.SFTP
}

// Name returns the name the file was opened with.
func (f *File) Name() string { return f.name }

// Stat returns the file's FileInfo.
func (f *File) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, scPathErr(f.c, "stat", f.name, err)
	}
	return fi, nil
}

// ioErr wraps an error of a read or write of f, leaving io.EOF alone since
// callers compare it with ==.
func (f *File) ioErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return pathErr(op, f.name, connErr(f.c, unwrapPath(err), false))
}

// Read reads up to len(b) bytes.
func (f *File) Read(b []byte) (int, error) {
	n, err := f.File.Read(b)
	return n, f.ioErr("read", err)
}

// ReadAt reads len(b) bytes at offset off.
func (f *File) ReadAt(b []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(b, off)
	return n, f.ioErr("read", err)
}

// Write writes b.
func (f *File) Write(b []byte) (int, error) {
	n, err := f.File.Write(b)
	return n, f.ioErr("write", err)
}

// WriteAt writes b at offset off.
func (f *File) WriteAt(b []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(b, off)
	return n, f.ioErr("write", err)
}

// ReadFrom copies r into the file with concurrent requests (when r has a
// Size or Len method, or is an *os.File).
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	n, err := f.File.ReadFrom(r)
	return n, f.ioErr("write", err)
}

// WriteTo copies the file to w with concurrent requests.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	n, err := f.File.WriteTo(w)
	return n, f.ioErr("read", err)
}

// Close closes the file.
func (f *File) Close() error {
	return f.ioErr("close", f.File.Close())
}

// Open opens name for reading.
func (h *Host) Open(ctx context.Context, name string) (*File, error) {
	return h.OpenFile(ctx, name, os.O_RDONLY, 0)
}

// Create creates or truncates name for writing, with mode 0666 less the
// remote umask when it is created, like os.Create.
func (h *Host) Create(ctx context.Context, name string) (*File, error) {
	return h.OpenFile(ctx, name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0)
}

var errSpecial = errors.New("not a regular file (named pipe, socket or device): opening it over SFTP could block the server")

// OpenFile opens name with the os.O_* flags. Named pipes, sockets and
// devices are refused, since opening one could block the SFTP server. If perm is non-zero and the
// file is created, perm is applied exactly.
func (h *Host) OpenFile(ctx context.Context, name string, flag int, perm fs.FileMode) (*File, error) {
	p, sc, err := h.prep(ctx, "open", name)
	if err != nil {
		return nil, err
	}
	// sftp-server handles one request at a time, and opening a FIFO blocks
	// until the other end is opened: that would stall every call sharing
	// this Host's SFTP channel. Refuse instead.
	f, err := call(ctx, h, 0, func() (*sftp.File, error) {
		if fi, err := sc.Stat(p); err == nil && fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice) != 0 {
			return nil, errSpecial
		}
		f, err := sc.OpenFile(p, flag)
		if err != nil {
			return nil, err
		}
		if perm != 0 && flag&os.O_CREATE != 0 {
			if err := f.Chmod(perm & fs.ModePerm); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	}, func(f *sftp.File) { f.Close() })
	if err != nil {
		return nil, scPathErr(sc, "open", name, err)
	}
	return &File{File: f, name: name, c: sc}, nil
}

// ReadFile returns the contents of name.
func (h *Host) ReadFile(ctx context.Context, name string) ([]byte, error) {
	f, err := h.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	// ctxWriter stops the copy between requests; call returns at once
	// even if the server stops answering.
	b, err := call(ctx, h, 0, func() ([]byte, error) {
		defer f.Close()
		var buf bytes.Buffer
		if _, err := f.WriteTo(sftpengine.Writer(ctx, &buf, nil)); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}, nil)
	if err != nil {
		return nil, pathErr("read", name, err)
	}
	return b, nil
}

// WriteFile writes data to name, creating or truncating it, and sets its
// mode to perm (exactly; pass 0 to leave the mode alone).
func (h *Host) WriteFile(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	f, err := h.OpenFile(ctx, name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	err = call0(ctx, h, 0, func() error {
		_, err := f.ReadFrom(sftpengine.Reader(ctx, bytes.NewReader(data), int64(len(data)), nil))
		if perm != 0 && err == nil {
			err = f.Chmod(perm & fs.ModePerm)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	return scPathErr(f.c, "write", name, err)
}

// quoteArgs is sshconn.Join, for Cmd.Args.
func quoteArgs(args []string) string { return sshconn.Join(args...) }
