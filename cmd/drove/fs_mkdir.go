package main

import (
	"context"

	"github.com/spf13/cobra"
)

// newFSMkdir returns `drove fs HOST mkdir`.
func newFSMkdir() *fsSub {
	var parents bool
	var mkdirMode string
	s := newFSSub("mkdir [-p] [-m MODE] DIR...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(mkdirMode)
		if err != nil {
			return err
		}
		for _, p := range args {
			if parents {
				err = e.h.MkdirAll(ctx, p, mode)
			} else {
				err = e.h.Mkdir(ctx, p, mode)
			}
			if err != nil {
				return err
			}
		}
		return e.done("mkdir", args, nil)
	})
	s.cmd.Flags().BoolVarP(&parents, "parents", "p", false, "make parent directories as needed; no error if existing")
	s.cmd.Flags().StringVarP(&mkdirMode, "mode", "m", "0755", "mode (octal)")
	return s
}
