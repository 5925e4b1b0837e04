package remote

import (
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

	"github.com/drove-dev/drove/internal/filesink"
)

// TransferOption configures [Host.Upload] and [Host.Download].
type TransferOption func(*transferConfig)

type transferConfig struct {
	progress func(int64)
	parallel int
}

// WithProgress calls fn with the number of bytes moved since the previous
// call, from several goroutines at once for a directory; fn must be safe for
// concurrent use. The default reports nothing.
func WithProgress(fn func(n int64)) TransferOption {
	return func(c *transferConfig) { c.progress = fn }
}

// WithParallelFiles sets how many files of a directory are transferred at
// once. The default is 4.
func WithParallelFiles(n int) TransferOption {
	return func(c *transferConfig) { c.parallel = n }
}

func newTransferConfig(opts []TransferOption) transferConfig {
	c := transferConfig{parallel: 4}
	for _, o := range opts {
		o(&c)
	}
	if c.parallel < 1 {
		c.parallel = 1
	}
	return c
}

// tempName returns a hidden temporary name in the directory of final. It
// does not include the final name, which may be close to NAME_MAX already.
func tempName(final string, join func(...string) string, dir func(string) string) string {
	return join(dir(final), ".drove-"+randHex(8)+".part")
}

// Upload copies the local file or directory local to remote. A directory is
// copied recursively, its symbolic links recreated as links; other special
// files are skipped. Modes and modification times are kept. Each file is
// written under a temporary name in its destination directory and renamed
// into place when complete, so an interrupted upload never leaves a partial
// file under the final name (the temporary file is removed when possible).
// Cancelling ctx stops the transfer at the next request and removes its
// temporary files; if the server does not answer within 2 seconds, Upload
// returns anyway and that happens when it does (or the session ends).
func (h *Host) Upload(ctx context.Context, local, remote string, opts ...TransferOption) error {
	cfg := newTransferConfig(opts)
	err := call0(ctx, h, transferGrace, func() error { return h.upload(ctx, local, remote, cfg) })
	if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
		return pathErr("upload", remote, err)
	}
	return err
}

func (h *Host) upload(ctx context.Context, local, remote string, cfg transferConfig) error {
	dst, sc, err := h.prep(ctx, "upload", remote)
	if err != nil {
		return err
	}
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return pathErr("upload", local, errors.New("not a regular file or directory"))
		}
		return sc.pathErr("upload", remote, h.uploadFile(ctx, sc, local, dst, fi, cfg))
	}
	type dirTime struct {
		p    string
		mode fs.FileMode
		mt   time.Time
	}
	var dirs []dirTime
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.parallel)
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
			if err := sc.Mkdir(rp); err != nil {
				if st, serr := sc.Stat(rp); serr != nil || !st.IsDir() {
					return sc.pathErr("upload", rp, err)
				}
			}
			// Writable while filling; the real mode is set at the end.
			sc.Chmod(rp, 0o700)
			dirs = append(dirs, dirTime{rp, info.Mode().Perm(), info.ModTime()})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(lp)
			if err != nil {
				return err
			}
			sc.Remove(rp)
			if err := sc.Symlink(target, rp); err != nil {
				return sc.pathErr("upload", rp, err)
			}
		case info.Mode().IsRegular():
			g.Go(func() error {
				if err := h.uploadFile(gctx, sc, lp, rp, info, cfg); err != nil {
					return sc.pathErr("upload", rp, err)
				}
				return nil
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
		if err := sc.Chmod(d.p, d.mode); err != nil {
			return sc.pathErr("upload", d.p, err)
		}
		if err := sc.Chtimes(d.p, d.mt, d.mt); err != nil {
			return sc.pathErr("upload", d.p, err)
		}
	}
	return nil
}

func (h *Host) uploadFile(ctx context.Context, sc *sftpConn, local, dst string, fi fs.FileInfo, cfg transferConfig) (err error) {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := tempName(dst, path.Join, path.Dir)
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			h.removeTemp(sc, tmp)
		}
	}()
	_, err = f.ReadFrom(&ctxReader{ctx: ctx, r: src, size: fi.Size(), progress: cfg.progress})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := sc.Chmod(tmp, fi.Mode().Perm()); err != nil {
		return err
	}
	if err := sc.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		return err
	}
	return rename(sc, tmp, dst)
}

