package sftpengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drove-dev/drove/internal/atomicfile"
	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Options configure [Upload] and [Download].
type Options struct {
	// Progress, if set, is called with the number of bytes moved since
	// the previous call, from several goroutines at once for a directory.
	Progress func(n int64)
	// Parallel is how many files of a directory are transferred at once;
	// less than 1 means 1.
	Parallel int
}

func (o Options) parallel() int { return max(1, o.Parallel) }

// Upload copies the local file or directory local to the absolute remote
// path dst. A directory is copied recursively, its symbolic links
// recreated as links; other special files are skipped. Modes and
// modification times are kept, and each file goes through [UploadFile].
func Upload(ctx context.Context, s *sshconn.SFTP, local, dst string, o Options) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return PathErr("upload", local, errors.New("not a regular file or directory"))
		}
		return SessionPathErr(s, "upload", dst, UploadFile(ctx, s, local, dst, fi, o.Progress))
	}
	type dirTime struct {
		p    string
		mode fs.FileMode
		mt   time.Time
	}
	var dirs []dirTime
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel())
	walkErr := filepath.WalkDir(local, func(lp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if gctx.Err() != nil {
			return gctx.Err()
		}
		rel, _ := filepath.Rel(local, lp)
		rp := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := s.Mkdir(rp); err != nil {
				if st, serr := s.Stat(rp); serr != nil || !st.IsDir() {
					return SessionPathErr(s, "upload", rp, err)
				}
			}
			// Writable while filling; the real mode is set at the end.
			s.Chmod(rp, 0o700)
			dirs = append(dirs, dirTime{rp, info.Mode().Perm(), info.ModTime()})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(lp)
			if err != nil {
				return err
			}
			s.Remove(rp)
			if err := s.Symlink(target, rp); err != nil {
				return SessionPathErr(s, "upload", rp, err)
			}
		case info.Mode().IsRegular():
			g.Go(func() error {
				return SessionPathErr(s, "upload", rp, UploadFile(gctx, s, lp, rp, info, o.Progress))
			})
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	// Deepest first, so that setting a parent's mtime is the last change in
	// it.
	for _, d := range slices.Backward(dirs) {
		if err := s.Chmod(d.p, d.mode); err != nil {
			return SessionPathErr(s, "upload", d.p, err)
		}
		if err := s.Chtimes(d.p, d.mt, d.mt); err != nil {
			return SessionPathErr(s, "upload", d.p, err)
		}
	}
	return nil
}

// UploadFile copies the local regular file local, described by fi, to the
// absolute remote path dst, whose directory must exist. It writes a
// temporary file next to dst, sets its mode and modification time from fi
// and renames it to dst, so that dst is never a partial file. Cancelling
// ctx stops the copy at the next request and removes the temporary file.
// progress, if not nil, is called with the bytes read as they are.
func UploadFile(ctx context.Context, s *sshconn.SFTP, local, dst string, fi fs.FileInfo, progress func(int64)) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	w, err := atomicfile.Create(sftpFS{s}, dst)
	if err != nil {
		return err
	}
	if _, err := w.ReadFrom(Reader(ctx, src, fi.Size(), progress)); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(fi.Mode().Perm(), fi.ModTime())
}

// sftpFS is an SFTP session as an [atomicfile.FS].
type sftpFS struct{ s *sshconn.SFTP }

func (f sftpFS) OpenFile(name string, flag int, _ fs.FileMode) (atomicfile.File, error) {
	// The mode is set by Commit, once the file is complete.
	return f.s.OpenFile(name, flag)
}

func (f sftpFS) Chtimes(name string, atime, mtime time.Time) error {
	return f.s.Chtimes(name, atime, mtime)
}

func (f sftpFS) Rename(oldname, newname string) error { return Rename(f.s, oldname, newname) }

func (f sftpFS) Remove(name string) error {
	removeTemp(f.s, name)
	return nil
}

// removeTemp removes the temporary file of a failed upload. If the SFTP
// session died (its sftp-server killed, say), the host may still be
// reachable: a new session gets a short while to remove the file, so that
// a cut upload leaves nothing behind when possible.
func removeTemp(s *sshconn.SFTP, tmp string) {
	err := s.Remove(tmp)
	var ce *sshconn.ConnError
	if err == nil || !errors.As(s.ConnErr(err, false), &ce) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	select {
	case <-s.Ended(): // the pool has forgotten s by now
	case <-ctx.Done():
		return
	}
	if n, err := s.Pool().SFTP(ctx, s.Target()); err == nil {
		n.Remove(tmp)
	}
}

