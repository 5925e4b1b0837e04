package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"

	"github.com/spf13/cobra"
)

// newFSLs returns `drove fs HOST ls`: list directories, or describe files.
func newFSLs() *fsSub {
	var long bool
	s := newFSSub("ls [-l] [PATH...]", cobra.ArbitraryArgs, func(ctx context.Context, e *fsEnv, args []string) error {
		if len(args) == 0 {
			args = []string{"."}
		}
		var all []fileJSON
		for _, p := range args {
			fi, err := e.h.Stat(ctx, p)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				lfi, _ := e.h.Lstat(ctx, p)
				if lfi != nil {
					fi = lfi
				}
				target := ""
				if fi.Mode()&fs.ModeSymlink != 0 {
					target, _ = e.h.Readlink(ctx, p)
				}
				all = append(all, toJSON(p, fi, target))
				if !e.json {
					if long {
						fmt.Fprintln(e.stdout, longLine(fi, display(p), display(target)))
					} else {
						fmt.Fprintln(e.stdout, display(p))
					}
				}
				continue
			}
			entries, err := e.h.ReadDir(ctx, p)
			if err != nil {
				return err
			}
			if !e.json && len(args) > 1 {
				fmt.Fprintf(e.stdout, "%s:\n", display(p))
			}
			for _, d := range entries {
				full := path.Join(p, d.Name())
				fi, err := d.Info()
				if err != nil {
					return err
				}
				target := ""
				if fi.Mode()&fs.ModeSymlink != 0 {
					target, _ = e.h.Readlink(ctx, full)
				}
				all = append(all, toJSON(full, fi, target))
				if e.json {
					continue
				}
				if long {
					fmt.Fprintln(e.stdout, longLine(fi, display(d.Name()), display(target)))
				} else {
					fmt.Fprintln(e.stdout, display(d.Name()))
				}
			}
		}
		if e.json {
			if all == nil {
				all = []fileJSON{}
			}
			return json.NewEncoder(e.stdout).Encode(all)
		}
		return nil
	})
	s.cmd.Flags().BoolVarP(&long, "long", "l", false, "long listing")
	return s
}
