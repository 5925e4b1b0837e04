package remote

import (
	"context"
	"io/fs"
	"sync"
	"time"
)

// Sticky wraps a Host in exec_proxy's error model: after the first failure,
// every later call does nothing and returns that same error, until
// ResetErr. A script can then issue a batch of calls and check once:
//
//	s := remote.NewSticky(h)
//	s.MkdirAll(ctx, "run/out", 0o755)
//	s.WriteFile(ctx, "run/input", data, 0o644)
//	s.Run(ctx, &remote.Cmd{Command: "./job", Dir: "run"})
//	if !s.OK() { log.Print(s.Err()) }
//
// Exists, IsDir and IsFile of a missing path are not failures. Sticky is
// safe for concurrent use; concurrent calls that are already running when a
// failure is recorded still complete.
type Sticky struct {
	h   *Host
	mu  sync.Mutex
	err error
}

// NewSticky returns a Sticky wrapper around h, in the OK state.
func NewSticky(h *Host) *Sticky { return &Sticky{h: h} }

// Host returns the wrapped Host.
func (s *Sticky) Host() *Host { return s.h }

// OK reports whether no call has failed since creation or the last ResetErr.
func (s *Sticky) OK() bool { return s.Err() == nil }

// Err returns the first error recorded, or nil.
func (s *Sticky) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// ResetErr clears the recorded error and returns it.
func (s *Sticky) ResetErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.err
	s.err = nil
	return err
}

func (s *Sticky) do(f func() error) error {
	if err := s.Err(); err != nil {
		return err
	}
	err := f()
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		err = s.err
		s.mu.Unlock()
	}
	return err
}

func stick[T any](s *Sticky, f func() (T, error)) (T, error) {
	var v T
	err := s.do(func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}

// TempDir is [Host.TempDir] with sticky errors.
func (s *Sticky) TempDir(ctx context.Context, dir, pattern string) (string, error) {
	return stick(s, func() (string, error) { return s.h.TempDir(ctx, dir, pattern) })
}

// Mkdir is [Host.Mkdir] with sticky errors.
func (s *Sticky) Mkdir(ctx context.Context, name string, perm fs.FileMode) error {
	return s.do(func() error { return s.h.Mkdir(ctx, name, perm) })
}

// MkdirAll is [Host.MkdirAll] with sticky errors.
func (s *Sticky) MkdirAll(ctx context.Context, name string, perm fs.FileMode) error {
	return s.do(func() error { return s.h.MkdirAll(ctx, name, perm) })
}

// Chdir is [Host.Chdir] with sticky errors.
func (s *Sticky) Chdir(ctx context.Context, dir string) error {
	return s.do(func() error { return s.h.Chdir(ctx, dir) })
}

// Getwd is [Host.Getwd].
func (s *Sticky) Getwd() string { return s.h.Getwd() }

// Rmdir is [Host.Rmdir] with sticky errors.
func (s *Sticky) Rmdir(ctx context.Context, name string) error {
	return s.do(func() error { return s.h.Rmdir(ctx, name) })
}

// RemoveAll is [Host.RemoveAll] with sticky errors.
func (s *Sticky) RemoveAll(ctx context.Context, name string) error {
	return s.do(func() error { return s.h.RemoveAll(ctx, name) })
}

// Remove is [Host.Remove] with sticky errors.
func (s *Sticky) Remove(ctx context.Context, name string) error {
	return s.do(func() error { return s.h.Remove(ctx, name) })
}

// IsDir is [Host.IsDir] with sticky errors.
func (s *Sticky) IsDir(ctx context.Context, name string) (bool, error) {
	return stick(s, func() (bool, error) { return s.h.IsDir(ctx, name) })
}

// IsFile is [Host.IsFile] with sticky errors.
func (s *Sticky) IsFile(ctx context.Context, name string) (bool, error) {
	return stick(s, func() (bool, error) { return s.h.IsFile(ctx, name) })
}

// Exists is [Host.Exists] with sticky errors.
func (s *Sticky) Exists(ctx context.Context, name string) (bool, error) {
	return stick(s, func() (bool, error) { return s.h.Exists(ctx, name) })
}

// ReadDir is [Host.ReadDir] with sticky errors.
func (s *Sticky) ReadDir(ctx context.Context, name string) ([]fs.DirEntry, error) {
	return stick(s, func() ([]fs.DirEntry, error) { return s.h.ReadDir(ctx, name) })
}

// Chmod is [Host.Chmod] with sticky errors.
func (s *Sticky) Chmod(ctx context.Context, name string, mode fs.FileMode) error {
	return s.do(func() error { return s.h.Chmod(ctx, name, mode) })
}

// Chown is [Host.Chown] with sticky errors.
func (s *Sticky) Chown(ctx context.Context, name string, uid, gid int) error {
	return s.do(func() error { return s.h.Chown(ctx, name, uid, gid) })
}

// Chtimes is [Host.Chtimes] with sticky errors.
func (s *Sticky) Chtimes(ctx context.Context, name string, atime, mtime time.Time) error {
	return s.do(func() error { return s.h.Chtimes(ctx, name, atime, mtime) })
}

// Stat is [Host.Stat] with sticky errors.
func (s *Sticky) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	return stick(s, func() (fs.FileInfo, error) { return s.h.Stat(ctx, name) })
}

