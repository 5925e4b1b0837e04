package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
)

type execFlags struct {
	ssh       sshFlags
	nodes     []string
	hostFiles []string
	user      string
	fanout    int
	timeout   string
	outDir    string
	errDir    string
	inline    bool
	gather    bool
	stdin     bool
}

func newExecCmd() *cobra.Command {
	var fl execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] -w NODESET | -h HOSTSFILE  COMMAND [ARG…]",
		Short: "Run the same command on every host (pssh, pdsh, clush)",
		Long: `drove exec runs one shell command on every host at once, at most -p hosts at a
time, over pooled SSH connections, in the manner of pssh, pdsh and clush.

Hosts: -w takes ClusterShell node sets of [user@]host[:port] entries or
ssh_config aliases ("web[01-12],db1", "admin@node[1-4]:2222"); -h reads a pssh
hosts file: one "[user@]host[:port]" or "host[:port] user" per line, # starts a
comment, and the host part may be a node set. Both may be repeated.

The COMMAND words are joined with spaces and run by the login shell of the
user on each host (as with "ssh host command") exactly as given, in their
own process group, so -t and Ctrl-C kill all that the command started on
every host.

Output (default): every line as it arrives, prefixed with "host: " (stdout to
standard output, stderr to standard error), and a line on standard error for
each host that failed. -i prints pssh's status line per host, "[n] HH:MM:SS
[SUCCESS|FAILURE] host", followed by the host's whole stdout and, after
"Stderr: ", its stderr. -b gathers hosts with identical output and exit code
under one header naming them as a node set, as clush -b and dshbak -c do;
their standard error is gathered the same way, separately, on stderr.
-o DIR and -e DIR write each host's stdout and stderr to DIR/NAME, NAME being
the host as pssh names it ([user@]host[:port], with .1, .2… for repeats).

Exit status: the largest exit code of the remote commands; 255 for a host
that could not be reached or a command killed by -t (as ssh reports them).`,
		Example: `  drove exec -w node[01-16] uptime
  drove exec -h hosts.txt -p 64 -t 30s -o out -e err 'df -h /'
  drove exec -b -w web[1-8] 'cat /etc/os-release'
  drove exec -I -w db[1-3] 'cat > /tmp/schema.sql' < schema.sql`,
		Args:         cobra.ArbitraryArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd, &fl, args)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	// -h is the hosts file, as in pssh, so help is only --help.
	f.BoolP("help", "", false, "help for exec")
	fl.ssh.register(cmd)
	f.StringArrayVarP(&fl.nodes, "nodes", "w", nil, "target hosts as a node set: `NODESET` of [user@]host[:port] (repeatable)")
	f.StringArrayVarP(&fl.hostFiles, "hosts", "h", nil, "read target hosts from a pssh hosts `FILE` (repeatable)")
	f.StringVarP(&fl.user, "user", "l", "", "login `NAME` for hosts that name no user")
	f.IntVarP(&fl.fanout, "par", "p", 32, "fan-out: how many hosts run the command at once")
	f.StringVarP(&fl.timeout, "timeout", "t", "", "kill the command on a host after `DURATION` (seconds or 1m30s); 0 or none: no limit")
	f.StringVarP(&fl.outDir, "outdir", "o", "", "write each host's stdout to `DIR`/<host>")
	f.StringVarP(&fl.errDir, "errdir", "e", "", "write each host's stderr to `DIR`/<host>")
	f.BoolVarP(&fl.inline, "inline", "i", false, "print a status line and then the whole output of each host as it finishes")
	f.BoolVarP(&fl.gather, "gather", "b", false, "gather hosts with identical output under one node-set header (clush -b)")
	f.BoolVarP(&fl.stdin, "send-input", "I", false, "read standard input once and send it to the command on every host")
	return cmd
}

// hostResult is how the command went on one host.
type hostResult struct {
	host    hostset.Host
	name    string // pssh output file name
	code    int    // exit code; 255 for a connection failure or a kill
	out     []byte
	err     []byte
	failure string // pssh's failure text, or ""
}

