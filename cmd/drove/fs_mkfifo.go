package main

import (
	"context"

	"github.com/spf13/cobra"
)

// newFSMkfifo returns `drove fs HOST mkfifo`.
func newFSMkfifo() *fsSub {
	var fifoMode string
	s := newFSSub("mkfifo [-m MODE] PATH...", cobra.MinimumNArgs(1), func(ctx context.Context, e *fsEnv, args []string) error {
		mode, err := parseMode(fifoMode)
		if err != nil {
			return err
		}
		for _, p := range args {
			if err := e.h.Mkfifo(ctx, p, mode); err != nil {
				return err
			}
		}
		return e.done("mkfifo", args, nil)
	})
	s.cmd.Flags().StringVarP(&fifoMode, "mode", "m", "0644", "mode (octal)")
	return s
}
