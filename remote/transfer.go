package remote

import (
	"context"
	"errors"

	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
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
	return sftpengine.Upload(ctx, sc, local, dst, sftpengine.Options{Progress: cfg.progress, Parallel: cfg.parallel})
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
	return sftpengine.Download(ctx, sc, src, local, sftpengine.Options{Progress: cfg.progress, Parallel: cfg.parallel})
}
