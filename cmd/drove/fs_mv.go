package main

import (
	"context"

	"github.com/spf13/cobra"
)

// newFSMv returns `drove fs HOST mv`: rename, replacing the new name.
func newFSMv() *fsSub {
	return newFSSub("mv OLD NEW", cobra.ExactArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		if err := e.h.Rename(ctx, args[0], args[1]); err != nil {
			return err
		}
		return e.done("mv", args, nil)
	})
}