// Download copies the remote file or directory src (an absolute path) to
// local, with the same guarantees as [Upload]: recursive, modes and
// modification times kept, each file written to a temporary name and
// renamed when complete.
//
// Every local write goes through an os.Root on local (or, for a file, on
// its directory): a name the server lists that is not a single path
// element fails the download ([filesink.ErrBadElement]), an existing
// symbolic link where a directory is needed is refused rather than written
// through ([filesink.ErrLink]), and a tree deeper than [filesink.MaxDepth]
// directories, as a directory cycle is, stops with [filesink.ErrTooDeep].
func Download(ctx context.Context, s *sshconn.SFTP, src, local string, o Options) error {
	fi, err := s.Stat(src)
	if err != nil {
		return SessionPathErr(s, "download", src, err)
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return PathErr("download", src, errors.New("not a regular file or directory"))
		}
		dst, err := filesink.Open(filepath.Dir(local), 0)
		if err != nil {
			return err
		}
		defer dst.Close()
		return SessionPathErr(s, "download", src, DownloadFile(ctx, s, src, dst, filepath.Base(local), fi, o.Progress))
	}
	// Every local write goes through dst, confined to local; the names the
	// server lists are checked by ReadDir.
	dst, err := filesink.Create(local)
	if err != nil {
		return err
	}
	defer dst.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.parallel())
	type dirTime struct {
		rel  string
		mode fs.FileMode
		mt   time.Time
	}
	var dirs []dirTime
	var walk func(rp, rel string, info fs.FileInfo, depth int) error
	walk = func(rp, rel string, info fs.FileInfo, depth int) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		if depth > filesink.MaxDepth {
			return PathErr("download", rp, filesink.ErrTooDeep)
		}
		if err := dst.Mkdir(rel); err != nil {
			return err
		}
		dirs = append(dirs, dirTime{rel, info.Mode().Perm(), info.ModTime()})
		entries, err := ReadDir(gctx, s, rp)
		if err != nil {
			return SessionPathErr(s, "download", rp, err)
		}
		for _, e := range entries {
			r, l := path.Join(rp, e.Name()), path.Join(rel, e.Name())
			switch {
			case e.IsDir():
				if err := walk(r, l, e, depth+1); err != nil {
					return err
				}
			case e.Mode()&fs.ModeSymlink != 0:
				target, err := s.ReadLink(r)
				if err != nil {
					return SessionPathErr(s, "download", r, err)
				}
				if err := dst.Symlink(target, l); err != nil {
					return err
				}
			case e.Mode().IsRegular():
				g.Go(func() error {
					return SessionPathErr(s, "download", r, DownloadFile(gctx, s, r, dst, l, e, o.Progress))
				})
			}
		}
		return nil
	}
	walkErr := walk(src, ".", fi, 0)
	if err := g.Wait(); err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	for _, d := range slices.Backward(dirs) {
		if err := dst.SetAttrs(d.rel, d.mode, d.mt); err != nil {
			return err
		}
	}
	return nil
}

// DownloadFile copies the remote regular file src, described by fi, to rel
// in dst, which writes it under a temporary name and renames it when
// complete, with fi's mode and modification time. Cancelling ctx stops the
// copy at the next request. progress, if not nil, is called with the bytes
// written as they are.
func DownloadFile(ctx context.Context, s *sshconn.SFTP, src string, dst *filesink.Dir, rel string, fi fs.FileInfo, progress func(int64)) error {
	f, err := s.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return dst.WriteFile(rel, fi.Mode().Perm(), fi.ModTime(), func(out io.Writer) error {
		n, err := f.WriteTo(Writer(ctx, out, progress))
		if err != nil {
			return err
		}
		if n != fi.Size() {
			// A server that died mid-transfer can look like an early EOF.
			st, serr := f.Stat()
			if serr != nil {
				return fmt.Errorf("short read: got %d of %d bytes: %w", n, fi.Size(), s.ConnErr(serr, false))
			}
			if st.Size() != n {
				return fmt.Errorf("short read: got %d of %d bytes", n, fi.Size())
			}
		}
		return nil
	})
}

// WriteFile writes data to the absolute remote path dst, whose directory
// must exist, as [UploadFile] writes a file: under a temporary name, given
// mode perm once complete, then renamed to dst. It is for small files made
// in memory (a secret, a key); the temporary file is created 0600, so the
// data is never readable by others on the way.
func WriteFile(ctx context.Context, s *sshconn.SFTP, dst string, data []byte, perm fs.FileMode) error {
	w, err := atomicfile.Create(sftpFS{s}, dst)
	if err != nil {
		return SessionPathErr(s, "write", dst, err)
	}
	if _, err := w.ReadFrom(Reader(ctx, bytes.NewReader(data), int64(len(data)), nil)); err != nil {
		w.Abort()
		return SessionPathErr(s, "write", dst, err)
	}
	return SessionPathErr(s, "write", dst, w.Commit(perm, time.Now()))
}
