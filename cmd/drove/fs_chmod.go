package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// newFSChmod returns `drove fs HOST chmod`, with the mode in octal.
func newFSChmod() *fsSub {
	return newFSSub("chmod MODE PATH...", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(args[0])
		if err != nil {
			return err
		}
		for _, p := range args[1:] {
			if err := e.h.Chmod(ctx, p, mode); err != nil {
				return err
			}
		}
		return e.done("chmod", args[1:], map[string]any{"perm": fmt.Sprintf("%04o", mode.Perm())})
	})
}