// Lstat is [Host.Lstat] with sticky errors.
func (s *Sticky) Lstat(ctx context.Context, name string) (fs.FileInfo, error) {
	return stick(s, func() (fs.FileInfo, error) { return s.h.Lstat(ctx, name) })
}

// Mkfifo is [Host.Mkfifo] with sticky errors.
func (s *Sticky) Mkfifo(ctx context.Context, name string, perm fs.FileMode) error {
	return s.do(func() error { return s.h.Mkfifo(ctx, name, perm) })
}

// Symlink is [Host.Symlink] with sticky errors.
func (s *Sticky) Symlink(ctx context.Context, oldname, newname string) error {
	return s.do(func() error { return s.h.Symlink(ctx, oldname, newname) })
}

// Readlink is [Host.Readlink] with sticky errors.
func (s *Sticky) Readlink(ctx context.Context, name string) (string, error) {
	return stick(s, func() (string, error) { return s.h.Readlink(ctx, name) })
}

// Rename is [Host.Rename] with sticky errors.
func (s *Sticky) Rename(ctx context.Context, oldname, newname string) error {
	return s.do(func() error { return s.h.Rename(ctx, oldname, newname) })
}

// WriteFile is [Host.WriteFile] with sticky errors.
func (s *Sticky) WriteFile(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	return s.do(func() error { return s.h.WriteFile(ctx, name, data, perm) })
}

// ReadFile is [Host.ReadFile] with sticky errors.
func (s *Sticky) ReadFile(ctx context.Context, name string) ([]byte, error) {
	return stick(s, func() ([]byte, error) { return s.h.ReadFile(ctx, name) })
}

// Open is [Host.Open] with sticky errors.
func (s *Sticky) Open(ctx context.Context, name string) (*File, error) {
	return stick(s, func() (*File, error) { return s.h.Open(ctx, name) })
}

// Create is [Host.Create] with sticky errors.
func (s *Sticky) Create(ctx context.Context, name string) (*File, error) {
	return stick(s, func() (*File, error) { return s.h.Create(ctx, name) })
}

// Upload is [Host.Upload] with sticky errors.
func (s *Sticky) Upload(ctx context.Context, local, remote string, opts ...TransferOption) error {
	return s.do(func() error { return s.h.Upload(ctx, local, remote, opts...) })
}

// Download is [Host.Download] with sticky errors.
func (s *Sticky) Download(ctx context.Context, remote, local string, opts ...TransferOption) error {
	return s.do(func() error { return s.h.Download(ctx, remote, local, opts...) })
}

// Run is [Host.Run] with sticky errors: a non-zero exit is a failure.
func (s *Sticky) Run(ctx context.Context, c *Cmd) (*Result, error) {
	return stick(s, func() (*Result, error) { return s.h.Run(ctx, c) })
}
