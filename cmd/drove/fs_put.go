package main

import (
	"context"
	"fmt"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/remote"
)

// newFSPut returns `drove fs HOST put`: upload files or directories.
func newFSPut() *fsSub {
	var quiet bool
	s := newFSSub("put [-q] LOCAL... REMOTE", cobra.MinimumNArgs(2), func(ctx context.Context, e *fsEnv, args []string) error {
		srcs, dst := args[:len(args)-1], args[len(args)-1]
		into, _ := e.h.IsDir(ctx, dst)
		if len(srcs) > 1 && !into {
			return fmt.Errorf("remote: %s is not a directory", dst)
		}
		var total int64
		for _, s := range srcs {
			n, err := localSize(s)
			if err != nil {
				return err
			}
			total += n
		}
		bar, done := newByteBar(e.stderr, total, "put", quiet || e.json)
		var results []map[string]any
		for _, s := range srcs {
			target := dst
			if into {
				target = path.Join(dst, filepath.Base(filepath.Clean(s)))
			}
			if err := e.h.Upload(ctx, s, target, remote.WithProgress(bar)); err != nil {
				done()
				return err
			}
			results = append(results, map[string]any{"local": s, "remote": e.h.Abs(target)})
		}
		done()
		if e.json {
			return e.result("put", map[string]any{"bytes": total, "files": results})
		}
		return nil
	})
	addQuietFlag(s.cmd, &quiet)
	return s
}
