package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/remote"
)

// newFSGet returns `drove fs HOST get`: download files or directories.
func newFSGet() *fsSub {
	var quiet bool
	s := newFSSub("get [-q] REMOTE... LOCAL", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		srcs, dst := args[:len(args)-1], args[len(args)-1]
		st, err := os.Stat(dst)
		into := err == nil && st.IsDir()
		if len(srcs) > 1 && !into {
			return fmt.Errorf("%s is not a directory", dst)
		}
		var total int64
		for _, s := range srcs {
			n, err := remoteSize(ctx, e.h, s)
			if err != nil {
				return err
			}
			total += n
		}
		bar, done := newByteBar(e.stderr, total, "get", quiet || e.json)
		var results []map[string]any
		for _, s := range srcs {
			target := dst
			if into {
				target = filepath.Join(dst, path.Base(path.Clean(s)))
			}
			if err := e.h.Download(ctx, s, target, remote.WithProgress(bar)); err != nil {
				done()
				return err
			}
			results = append(results, map[string]any{"remote": e.h.Abs(s), "local": target})
		}
		done()
		if e.json {
			return e.result("get", map[string]any{"bytes": total, "files": results})
		}
		return nil
	})
	addQuietFlag(s.cmd, &quiet)
	return s
}
