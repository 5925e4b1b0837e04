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
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/parallel"
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

	// Node sets as clush and pdsh take them, and copies (pscp, pslurp,
	// clush --copy/--rcopy): see registerSetCopyFlags.
	exclude []string
	copy    bool
	rcopy   bool
	dest    string
	noAgent bool
}

func newExecCmd() *cobra.Command {
	var fl execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] -w NODESET | -h HOSTSFILE  COMMAND [ARG…] | --copy SRC… | --rcopy SRC…",
		Short: "Run the same command on every host (pssh, pdsh, clush)",
		Long: `drove exec runs one shell command on every host at once, at most -p hosts at a
time, over pooled SSH connections, in the manner of pssh, pdsh and clush.

Hosts: -w takes ClusterShell node sets of [user@]host[:port] entries or
ssh_config aliases ("web[01-12],db1", "admin@node[1-4]:2222"); -h reads a pssh
hosts file: one "[user@]host[:port]" or "host[:port] user" per line, # starts a
comment, and the host part may be a node set. Both may be repeated. Node sets
take ClusterShell's operators, applied left to right: "h[1-9]!h5" (minus),
"a&b" (and), "a^b" (xor), and its @group and @source:group (from
groups.d/*.yaml in /etc/clustershell, ~/.config/clustershell and
~/.local/etc/clustershell, and ~/.config/drove/groups.yaml), and pdsh's
"h[1-4],-h2" (leave h2 out) and "^FILE" (the hosts in FILE). -x NODESET
leaves hosts out.

--copy SRC… [--dest DIR] copies local files or directories to every host,
into DIR (created if missing); --rcopy SRC… [--dest DIR] gathers remote ones
from every host into DIR/NAME.HOST, as clush --copy/--rcopy, pscp and
pslurp do: recursive, keeping modes and modification times, one pssh status
line per host. Without --dest, DIR is the first source's directory.

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
the host as pssh names it ([user@]host[:port], with .1, .2… for repeats), and
then only pssh's status line is printed per host (a stream that goes to no
directory is still printed live).

Exit status: the largest exit code of the remote commands (1 for a failed
copy); 255 for a host that could not be reached or a command killed by -t (as
ssh reports them).`,
		Example: `  drove exec -w node[01-16] uptime
  drove exec -h hosts.txt -p 64 -t 30s -o out -e err 'df -h /'
  drove exec -b -w web[1-8] 'cat /etc/os-release'
  drove exec -I -w db[1-3] 'cat > /tmp/schema.sql' < schema.sql
  drove exec -w @compute -x 'node[07-09]' -o out -e err 'dmesg | tail'
  drove exec -w node[01-16] --copy ./conf app.tar --dest /opt/app
  drove exec -w node[01-16] --rcopy /var/log/syslog --dest ./logs`,
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
	registerSetCopyFlags(cmd, &fl)
	f.BoolVar(&fl.noAgent, "no-agent", false, "run the command in an SSH session of its own instead of through an agent started on each host")
	return cmd
}

