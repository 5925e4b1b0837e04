package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/wire"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print drove's version",
		Long:  "Print drove's version, the Go version it was built with, its platform and its worker protocol version.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "drove %s %s %s/%s protocol %d\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, wire.Version)
			return err
		},
	}
}
