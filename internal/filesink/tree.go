package filesink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
)

// The methods in this file write a directory tree fetched from a server that
// may be hostile (an SFTP download): every name it lists goes through
// [CheckName], every write goes through the Dir's os.Root, and a symbolic
// link already in the destination is never written through, even one that
// stays inside it. Their rel arguments are paths relative to the Dir made of
// checked names joined with "/"; "." is the Dir itself.

// MaxDepth bounds how deep a downloaded tree may go. A server that lists a
// directory inside itself (a cycle) would otherwise be followed for ever.
const MaxDepth = 256

var (
	// ErrBadElement is wrapped by errors about a name listed by a server
	// that is not a single path element.
	ErrBadElement = errors.New(`not a single path element (empty, ".", "..", or containing "/" or NUL)`)
	// ErrTooDeep is wrapped by the error of a download whose tree is deeper
	// than MaxDepth.
	ErrTooDeep = fmt.Errorf("directory tree deeper than %d levels (a directory cycle on the server?)", MaxDepth)
	// ErrLink is wrapped by errors about an existing symbolic link where a
	// download needs a directory.
	ErrLink = errors.New("is a symbolic link; refusing to write through it (remove it, or download elsewhere)")
)

// CheckName returns an error wrapping [ErrBadElement] unless name, as listed
// by a server, is one path element that a local file may be named.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") ||
		strings.ContainsRune(name, filepath.Separator) {
		return fmt.Errorf("%q: %w", name, ErrBadElement)
	}
	return nil
}

// Create makes dir (mode 0700) unless it already is a directory, and opens
// it as a Dir.
func Create(dir string) (*Dir, error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return Open(dir, 0)
}

// Path returns the local path of rel, for messages.
func (d *Dir) Path(rel string) string {
	return filepath.Join(d.root.Name(), filepath.FromSlash(rel))
}

// pathErr names the local path in err: os.Root's errors name rel alone.
func (d *Dir) pathErr(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	for {
		var pe *fs.PathError
		var le *os.LinkError
		switch {
		case errors.As(err, &pe):
			err = pe.Err
			continue
		case errors.As(err, &le):
			err = le.Err
			continue
		}
		return &fs.PathError{Op: op, Path: d.Path(rel), Err: err}
	}
}

// Mkdir creates the directory rel, mode 0700 so that it can be filled; an
// existing directory is fine, but not a symbolic link to one.
func (d *Dir) Mkdir(rel string) error {
	err := d.root.Mkdir(rel, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return d.pathErr("mkdir", rel, err)
	}
	fi, err := d.root.Lstat(rel)
	switch {
	case err != nil:
		return d.pathErr("mkdir", rel, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return d.pathErr("mkdir", rel, ErrLink)
	case !fi.IsDir():
		return d.pathErr("mkdir", rel, fs.ErrExist)
	}
	return nil
}

// MkdirAll creates the directory rel and its missing parents with mode
// 0755. Unlike [Dir.Mkdir], it follows symbolic links on the way, as long
// as they stay inside the Dir.
func (d *Dir) MkdirAll(rel string) error {
	return d.pathErr("mkdir", rel, d.root.MkdirAll(rel, 0o755))
}

// Symlink makes rel a symbolic link to target, replacing a file or link of
// that name but never a directory.
func (d *Dir) Symlink(target, rel string) error {
	if fi, err := d.root.Lstat(rel); err == nil {
		if fi.IsDir() {
			return d.pathErr("symlink", rel, errors.New("is a directory; refusing to replace it by a symbolic link"))
		}
		if err := d.root.Remove(rel); err != nil {
			return d.pathErr("symlink", rel, err)
		}
	}
	return d.pathErr("symlink", rel, d.root.Symlink(target, rel))
}

// WriteFile writes the regular file rel with what fill writes, under a
// temporary name in the same directory that is renamed when complete, so
// that an interrupted write never leaves a partial file under the final
// name. It replaces a file or symbolic link rel (never following it), sets
// the mode to perm and, unless mtime is zero, the times to mtime. The
// directory of rel should come from [Dir.Mkdir], which checks it is no link.
func (d *Dir) WriteFile(rel string, perm fs.FileMode, mtime time.Time, fill func(io.Writer) error) error {
	w, err := atomicfile.Create(atomicfile.Root(d.root), rel)
	if err != nil {
		return d.pathErr("create", rel, err)
	}
	if err := fill(w); err != nil {
		w.Abort()
		return err
	}
	// rename(2) replaces a link rel instead of following it.
	if err := w.Commit(perm, mtime); err != nil {
		op := "write"
		var pe *fs.PathError
		var le *os.LinkError
		if errors.As(err, &pe) {
			op = pe.Op
		} else if errors.As(err, &le) {
			op = le.Op
		}
		return d.pathErr(op, rel, err)
	}
	return nil
}

// SetAttrs sets the mode and times of the directory rel, refusing a symbolic
// link in its place.
func (d *Dir) SetAttrs(rel string, perm fs.FileMode, mtime time.Time) error {
	fi, err := d.root.Lstat(rel)
	if err != nil {
		return d.pathErr("chmod", rel, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return d.pathErr("chmod", rel, ErrLink)
	}
	if err := d.root.Chmod(rel, perm.Perm()); err != nil {
		return d.pathErr("chmod", rel, err)
	}
	return d.pathErr("chtimes", rel, d.root.Chtimes(rel, mtime, mtime))
}
