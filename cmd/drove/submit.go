package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/progress"
)

func newSubmitCmd() *cobra.Command {
	var (
		nodes       []string
		monAddr     string
		schedAddr   string
		files       []string
		argSets     []string
		cpus        int
		retries     int
		timeout     string
		recoverFile string
		exclusive   bool
		auth        clientAuth
		sf          sshFlags
		warn        clusterWarnings
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] PROGRAM",
		Short: "Run a program once per argument list on a cluster",
		Long: `Run PROGRAM once per -a argument list (once with no arguments if there is no
-a) on a cluster, as dispy's dispy_cmd.py: with no --nodes, on an embedded
cluster of this machine's CPUs. Files given with -f are staged into each job's
working directory, which is also first in the program's PATH.

For each job, in submit order, prints its exit status, then its stdout and
stderr. A progress bar is drawn on stderr when it is a terminal. The exit
status is the number of jobs that did not exit 0, failed or were Abandoned
because their node was lost (101 for more than 100).

With --nodes, requests to the drove nodes are signed with the cluster secret
(--secret, --secret-file or $DROVE_SECRET), over mutual TLS with --tls-ca;
with --scheduler, the jobs go through a shared drove scheduler, which runs
them on its nodes alongside other clients' jobs, and these options apply to
the scheduler. A pattern in --nodes ("*", "*:29701" for nodes on port 29701)
finds nodes by UDP broadcast; if none is found within --discover-timeout,
the command fails saying what it tried. Warnings (a listed node that cannot
be reached, a node lost) go to stderr.
--recover-file keeps a file naming this client and its nodes while the jobs
run: if this command is killed, "drove recover FILE" collects the results
the nodes kept. The file is removed when the command ends normally.`,
		Example: `  drove submit -a "1 2" -a "3 4" ./compute.sh
  drove submit -f data.csv -a "data.csv" /usr/bin/wc
  drove submit --nodes 10.0.0.5,10.0.0.6 --secret-file ~/.drove-secret --recover-file run.recover -a 1 ./compute.sh
  drove submit --scheduler schedhost --secret-file ~/.drove-secret -a 1 -a 2 ./compute.sh`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []drove.JobOption
			if timeout != "" {
				d, err := parseDuration(timeout)
				if err != nil {
					return fmt.Errorf("--timeout: %w", err)
				}
				opts = append(opts, drove.Timeout(d))
			}
			if retries > 0 {
				opts = append(opts, drove.Retries(retries))
			}
			var lists [][]string
			for _, a := range argSets {
				l, err := splitArgs(a)
				if err != nil {
					return fmt.Errorf("-a %q: %w", a, err)
				}
				lists = append(lists, l)
			}
			if len(lists) == 0 {
				lists = [][]string{nil}
			}
			clusterOpts := append([]drove.Option{drove.WithCPUs(cpus), drove.WithDepends(files...)}, warn.options(cmd.ErrOrStderr())...)
			if monAddr != "" {
				clusterOpts = append(clusterOpts, drove.WithMonitor(monAddr))
			}
			if len(nodes) > 0 && schedAddr != "" {
				return errors.New("--nodes and --scheduler exclude each other: the scheduler has the nodes")
			}
			if len(nodes) > 0 || schedAddr != "" {
				ao, err := auth.options()
				if err != nil {
					return err
				}
				if schedAddr != "" {
					clusterOpts = append(clusterOpts, drove.WithScheduler(schedAddr))
				} else {
					clusterOpts = append(clusterOpts, drove.WithNodes(nodes...))
					if hasSSHNode(nodes) {
						clusterOpts = append(clusterOpts, drove.WithSSH(sf.sshConfig()))
					}
				}
				clusterOpts = append(clusterOpts, ao...)
			}
			if exclusive {
				if len(nodes) == 0 && schedAddr == "" {
					return errors.New("--exclusive needs --scheduler or --nodes: an embedded cluster runs alone anyway")
				}
				clusterOpts = append(clusterOpts, drove.WithExclusive())
			}
			if recoverFile != "" {
				if len(nodes) == 0 && schedAddr == "" {
					return errors.New("--recover-file needs --nodes or --scheduler: the jobs of an embedded cluster end with this command")
				}
				clusterOpts = append(clusterOpts, drove.WithRecoverFile(recoverFile))
			}
			return runSubmit(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], lists, clusterOpts, opts)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&nodes, "nodes", nil, "nodes to run on: drove nodes (host[:port], \"*\" or \"*:PORT\" to discover) or SSH hosts (ssh://[user@]host[:port], ssh://alias); default an embedded cluster of this machine's CPUs")
	f.StringVar(&schedAddr, "scheduler", "", "run through the shared scheduler (drove scheduler) at host[:port], port 9700 by default, instead of on --nodes")
	f.StringArrayVarP(&files, "file", "f", nil, "file to stage into each job's directory (repeatable)")
	f.StringArrayVarP(&argSets, "args", "a", nil, "argument list for one job, split as a shell would (repeatable)")
	f.IntVarP(&cpus, "cpus", "c", 0, "CPUs of this machine to use: 0 for all, a negative number leaves that many free")
	f.IntVar(&retries, "retries", 0, "run a job again up to N times if it fails (a non-zero exit is not a failure)")
	f.StringVar(&timeout, "timeout", "", "stop a job that runs longer than this (e.g. 30s, 5m; a bare number is seconds)")
	f.StringVar(&recoverFile, "recover-file", "", `with --nodes or --scheduler: keep a file for "drove recover" to collect the results if this command is killed`)
	f.BoolVar(&exclusive, "exclusive", false, "with --scheduler or --nodes: run alone, once computations created before this one are done, holding later ones back until it is")
	f.StringVar(&monAddr, "monitor", "", monitorFlagUsage)
	auth.register(f)
	warn.register(f)
	sf.register(cmd)
	return cmd
}

