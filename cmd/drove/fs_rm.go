package main

import (
	"context"
	"errors"
	"io/fs"

	"github.com/spf13/cobra"
)

// newFSRm returns `drove fs HOST rm`.
func newFSRm() *fsSub {
	var recursive, force bool
	s := newFSSub("rm [-r] [-f] PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		for _, p := range args {
			var err error
			if recursive {
				err = e.h.RemoveAll(ctx, p)
			} else {
				err = e.h.Remove(ctx, p)
			}
			if err != nil && !(force && errors.Is(err, fs.ErrNotExist)) {
				return err
			}
		}
		return e.done("rm", args, nil)
	})
	s.cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
	s.cmd.Flags().BoolVarP(&force, "force", "f", false, "ignore missing files")
	return s
}
