package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/parallel"
	"github.com/drove-dev/drove/internal/sshconn"
)

// registerSetCopyFlags adds drove exec's -x (clush, pdsh) and the copy
// flags of clush (--copy, --rcopy, --dest), which pscp and pslurp users
// find there too.
func registerSetCopyFlags(cmd *cobra.Command, fl *execFlags) {
	f := cmd.Flags()
	f.StringArrayVarP(&fl.exclude, "exclude", "x", nil, "leave out the hosts of `NODESET` (repeatable; clush, pdsh)")
	f.BoolVarP(&fl.copy, "copy", "c", false, "copy the local files or directories given as arguments to every host, into --dest (clush --copy, pscp -r)")
	f.BoolVar(&fl.rcopy, "rcopy", false, "copy the remote files or directories given as arguments from every host into --dest, as NAME.HOST (clush --rcopy, pslurp)")
	f.StringVar(&fl.dest, "dest", "", "destination `DIR` of --copy (on the hosts; default: the first source's directory) or --rcopy (here; default: the first source's directory)")
}

// copyFiles checks the --copy/--rcopy arguments as clush does (--copy
// needs its sources here, --rcopy its destination directory) and returns
// the work parallel.Broadcast does on each host.
func copyFiles(fl *execFlags, args []string) (func(context.Context, *sshconn.SFTP, string) error, error) {
	if fl.copy && fl.rcopy {
		return nil, errors.New("exec: --copy and --rcopy cannot be used together")
	}
	if !fl.copy && !fl.rcopy {
		return nil, errors.New("exec: --dest is for --copy or --rcopy")
	}
	if len(args) == 0 {
		return nil, errors.New("exec: --copy and --rcopy need at least one file or directory")
	}
	if fl.stdin {
		return nil, errors.New("exec: -I sends input to a command; --copy and --rcopy run none")
	}
	dest := fl.dest
	if dest == "" {
		// clush's default: the directory of the first source, made
		// absolute here.
		abs, err := filepath.Abs(args[0])
		if err != nil {
			return nil, err
		}
		dest = filepath.Dir(abs)
	}
	if fl.copy {
		for _, src := range args {
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("exec: --copy: %w", err)
			}
		}
		return parallel.CopyTo(args, filepath.ToSlash(dest)), nil
	}
	st, err := os.Stat(dest)
	if err != nil {
		return nil, fmt.Errorf("exec: --rcopy: destination directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("exec: --rcopy: destination %s is not a directory", dest)
	}
	return parallel.CopyFrom(args, dest), nil
}
