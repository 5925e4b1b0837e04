package remote

import (
	"context"
	"io"
	"io/fs"
	"path"
	"slices"
)

// FS returns a read-only io/fs view of the host's whole file system: the
// name "etc/hosts" is the remote /etc/hosts (use fs.Sub for a subtree). It
// implements fs.StatFS, fs.ReadDirFS and fs.ReadFileFS. Its calls are not
// cancellable; use the Host's methods when a context matters. io/fs paths
// are valid UTF-8 (fs.ValidPath), so names that are not can be listed but
// not opened through it.
func (h *Host) FS() fs.FS { return hostFS{h} }

type hostFS struct{ h *Host }

var (
	_ fs.StatFS     = hostFS{}
	_ fs.ReadDirFS  = hostFS{}
	_ fs.ReadFileFS = hostFS{}
)

func (f hostFS) abs(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return path.Join("/", name), nil
}

// fixPath makes errors name the fs.FS path, as fstest expects.
func fixPath(err error, op, name string) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: unwrapPath(err)}
}

func (f hostFS) Open(name string) (fs.File, error) {
	p, err := f.abs("open", name)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	fi, err := f.h.Stat(ctx, p)
	if err != nil {
		return nil, fixPath(err, "open", name)
	}
	if fi.IsDir() {
		return &dirFile{f: f, name: name, info: fi}, nil
	}
	file, err := f.h.Open(ctx, p)
	if err != nil {
		return nil, fixPath(err, "open", name)
	}
	return &fsFile{File: file, info: fi}, nil
}

func (f hostFS) Stat(name string) (fs.FileInfo, error) {
	p, err := f.abs("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := f.h.Stat(context.Background(), p)
	if err != nil {
		return nil, fixPath(err, "stat", name)
	}
	if name == "." {
		return renamed{fi, "."}, nil
	}
	return fi, nil
}

func (f hostFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := f.abs("readdir", name)
	if err != nil {
		return nil, err
	}
	d, err := f.h.ReadDir(context.Background(), p)
	return d, fixPath(err, "readdir", name)
}

func (f hostFS) ReadFile(name string) ([]byte, error) {
	p, err := f.abs("readfile", name)
	if err != nil {
		return nil, err
	}
	b, err := f.h.ReadFile(context.Background(), p)
	return b, fixPath(err, "readfile", name)
}

type renamed struct {
	fs.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }

type fsFile struct {
	*File
	info fs.FileInfo
}

func (f *fsFile) Stat() (fs.FileInfo, error) { return f.info, nil }

type dirFile struct {
	f       hostFS
	name    string
	info    fs.FileInfo
	entries []fs.DirEntry
	loaded  bool
	off     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) {
	if d.name == "." {
		return renamed{d.info, "."}, nil
	}
	return d.info, nil
}

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errIsDir}
}

func (d *dirFile) Close() error { return nil }

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.loaded {
		e, err := d.f.ReadDir(d.name)
		if err != nil {
			return nil, err
		}
		d.entries, d.loaded = e, true
	}
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return slices.Clone(rest[:n]), nil
}
