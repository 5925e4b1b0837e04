package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

// newFSLn returns `drove fs HOST ln`; only symbolic links are supported.
func newFSLn() *fsSub {
	var symbolic bool
	s := newFSSub("ln -s TARGET LINK", cobra.ExactArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		if !symbolic {
			return errors.New("only symbolic links are supported: use ln -s")
		}
		if err := e.h.Symlink(ctx, args[0], args[1]); err != nil {
			return err
		}
		return e.done("ln", args[1:], map[string]any{"target": args[0]})
	})
	s.cmd.Flags().BoolVarP(&symbolic, "symbolic", "s", false, "make a symbolic link")
	return s
}
