package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/progress"
	"github.com/drove-dev/drove/remote"
)

// addQuietFlag registers put's and get's -q.
func addQuietFlag(c *cobra.Command, quiet *bool) {
	c.Flags().BoolVarP(quiet, "quiet", "q", false, "no progress bar")
}

// newByteBar returns a progress callback drawing a bar on w (only if w is a
// terminal and !off) and a function to finish it.
func newByteBar(w io.Writer, total int64, label string, off bool) (func(int64), func()) {
	if off {
		return func(int64) {}, func() {}
	}
	bar := progress.New(w, int(total), label+" bytes")
	return func(n int64) { bar.Add(int(n)) }, bar.Finish
}

func localSize(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// remoteSize adds up the sizes of the regular files at or below p. It walks
// with the Host's own methods, not h.FS(): io/fs paths must be valid UTF-8,
// remote names need not be.
func remoteSize(ctx context.Context, h *remote.Host, p string) (int64, error) {
	fi, err := h.Stat(ctx, p)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return fi.Size(), nil
	}
	var n int64
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		// The same bound as Download's: a server listing a directory
		// inside itself must not keep us here for ever.
		if depth > filesink.MaxDepth {
			return fmt.Errorf("remote: %s: %w", dir, remote.ErrTooDeep)
		}
		entries, err := h.ReadDir(ctx, dir)
		if err != nil {
			return err
		}
		for _, d := range entries {
			switch {
			case d.IsDir():
				if err := walk(path.Join(dir, d.Name()), depth+1); err != nil {
					return err
				}
			case d.Type().IsRegular():
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
		}
		return nil
	}
	return n, walk(h.Abs(p), 0)
}
