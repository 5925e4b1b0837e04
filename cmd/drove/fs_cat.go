package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// newFSCat returns `drove fs HOST cat`: the raw bytes of files, even with
// --json.
func newFSCat() *fsSub {
	return newFSSub("cat PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		for _, p := range args {
			f, err := e.h.Open(ctx, p)
			if err != nil {
				return err
			}
			_, err = f.WriteTo(e.stdout)
			f.Close()
			if err != nil {
				return fmt.Errorf("remote: read %s: %w", p, err)
			}
		}
		return nil
	})
}
