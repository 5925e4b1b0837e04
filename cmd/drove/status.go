package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/node"
)

func newStatusCmd() *cobra.Command {
	var (
		auth     clientAuth
		asJSON   bool
		jobs     bool
		watch    bool
		interval time.Duration
		limit    int
		status   string
	)
	cmd := &cobra.Command{
		Use:   "status [flags] ADDR",
		Short: "Show what a drove node or scheduler is doing",
		Long: `Show the nodes, computations and job counts of the drove node or drove
scheduler at ADDR (host or host:port, default port 9701) as tables: per node
its state, CPUs, busy CPUs, jobs done, time per job and in all, and what it
has free; per computation its client and jobs pending, running and ended by
status. --jobs adds the latest jobs (--limit of them, --status to keep one
status), --watch redraws every --interval until interrupted, and --json
prints the snapshot as the web monitor's API serves it (GET /api/status on
the daemon's port: kind, name, time, begin, pending, running, nodes,
computations, jobs, jobs_total, jobs_seen, actions).

Requests are signed with the cluster secret (--secret, --secret-file or
$DROVE_SECRET) or made over mutual TLS with --tls-ca, as the other commands'
are. The same daemon serves the web monitor at http://ADDR/.`,
		Example: `  drove status 10.0.0.5
  drove status --jobs --status running --secret-file ~/.drove-secret sched.example:9701
  drove status --watch 127.0.0.1:9701
  drove status --json 127.0.0.1:9701 | jq '.nodes[].busy'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, tc, err := auth.resolve()
			if err != nil {
				return err
			}
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			if limit < 0 || limit > monitor.MaxLimit {
				return fmt.Errorf("--limit must be between 0 and %d", monitor.MaxLimit)
			}
			sc := &statusClient{hc: nodeexec.NewHTTPClient(secret, tc), base: statusURL(args[0], tc)}
			defer sc.hc.CloseIdleConnections()
			q := monitor.Query{Limit: limit, Status: status}
			if !jobs && !asJSON {
				q.Limit = 1 // the counts only
			}
			return runStatus(cmd.Context(), cmd.OutOrStdout(), sc, q, statusOpts{json: asJSON, jobs: jobs, watch: watch, interval: interval})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the snapshot as JSON (the web monitor's /api/status)")
	f.BoolVar(&jobs, "jobs", false, "list the latest jobs too")
	f.BoolVarP(&watch, "watch", "w", false, "redraw every --interval until interrupted")
	f.DurationVar(&interval, "interval", 2*time.Second, "time between redraws with --watch")
	f.IntVar(&limit, "limit", monitor.DefaultLimit, "how many of the latest jobs --jobs and --json list")
	f.StringVar(&status, "status", "", "list only jobs with this status (running, finished, cancelled, terminated, abandoned)")
	auth.register(f)
	return cmd
}

// statusURL is the daemon's base URL for addr (default port 9701).
func statusURL(addr string, tc *tls.Config) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(node.DefaultPort))
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	return scheme + "://" + addr
}

// statusClient reads a daemon's monitor API.
type statusClient struct {
	hc   *http.Client
	base string
}

// get reads the snapshot q asks for, as the web page does.
func (c *statusClient) get(ctx context.Context, q monitor.Query) (monitor.Status, error) {
	v := url.Values{}
	v.Set("limit", strconv.Itoa(q.Limit))
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	var st monitor.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/status?"+v.Encode(), nil)
	if err != nil {
		return st, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return st, fmt.Errorf("reading %s: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return st, fmt.Errorf("%s: %s", c.base, e.Message)
		}
		return st, fmt.Errorf("%s: %s", c.base, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s: not a drove monitor's status: %w", c.base, err)
	}
	return st, nil
}

type statusOpts struct {
	json, jobs, watch bool
	interval          time.Duration
}

func runStatus(ctx context.Context, w io.Writer, c *statusClient, q monitor.Query, o statusOpts) error {
	clear := o.watch && !o.json && isTerminal(w)
	for {
		st, err := c.get(ctx, q)
		if err != nil {
			if ctx.Err() != nil && o.watch {
				return nil
			}
			return err
		}
		if clear {
			fmt.Fprint(w, "\x1b[H\x1b[2J")
		}
		if o.json {
			st.CSRF = ""
			enc := json.NewEncoder(w)
			if !o.watch {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else if err := printClusterStatus(w, st, o.jobs); err != nil {
			return err
		}
		if !o.watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

// printClusterStatus writes st as tables: the nodes, the computations and, with
// jobs, the latest jobs.
func printClusterStatus(w io.Writer, st monitor.Status, jobs bool) error {
	up := st.Time.Sub(st.Begin).Round(time.Second)
	if st.Begin.IsZero() {
		up = 0
	}
	fmt.Fprintf(w, "drove %s %s: up %v, %d jobs pending, %d running\n\n", st.Kind, st.Name, up, st.Pending, st.Running)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tCPUS\tBUSY\tJOBS\tSEC/JOB\tNODE TIME\tCPU FREE\tMEM FREE\tDISK FREE\tSWAP USED\t")
	for _, n := range st.Nodes {
		perJob := "-"
		if n.JobsDone > 0 {
			perJob = fmt.Sprintf("%.2f", n.NodeTime/float64(n.JobsDone))
		}
		state := n.State
		if !n.Allocated && n.State == "up" {
			state = "deallocated"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%.1f\t%s\t%s\t%s\t%s\t\n", n.Name, n.Address, state, n.CPUs, n.Busy, n.JobsDone, perJob, n.NodeTime,
			optPct(n.CPUFree), optBytes(n.MemFree), optBytes(n.DiskFree), optPct(n.SwapUsed))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(st.Computations) == 0 {
		fmt.Fprintln(w, "no computations")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "COMPUTATION\tCLIENT\tWHAT\tPENDING\tRUNNING\tFINISHED\tCANCELLED\tTERMINATED\tABANDONED\tCPU SEC\t")
		for _, c := range st.Computations {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t\n", c.ID, c.Client, c.What, c.Pending, c.Running, c.Finished, c.Cancelled, c.Terminated, c.Abandoned, c.SlotTime)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !jobs {
		return nil
	}
	fmt.Fprintf(w, "\nlatest %d of %d jobs kept (%d seen)\n", len(st.Jobs), st.JobsTotal, st.JobsSeen)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ID\tJOB\tCOMPUTATION\tSTATUS\tNODE\tSTARTED\tRUN SEC\t")
	for _, j := range st.Jobs {
		start := "-"
		if !j.Start.IsZero() {
			start = j.Start.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t\n", j.ID, j.JobID, j.Computation, j.Status, j.Node, start, j.RunTime)
	}
	return tw.Flush()
}

func optPct(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", *p)
}

func optBytes(b *uint64) string {
	if b == nil {
		return "-"
	}
	return humanBytes(*b)
}

// humanBytes formats n in binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
