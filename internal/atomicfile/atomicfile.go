// Package atomicfile writes a file under a temporary name beside it and
// renames it over the final name once complete, so that an interrupted
// write never leaves a partial file under the final name, and a reader
// sees the old file or the new one, never a mix.
//
// The temporary name is hidden and random (".drove-<16 hex>.part" in the
// final name's directory) and opened with O_EXCL, so it never opens through
// a link planted under a predictable name, and two writers of the same
// file do not share one. The rename replaces a file or a symbolic link at
// the final name rather than writing through it.
//
// The file system is an [FS]: this machine's ([OS]), an [os.Root] ([Root]),
// or any other that adapts to it (an SFTP client, say).
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// FS is what a write needs of a file system. Names are as the file system
// takes them; the temporary name is made in the final name's directory.
type FS interface {
	// OpenFile opens name as os.OpenFile does; Create passes
	// O_WRONLY|O_CREATE|O_EXCL and mode 0600.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Chtimes(name string, atime, mtime time.Time) error
	// Rename renames oldname to newname, replacing newname if it exists
	// (POSIX rename).
	Rename(oldname, newname string) error
	Remove(name string) error
}

// File is an open temporary file.
type File interface {
	io.Writer
	Chmod(mode fs.FileMode) error
	Close() error
}

// OS is this machine's file system, through package os.
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}
func (osFS) Chtimes(name string, atime, mtime time.Time) error { return os.Chtimes(name, atime, mtime) }
func (osFS) Rename(oldname, newname string) error              { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                          { return os.Remove(name) }

// Root is the file system under r: names are relative to it and cannot
// lead out of it.
func Root(r *os.Root) FS { return rootFS{r} }

type rootFS struct{ r *os.Root }

func (f rootFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return f.r.OpenFile(name, flag, perm)
}
func (f rootFS) Chtimes(name string, atime, mtime time.Time) error {
	return f.r.Chtimes(name, atime, mtime)
}
func (f rootFS) Rename(oldname, newname string) error { return f.r.Rename(oldname, newname) }
func (f rootFS) Remove(name string) error             { return f.r.Remove(name) }

// TempName returns a fresh temporary name in name's directory. It takes
// slash-separated names (SFTP) as well as this machine's.
func TempName(name string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	dir := name[:strings.LastIndexAny(name, "/"+string(os.PathSeparator))+1]
	return dir + ".drove-" + hex.EncodeToString(b[:]) + ".part"
}

// A Writer writes one file under a temporary name until Commit renames it
// over the final name or Abort removes it. It is not safe for concurrent
// use.
type Writer struct {
	fsys       FS
	f          File
	tmp, final string
	done       bool
}

// Create opens a new temporary file, mode 0600, for the final name name.
// The caller must end it with Commit or Abort.
func Create(fsys FS, name string) (*Writer, error) {
	tmp := TempName(name)
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &Writer{fsys: fsys, f: f, tmp: tmp, final: name}, nil
}

// Write writes to the temporary file.
func (w *Writer) Write(p []byte) (int, error) { return w.f.Write(p) }

// ReadFrom copies r into the temporary file, through the file's own
// ReadFrom where it has one: an SFTP file's keeps many writes in flight,
// which a plain copy of Writes would serialise.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.f.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(onlyWriter{w.f}, r)
}

// onlyWriter hides a File's other methods from io.Copy.
type onlyWriter struct{ io.Writer }

// TempName is the temporary file's name.
func (w *Writer) TempName() string { return w.tmp }

// Commit sets the file's mode to perm and, unless mtime is zero, its times
// to mtime, then renames it over the final name. On error the temporary
// file is removed and the final name left as it was; the error is an
// *fs.PathError (or *os.LinkError) naming the step that failed.
func (w *Writer) Commit(perm fs.FileMode, mtime time.Time) error {
	if w.done {
		return errors.New("atomicfile: Commit after Commit or Abort")
	}
	w.done = true
	err := w.f.Chmod(perm.Perm())
	if err != nil {
		err = &fs.PathError{Op: "chmod", Path: w.tmp, Err: err}
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = &fs.PathError{Op: "write", Path: w.tmp, Err: cerr}
	}
	if err == nil && !mtime.IsZero() {
		if cerr := w.fsys.Chtimes(w.tmp, mtime, mtime); cerr != nil {
			err = &fs.PathError{Op: "chtimes", Path: w.tmp, Err: cerr}
		}
	}
	if err == nil {
		if rerr := w.fsys.Rename(w.tmp, w.final); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: w.tmp, New: w.final, Err: rerr}
		}
	}
	if err != nil {
		_ = w.fsys.Remove(w.tmp)
	}
	return err
}

// Abort closes and removes the temporary file, leaving the final name as
// it was. It does nothing after Commit or another Abort.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	_ = w.f.Close()
	_ = w.fsys.Remove(w.tmp)
}

// WriteFile writes the file name with what fill writes, atomically: see
// [Writer.Commit] for perm and mtime. An error of fill is returned as it
// is, and the final name is then left as it was.
func WriteFile(fsys FS, name string, perm fs.FileMode, mtime time.Time, fill func(io.Writer) error) error {
	w, err := Create(fsys, name)
	if err != nil {
		return err
	}
	if err := fill(w); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(perm, mtime)
}