func runExec(cmd *cobra.Command, fl *execFlags, args []string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var files func(context.Context, *sshconn.SFTP, string) error
	if fl.copy || fl.rcopy || fl.dest != "" {
		var err error
		if files, err = copyFiles(fl, args); err != nil {
			return err
		}
	} else if len(args) == 0 {
		return errors.New("exec: no command given")
	}
	if fl.fanout < 1 {
		return errors.New("exec: -p must be at least 1")
	}
	hosts, err := parseHostArgs(hostset.Selection{Sets: fl.nodes, Files: fl.hostFiles, Exclude: fl.exclude})
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		return errors.New("exec: no hosts (use -w NODESET or -h HOSTSFILE)")
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

	// pssh prints only status lines when the output goes to -o/-e
	// directories, and pscp/pslurp for copies; a stream that goes to no
	// directory is still printed live, so that nothing is lost.
	status := files != nil || !fl.inline && !fl.gather && (fl.outDir != "" || fl.errDir != "")
	live := files == nil && !fl.inline && !fl.gather && (fl.outDir == "" || fl.errDir == "")
	liveOut, liveErr := stdout, stderr
	if fl.outDir != "" {
		liveOut = io.Discard
	}
	if fl.errDir != "" {
		liveErr = io.Discard
	}
	finished := 0
	ctx := cmd.Context()
	results, err := parallel.Broadcast(ctx, parallel.BroadcastConfig{
		Command: strings.Join(args, " "),
		// Output names come from the hosts as written: pssh names a host
		// with its user only when the entry gave one, not after -l.
		Hosts:   hosts,
		User:    fl.user,
		SSH:     fl.ssh.sshConfig(),
		Fanout:  fl.fanout,
		Timeout: timeout,
		Files:   files,
		Stdin:   input,
		Agent:   agentLauncher(fl.noAgent, stderr),
		Live:    live,
		Stdout:  liveOut,
		Stderr:  liveErr,
		// One call at a time, between whole lines of live output.
		OnDone: func(r parallel.HostResult) {
			if files == nil {
				if err := writeHostFiles(fl, r); err != nil {
					fmt.Fprintf(stderr, "drove: exec: %v\n", err)
				}
			}
			finished++
			switch {
			case fl.inline:
				printInline(stdout, finished, r)
			case status:
				printStatus(stdout, finished, r)
			case live && r.Failure != "":
				fmt.Fprintf(stderr, "drove: %s: %s\n", r.Name, r.Failure)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	if fl.gather {
		printGathered(stdout, stderr, results)
	}
	maxCode := 0
	for _, r := range results {
		maxCode = max(maxCode, r.Code)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "drove: exec: interrupted; remote commands killed")
	}
	if maxCode != 0 {
		return &exitError{code: maxCode}
	}
	return nil
}

// printStatus prints pssh's status line for one host.
func printStatus(w io.Writer, n int, r parallel.HostResult) {
	ts := time.Now().Format("15:04:05")
	if r.Failure != "" {
		fmt.Fprintf(w, "[%d] %s [FAILURE] %s %s\n", n, ts, r.Name, r.Failure)
	} else {
		fmt.Fprintf(w, "[%d] %s [SUCCESS] %s\n", n, ts, r.Name)
	}
}

// printInline prints pssh -i's report for one host.
func printInline(w io.Writer, n int, r parallel.HostResult) {
	printStatus(w, n, r)
	w.Write(r.Stdout)
	if len(r.Stderr) > 0 {
		io.WriteString(w, "Stderr: ")
		w.Write(r.Stderr)
	}
}

// printGathered prints clush -b's report: hosts with identical stdout and
// exit code under one header naming them as a node set, largest group
// first. Standard error is gathered the same way, separately, on stderr,
// so that it is neither lost nor mixed into the stdout groups; failures are
// listed on stderr after it.
func printGathered(stdout, stderr io.Writer, results []parallel.HostResult) {
	printGroups(stdout, results, func(r parallel.HostResult) []byte { return r.Stdout })
	printGroups(stderr, results, func(r parallel.HostResult) []byte { return r.Stderr })
	for _, r := range results {
		if r.Failure != "" {
			fmt.Fprintf(stderr, "drove: %s: %s\n", r.Name, r.Failure)
		}
	}
}

// printGroups prints, for the output pick returns, one block per set of
// hosts with identical output and exit code; hosts with none are left out.
func printGroups(w io.Writer, results []parallel.HostResult, pick func(parallel.HostResult) []byte) {
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
		k := fmt.Sprintf("%d\x00%s", r.Code, out)
		g, ok := byKey[k]
		if !ok {
			g = &group{out: out}
			byKey[k] = g
			order = append(order, k)
		}
		g.names = append(g.names, r.Name)
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

// parseHostArgs returns the hosts of node sets (-w, or arguments), pssh
// hosts files (-h) less the node sets of -x, in order, as drove exec, up
// and down take them; @groups come from the group files
// (hostset.DefaultGroupPaths) and pdsh's ^FILE from the file system.
func parseHostArgs(sel hostset.Selection) ([]hostset.Host, error) {
	return hostset.NewExpander().Hosts(sel)
}

func writeHostFiles(fl *execFlags, r parallel.HostResult) error {
	if fl.outDir != "" {
		if err := os.WriteFile(filepath.Join(fl.outDir, r.Name), r.Stdout, 0o644); err != nil {
			return err
		}
	}
	if fl.errDir != "" {
		if err := os.WriteFile(filepath.Join(fl.errDir, r.Name), r.Stderr, 0o644); err != nil {
			return err
		}
	}
	return nil
}
