package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"time"

	"github.com/spf13/cobra"
)

// newFSStat returns `drove fs HOST stat`: file information, symbolic links
// not followed.
func newFSStat() *fsSub {
	return newFSSub("stat PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		var all []fileJSON
		for _, p := range args {
			fi, err := e.h.Lstat(ctx, p)
			if err != nil {
				return err
			}
			target := ""
			if fi.Mode()&fs.ModeSymlink != 0 {
				target, _ = e.h.Readlink(ctx, p)
			}
			j := toJSON(e.h.Abs(p), fi, target)
			all = append(all, j)
			if !e.json {
				fmt.Fprintf(e.stdout, "  File: %s\n  Type: %s\n  Size: %d\n  Mode: %s (%s)\nModify: %s\n",
					display(j.Path), j.Type, j.Size, j.Mode, j.Perm, fi.ModTime().Format(time.RFC3339))
				if target != "" {
					fmt.Fprintf(e.stdout, "Target: %s\n", display(target))
				}
			}
		}
		if e.json {
			return json.NewEncoder(e.stdout).Encode(all)
		}
		return nil
	})
}