func runSubmit(ctx context.Context, stdout, stderr io.Writer, program string, lists [][]string, copts []drove.Option, jopts []drove.JobOption) error {
	c, err := drove.NewCluster(ctx, drove.Program(program), copts...)
	if err != nil {
		return err
	}
	announceMonitor(stderr, c)
	bar := progress.New(stderr, len(lists), "jobs")
	// One counter per job, each ending with its job; every job has ended
	// once Close returns, so waiting for them after Close cannot hang and
	// no late redraw follows the last Finish.
	var counters sync.WaitGroup
	defer func() {
		counters.Wait()
		bar.Finish()
	}()
	jobs := make([]*drove.Job[int], 0, len(lists))
	for _, l := range lists {
		j, err := c.Submit(ctx, l, jopts...)
		if err != nil {
			_ = c.Close(ctx)
			return err
		}
		jobs = append(jobs, j)
		counters.Go(func() {
			<-j.Done()
			bar.Add(1)
		})
	}
	failed := 0
	for i, j := range jobs {
		code, err := j.Result(ctx)
		if ctx.Err() != nil {
			// Interrupted: the jobs left are cancelled by Close.
			bar.Finish()
			_ = c.Close(ctx)
			return ctx.Err()
		}
		bar.Finish()
		status := fmt.Sprintf("exit status %d", code)
		if err != nil {
			// Failed, Cancelled, Terminated or Abandoned (its node was
			// lost): all count as not exiting 0.
			status = fmt.Sprintf("%s: %v", j.Status(), err)
			failed++
		} else if code != 0 {
			failed++
		}
		fmt.Fprintf(stdout, "job %d [%s] on %s: %s\n", j.ID(), strings.Join(lists[i], " "), j.Node(), status)
		writeSection(stdout, "stdout", j.Stdout())
		writeSection(stdout, "stderr", j.Stderr())
	}
	bar.Finish()
	if err := c.Close(ctx); err != nil {
		return err
	}
	if failed > 0 {
		return &exitError{code: min(failed, 101)}
	}
	return nil
}

func writeSection(w io.Writer, name string, b []byte) {
	if len(b) == 0 {
		return
	}
	fmt.Fprintf(w, "--- %s ---\n%s", name, b)
	if b[len(b)-1] != '\n' {
		fmt.Fprintln(w)
	}
}