func runExec(cmd *cobra.Command, fl *execFlags, args []string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if len(args) == 0 {
		return errors.New("exec: no command given")
	}
	if fl.fanout < 1 {
		return errors.New("exec: -p must be at least 1")
	}
	var hosts []hostset.Host
	for _, w := range fl.nodes {
		hs, err := hostset.ParseHosts(w)
		if err != nil {
			return err
		}
		hosts = append(hosts, hs...)
	}
	for _, name := range fl.hostFiles {
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		hs, err := hostset.ParseHostFile(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		hosts = append(hosts, hs...)
	}
	if len(hosts) == 0 {
		return errors.New("exec: no hosts (use -w NODESET or -h HOSTSFILE)")
	}
	// Output names are taken before -l fills in users: pssh names a host
	// with its user only when the entry gave one.
	names := hostset.OutputNames(hosts)
	for i := range hosts {
		if hosts[i].User == "" {
			hosts[i].User = fl.user
		}
	}
	var timeout time.Duration
	if fl.timeout != "" && fl.timeout != "none" {
		var err error
		if timeout, err = parseDuration(fl.timeout); err != nil {
			return fmt.Errorf("-t: %w", err)
		}
	}
	var input []byte
	if fl.stdin {
		var err error
		if input, err = io.ReadAll(cmd.InOrStdin()); err != nil {
			return fmt.Errorf("exec: reading standard input: %w", err)
		}
	}
	for _, d := range []string{fl.outDir, fl.errDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	pool, err := fl.ssh.pool()
	if err != nil {
		return err
	}
	defer pool.Close()

	command := strings.Join(args, " ")
	results := make([]*hostResult, len(hosts))
	var mu sync.Mutex // serialises printing
	live := !fl.inline && !fl.gather
	finished := 0
	sem := make(chan struct{}, fl.fanout)
	var wg sync.WaitGroup
	ctx := cmd.Context()
	for i, h := range hosts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results[i] = &hostResult{host: h, name: names[i], code: 255, failure: "Interrupted"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := runOnHost(ctx, pool, h, names[i], command, input, timeout, live, &mu, stdout, stderr)
			results[i] = r
			if err := writeHostFiles(fl, r); err != nil {
				mu.Lock()
				fmt.Fprintf(stderr, "drove: exec: %v\n", err)
				mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			finished++
			switch {
			case fl.inline:
				printInline(stdout, finished, r)
			case live && r.failure != "":
				fmt.Fprintf(stderr, "drove: %s: %s\n", r.name, r.failure)
			}
		}()
	}
	wg.Wait()
	if fl.gather {
		printGathered(stdout, stderr, results)
	}
	maxCode := 0
	for _, r := range results {
		if r.code > maxCode {
			maxCode = r.code
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "drove: exec: interrupted; remote commands killed")
	}
	if maxCode != 0 {
		return &exitError{code: maxCode}
	}
	return nil
}

// runOnHost runs the command on one host and collects its output, also
// printing it line by line when live.
func runOnHost(ctx context.Context, pool *sshconn.Pool, h hostset.Host, name, command string, input []byte, timeout time.Duration, live bool, mu *sync.Mutex, stdout, stderr io.Writer) *hostResult {
	r := &hostResult{host: h, name: name}
	var ob, eb bytes.Buffer
	c := &sshconn.Cmd{Command: command, Stdout: &ob, Stderr: &eb, Env: []string{"PSSH_HOST=" + h.Host}}
	var lo, le *prefixWriter
	if live {
		lo = &prefixWriter{mu: mu, w: stdout, prefix: name + ": ", copy: &ob}
		le = &prefixWriter{mu: mu, w: stderr, prefix: name + ": ", copy: &eb}
		c.Stdout, c.Stderr = lo, le
	}
	if input != nil {
		c.Stdin = bytes.NewReader(input)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errTimedOut)
		defer cancel()
	}
	st, err := pool.RunLeader(ctx, h.Target(), c)
	if live {
		lo.flush()
		le.flush()
	}
	r.out, r.err = ob.Bytes(), eb.Bytes()
	var res sched.Result
	proc.Classify(&res, st.End(ctx, err), proc.Rules{})
	var xe *proc.ExitError
	switch {
	case res.Outcome == sched.OK:
	case res.Outcome == sched.Killed && errors.Is(res.Err, errTimedOut):
		r.code, r.failure = 255, "Timed out, Killed by signal 9"
	case res.Outcome == sched.Killed:
		r.code, r.failure = 255, "Interrupted"
	case !errors.As(res.Err, &xe):
		r.code, r.failure = 255, res.Err.Error() // the host, not the command
	case xe.Signal != 0:
		r.code, r.failure = 255, "Killed by signal "+xe.SignalName()
	default:
		r.code, r.failure = xe.Code, fmt.Sprintf("Exited with error code %d", xe.Code)
	}
	return r
}

var errTimedOut = errors.New("timed out")

// printInline prints pssh -i's report for one host.
func printInline(w io.Writer, n int, r *hostResult) {
	ts := time.Now().Format("15:04:05")
	if r.failure != "" {
		fmt.Fprintf(w, "[%d] %s [FAILURE] %s %s\n", n, ts, r.name, r.failure)
	} else {
		fmt.Fprintf(w, "[%d] %s [SUCCESS] %s\n", n, ts, r.name)
	}
	w.Write(r.out)
	if len(r.err) > 0 {
		io.WriteString(w, "Stderr: ")
		w.Write(r.err)
	}
}

// printGathered prints clush -b's report: hosts with identical stdout and
// exit code under one header naming them as a node set, largest group
// first. Standard error is gathered the same way, separately, on stderr,
// so that it is neither lost nor mixed into the stdout groups; failures are
// listed on stderr after it.
func printGathered(stdout, stderr io.Writer, results []*hostResult) {
	printGroups(stdout, results, func(r *hostResult) []byte { return r.out })
	printGroups(stderr, results, func(r *hostResult) []byte { return r.err })
	for _, r := range results {
		if r.failure != "" {
			fmt.Fprintf(stderr, "drove: %s: %s\n", r.name, r.failure)
		}
	}
}

// printGroups prints, for the output pick returns, one block per set of
// hosts with identical output and exit code; hosts with none are left out.
func printGroups(w io.Writer, results []*hostResult, pick func(*hostResult) []byte) {
	type group struct {
		names []string
		out   []byte
	}
	byKey := map[string]*group{}
	var order []string
	for _, r := range results {
		out := pick(r)
		if len(out) == 0 {
			continue
		}
		k := fmt.Sprintf("%d\x00%s", r.code, out)
		g, ok := byKey[k]
		if !ok {
			g = &group{out: out}
			byKey[k] = g
			order = append(order, k)
		}
		g.names = append(g.names, r.name)
	}
	sort.SliceStable(order, func(i, j int) bool { return len(byKey[order[i]].names) > len(byKey[order[j]].names) })
	for _, k := range order {
		g := byKey[k]
		fmt.Fprintf(w, "---------------\n%s (%d)\n---------------\n", hostset.Fold(g.names), len(g.names))
		w.Write(g.out)
		if !bytes.HasSuffix(g.out, []byte("\n")) {
			io.WriteString(w, "\n")
		}
	}
}

func writeHostFiles(fl *execFlags, r *hostResult) error {
	if fl.outDir != "" {
		if err := os.WriteFile(filepath.Join(fl.outDir, r.name), r.out, 0o644); err != nil {
			return err
		}
	}
	if fl.errDir != "" {
		if err := os.WriteFile(filepath.Join(fl.errDir, r.name), r.err, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prefixWriter prints whole lines with a prefix under a shared lock, and
// keeps a copy of everything for -o/-e.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	part   []byte
	copy   *bytes.Buffer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.copy.Write(b)
	p.part = append(p.part, b...)
	i := bytes.LastIndexByte(p.part, '\n')
	if i < 0 {
		return len(b), nil
	}
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(p.part[:i+1], []byte("\n")) {
		if len(line) > 0 {
			out.WriteString(p.prefix)
			out.Write(line)
		}
	}
	p.mu.Lock()
	p.w.Write(out.Bytes())
	p.mu.Unlock()
	p.part = append(p.part[:0], p.part[i+1:]...)
	return len(b), nil
}

func (p *prefixWriter) flush() {
	if len(p.part) == 0 {
		return
	}
	p.mu.Lock()
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.part)
	p.mu.Unlock()
	p.part = nil
}
