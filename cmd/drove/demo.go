package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove"
)

// DemoResult is what a demo job returns, as in dispy's sample.py.
type DemoResult struct {
	Host string
	N    int
}

// DemoArgs is a demo job's input: sleep N units.
type DemoArgs struct {
	N    int
	Unit time.Duration
}

var demoCompute = drove.Func("drove.demo", func(ctx context.Context, a DemoArgs) (DemoResult, error) {
	select {
	case <-time.After(time.Duration(a.N) * a.Unit):
	case <-ctx.Done():
		return DemoResult{}, ctx.Err()
	}
	host, err := os.Hostname()
	if err != nil {
		return DemoResult{}, err
	}
	return DemoResult{Host: host, N: a.N}, nil
})

func newDemoCmd() *cobra.Command {
	var (
		jobs    int
		monAddr string
		unit    time.Duration
		cpus    int
		nodes   []string
		sched   string
		rfile   string
		excl    bool
		sf      sshFlags
		auth    clientAuth
		warn    clusterWarnings
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run dispy's sample on an embedded cluster",
		Long: `Run dispy's sample computation on an embedded cluster of this machine's CPUs:
each job sleeps a random 1 to 10 units (seconds by default) and returns the
host name and its number. Prints one line per job, then the cluster's stats.
Exits 1 if a job did not finish (it failed, or was Abandoned when its node
was lost).

With --nodes or --scheduler, requests are signed with the cluster secret
from --secret, --secret-file or $DROVE_SECRET, and --tls-* talk mutual TLS,
as drove node takes them. A pattern in --nodes ("*", "*:29701" for nodes on
port 29701) finds nodes by UDP broadcast; if none is found within
--discover-timeout, the demo fails saying what it tried. Warnings (a listed
node that cannot be reached, a node lost) go to stderr, and a node that
could not be reached is marked "(lost)" in the stats.`,
		Example: `  drove demo
  drove demo --unit 100ms --jobs 20
  DROVE_SECRET=s3cret drove demo --nodes node1,node2
  drove demo --scheduler schedhost --secret-file ~/.drove/secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if jobs < 1 {
				return fmt.Errorf("--jobs must be at least 1, got %d", jobs)
			}
			if unit <= 0 {
				return fmt.Errorf("--unit must be positive, got %v", unit)
			}
			if len(nodes) > 0 && sched != "" {
				return errors.New("--nodes and --scheduler exclude each other: the scheduler has the nodes")
			}
			if rfile != "" && len(nodes) == 0 && sched == "" {
				return errors.New("--recover-file needs --nodes or --scheduler: the jobs of an embedded cluster end with this command")
			}
			opts := append([]drove.Option{drove.WithCPUs(cpus)}, warn.options(cmd.ErrOrStderr())...)
			if monAddr != "" {
				opts = append(opts, drove.WithMonitor(monAddr))
			}
			switch {
			case sched != "":
				opts = append(opts, drove.WithScheduler(sched))
			case len(nodes) > 0:
				opts = append(opts, drove.WithNodes(nodes...))
				if hasSSHNode(nodes) {
					opts = append(opts, drove.WithSSH(sf.sshConfig()))
				}
			}
			if len(nodes) > 0 || sched != "" {
				ao, err := auth.options()
				if err != nil {
					return err
				}
				opts = append(opts, ao...)
			}
			if rfile != "" {
				opts = append(opts, drove.WithRecoverFile(rfile))
			}
			if excl {
				if len(nodes) == 0 && sched == "" {
					return errors.New("--exclusive needs --scheduler or --nodes: an embedded cluster runs alone anyway")
				}
				opts = append(opts, drove.WithExclusive())
			}
			return runDemo(cmd.Context(), cmd, jobs, unit, opts)
		},
	}
	cmd.Flags().IntVarP(&jobs, "jobs", "n", 5, "number of jobs to submit")
	cmd.Flags().DurationVar(&unit, "unit", time.Second, "how long one unit of sleep is; jobs sleep 1 to 10 units")
	cmd.Flags().IntVarP(&cpus, "cpus", "c", 0, "CPUs to use: 0 for all, a negative number leaves that many free")
	cmd.Flags().StringSliceVar(&nodes, "nodes", nil, "nodes to run on: drove nodes (host[:port], \"*\" or \"*:PORT\" to discover) or SSH hosts (ssh://[user@]host[:port], ssh://alias); default an embedded cluster")
	sf.register(cmd)
	auth.register(cmd.Flags())
	warn.register(cmd.Flags())
	cmd.Flags().StringVar(&sched, "scheduler", "", "run through the shared scheduler (drove scheduler) at host[:port], port 9700 by default")
	cmd.Flags().StringVar(&rfile, "recover-file", "", `with --nodes or --scheduler: keep a file naming this client and its nodes while the jobs run ("drove recover FILE" shows the jobs of a demo that was killed)`)
	cmd.Flags().BoolVar(&excl, "exclusive", false, "with --nodes or --scheduler: run alone, once computations created before this one are done, holding later ones back until it is")
	cmd.Flags().StringVar(&monAddr, "monitor", "", monitorFlagUsage)
	return cmd
}

func runDemo(ctx context.Context, cmd *cobra.Command, n int, unit time.Duration, opts []drove.Option) error {
	c, err := drove.NewCluster(ctx, demoCompute, opts...)
	if err != nil {
		return err
	}
	announceMonitor(cmd.ErrOrStderr(), c)
	jobs := make([]*drove.Job[DemoResult], 0, n)
	for range n {
		j, err := c.Submit(ctx, DemoArgs{N: rand.IntN(10) + 1, Unit: unit})
		if err != nil {
			_ = c.Close(ctx)
			return err
		}
		jobs = append(jobs, j)
	}
	out := cmd.OutOrStdout()
	failed := 0
	for _, j := range jobs {
		r, err := j.Result(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_ = c.Close(ctx)
				return ctx.Err()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "job %d: %v\n", j.ID(), err)
			failed++
			continue
		}
		fmt.Fprintf(out, "%s executed job %d at %s with %d\n", r.Host, j.ID(), j.StartTime().Format("2006-01-02 15:04:05.000"), r.N)
	}
	if err := c.Close(ctx); err != nil {
		return err
	}
	if err := c.Stats().Print(out); err != nil {
		return err
	}
	if failed > 0 {
		// Failed, timed out or Abandoned (their node was lost): the demo
		// did not do what it was asked.
		return fmt.Errorf("%d of %d jobs did not finish", failed, len(jobs))
	}
	return nil
}
