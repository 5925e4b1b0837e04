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
		Long: `Print drove's module version, the VCS revision it was built from (with
"+dirty" when the tree had changes), the Go version it was built with, its
platform and its worker protocol version. "go install" stamps the module
version; "go build" in a git checkout stamps the revision.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

// versionLine is what drove version prints, from the build info.
func versionLine() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		rev = revisionOf(bi.Settings)
	}
	line := "drove " + v
	if rev != "" {
		line += " " + rev
	}
	return fmt.Sprintf("%s %s %s/%s protocol %d", line, runtime.Version(), runtime.GOOS, runtime.GOARCH, wire.Version)
}

// revisionOf returns "rev 0123456789ab" (+"+dirty"), or "" when the build
// recorded no VCS revision.
func revisionOf(settings []debug.BuildSetting) string {
	var rev string
	var dirty bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return "rev " + rev
}