// removeTemp removes the temporary file of a failed upload. If the SFTP
// session died (its sftp-server killed, say), the host may still be
// reachable: a new session gets a short while to remove the file, so that
// a cut upload leaves nothing behind when possible.
func (h *Host) removeTemp(sc *sftpConn, tmp string) {
	err := sc.Remove(tmp)
	var ce *ConnError
	if err == nil || !errors.As(sc.connErr(err, false), &ce) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	select {
	case <-sc.ended: // the Host has forgotten sc by now
	case <-ctx.Done():
		return
	}
	if c, err := h.client(ctx); err == nil {
		c.Remove(tmp)
	}
}

// Download copies the remote file or directory remote to local, with the
// same guarantees as [Host.Upload]: recursive, modes and modification times
// kept, each file written to a temporary name and renamed when complete.
// Cancelling ctx stops it as it does Upload.
//
// What the server lists is not trusted: a name that is not a single path
// element fails the download ([ErrBadName]), every local write goes through
// an os.Root on local, an existing symbolic link where a directory is needed
// is refused rather than written through ([ErrLink]), and a tree deeper than
// 256 directories, as a directory cycle is, stops with [ErrTooDeep].
func (h *Host) Download(ctx context.Context, remote, local string, opts ...TransferOption) error {
	cfg := newTransferConfig(opts)
	err := call0(ctx, h, transferGrace, func() error { return h.download(ctx, remote, local, cfg) })
	if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
		return pathErr("download", remote, err)
	}
	return err
}

func (h *Host) download(ctx context.Context, remote, local string, cfg transferConfig) error {
	src, sc, err := h.prep(ctx, "download", remote)
	if err != nil {
		return err
	}
	fi, err := sc.Stat(src)
	if err != nil {
		return sc.pathErr("download", remote, err)
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return pathErr("download", remote, errors.New("not a regular file or directory"))
		}
		dst, err := filesink.Open(filepath.Dir(local), 0)
		if err != nil {
			return err
		}
		defer dst.Close()
		if err := downloadFile(ctx, sc, src, dst, filepath.Base(local), fi, cfg); err != nil {
			return sc.pathErr("download", remote, err)
		}
		return nil
	}
	// Every local write goes through dst, confined to local; the names the
	// server lists are checked by readDir.
	dst, err := filesink.Create(local)
	if err != nil {
		return err
	}
	defer dst.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.parallel)
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
			return pathErr("download", rp, ErrTooDeep)
		}
		if err := dst.Mkdir(rel); err != nil {
			return err
		}
		dirs = append(dirs, dirTime{rel, info.Mode().Perm(), info.ModTime()})
		entries, err := sc.readDir(gctx, rp)
		if err != nil {
			return sc.pathErr("download", rp, err)
		}
		for _, e := range entries {
			r, l := path.Join(rp, e.Name()), path.Join(rel, e.Name())
			switch {
			case e.IsDir():
				if err := walk(r, l, e, depth+1); err != nil {
					return err
				}
			case e.Mode()&fs.ModeSymlink != 0:
				target, err := sc.ReadLink(r)
				if err != nil {
					return sc.pathErr("download", r, err)
				}
				if err := dst.Symlink(target, l); err != nil {
					return err
				}
			case e.Mode().IsRegular():
				g.Go(func() error {
					if err := downloadFile(gctx, sc, r, dst, l, e, cfg); err != nil {
						return sc.pathErr("download", r, err)
					}
					return nil
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

// downloadFile copies the remote file src to rel in dst.
func downloadFile(ctx context.Context, sc *sftpConn, src string, dst *filesink.Dir, rel string, fi fs.FileInfo, cfg transferConfig) error {
	f, err := sc.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return dst.WriteFile(rel, fi.Mode().Perm(), fi.ModTime(), func(out io.Writer) error {
		var w io.Writer = ctxWriter{ctx, out}
		if cfg.progress != nil {
			w = progressWriter{w, cfg.progress}
		}
		n, err := f.WriteTo(w)
		if err != nil {
			return err
		}
		if n != fi.Size() {
			// A server that died mid-transfer can look like an early EOF.
			st, serr := f.Stat()
			if serr != nil {
				return fmt.Errorf("short read: got %d of %d bytes: %w", n, fi.Size(), sc.connErr(serr, false))
			}
			if st.Size() != n {
				return fmt.Errorf("short read: got %d of %d bytes", n, fi.Size())
			}
		}
		return nil
	})
}

type progressWriter struct {
	w  io.Writer
	fn func(int64)
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}
