package main

import "github.com/spf13/cobra"

// registerRunExclude adds drove run's --exclude, clush's and pdsh's -x for
// the hosts of -S and --slf. It has no short form: GNU parallel's -x means
// something else.
func registerRunExclude(cmd *cobra.Command, fl *runFlags) {
	cmd.Flags().StringArrayVar(&fl.exclude, "exclude", nil, "leave out the hosts of `NODESET` (ClusterShell node set, @groups allowed; : for this machine; repeatable)")
}
