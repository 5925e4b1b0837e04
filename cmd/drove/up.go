package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/scheduler"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/sshdaemon"
)

// upHostFlags are the host flags drove up and drove down share, as drove
// exec takes them.
type upHostFlags struct {
	ssh       sshFlags
	sets      []string
	hostFiles []string
	exclude   []string
	user      string
	fanout    int
}

func (h *upHostFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	// -h is the hosts file, as in pssh and drove exec, so help is only
	// --help.
	f.BoolP("help", "", false, "help for "+cmd.Name())
	h.ssh.register(cmd)
	f.StringArrayVarP(&h.sets, "nodeset", "w", nil, "hosts as a node set: `NODESET` of [user@]host[:port] (repeatable; hosts may also be given as arguments)")
	f.StringArrayVarP(&h.hostFiles, "hosts", "h", nil, "read hosts from a pssh hosts `FILE` (repeatable)")
	f.StringArrayVarP(&h.exclude, "exclude", "x", nil, "leave out the hosts of `NODESET` (repeatable)")
	f.StringVarP(&h.user, "user", "l", "", "login `NAME` for hosts that name no user")
	f.IntVarP(&h.fanout, "par", "p", 32, "how many hosts are worked on at once")
}

// targets returns the hosts of the flags and of args, as SSH targets.
func (h *upHostFlags) targets(args []string) ([]string, error) {
	if h.fanout < 1 {
		return nil, errors.New("-p must be at least 1")
	}
	hosts, err := parseHostArgs(hostset.Selection{Sets: append(append([]string(nil), h.sets...), args...), Files: h.hostFiles, Exclude: h.exclude})
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts (give HOST arguments, -w NODESET or -h HOSTSFILE)")
	}
	out := make([]string, 0, len(hosts))
	seen := map[string]bool{}
	for _, x := range hosts {
		if x.User == "" {
			x.User = h.user
		}
		if t := x.Target(); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// each runs fn for every target, at most h.fanout at once, and returns
// the results in the targets' order.
func each[R any](h *upHostFlags, targets []string, fn func(target string) R) []R {
	out := make([]R, len(targets))
	sem := make(chan struct{}, h.fanout)
	var wg sync.WaitGroup
	for i, t := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = fn(t)
		})
	}
	wg.Wait()
	return out
}

// managedFlags are the daemon flags drove up sets itself.
var managedFlags = map[string]string{
	"--host": "--bind", "-i": "--bind", "--port": "--port", "-p": "--port",
	"--dest-path": "", "--secret": "--secret-file or $" + secretEnv, "-s": "--secret-file or $" + secretEnv,
	"--secret-file": "--secret-file", "--tls-cert": "--tls-cert", "--tls-key": "--tls-key", "--tls-ca": "--tls-ca",
}

type upFlags struct {
	hosts      upHostFlags
	scheduler  bool
	nodes      []string
	port       int
	bind       string
	cpus       int
	secretFile string
	certFile   string
	keyFile    string
	caFile     string
	insecure   bool
	binary     string
	launcher   string
	wait       time.Duration
}

func newUpCmd() *cobra.Command {
	var fl upFlags
	cmd := &cobra.Command{
		Use:   "up [flags] HOST… | -w NODESET | -h HOSTSFILE  [-- DAEMON-FLAG…]",
		Short: "Start drove nodes (or a scheduler) on SSH hosts",
		Long: `drove up makes SSH hosts drove nodes: on each host, over SSH and SFTP only, it
checks the platform (uname -sm; a host of another OS or architecture than the
drove binary fails), copies the drove binary into a content-addressed cache
(${XDG_CACHE_HOME:-~/.cache}/drove/blobs/SHA256, mode 0700; a host that has it
receives nothing), ships the cluster secret (--secret-file or $DROVE_SECRET)
or the TLS files (--tls-cert, --tls-key, --tls-ca) with mode 0600, starts
"drove node" detached from the session, waits until it answers /healthz and
prints a table of the hosts and their state: up, already up, or failed and
why. A failed host does not stop the others; the exit status is 1 if any
failed.

Hosts are given as drove exec takes them: arguments and -w are ClusterShell
node sets of [user@]host[:port] entries or ssh_config aliases ("node[01-16]"),
-h reads a pssh hosts file. The SSH flags are those of drove run, exec and fs.

Each daemon listens on the address the SSH connection reached its host at
(as the host sees it; --bind '*' for every interface, --bind ADDR for
another) and on --port (9701, or 9700 for a scheduler; 0 lets each daemon
pick a free port, shown in the table). Its files live in
~/.cache/drove/up/ROLE-ADDRESS-PORT/: pid, log, secret, and dest/ (its
--dest-path). Running drove up again changes nothing on a host whose daemon
is running and answers: it says "already up" (and notes it if the binary or
flags differ: drove down, then up, applies them).

The daemon is started with "systemd-run --user" where the user's systemd
instance lingers (loginctl enable-linger; without lingering it would stop
with the last session), else with setsid(1) and SIGHUP ignored, its output
going to the log file (--launcher picks one).

Daemon flags: --cpus is passed on; anything after "--" is given to every
daemon as it is (drove up -w n[1-4] -- --policy fsfs --max-file-size 1g).
The flags drove up sets itself (--host, --port, --dest-path, --secret*,
--tls-*) are refused there.

--scheduler starts "drove scheduler" instead, with --nodes as its nodes
(drove up -w n[1-4]; drove up --scheduler sched1 --nodes n1,n2,n3,n4).`,
		Example: `  DROVE_SECRET=s3cret drove up -w node[01-16]
  drove up --secret-file ~/.drove-secret --cpus -1 -h hosts.txt -- --policy fsfs
  drove up --scheduler --nodes node01,node02 --secret-file ~/.drove-secret sched1
  DROVE_SECRET=s3cret drove demo --nodes node01,node02
  drove down -w node[01-16]`,
		Args:         cobra.ArbitraryArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			var daemonArgs []string
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				args, daemonArgs = args[:n], args[n:]
			}
			return runUp(cmd, &fl, args, daemonArgs)
		},
	}
	fl.hosts.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&fl.scheduler, "scheduler", false, "start drove scheduler instead of drove node")
	f.StringSliceVar(&fl.nodes, "nodes", nil, "with --scheduler: the scheduler's drove `NODES`, host[:port] or patterns, comma-separated or repeated (its --nodes)")
	f.IntVar(&fl.port, "port", node.DefaultPort, "TCP port of each daemon (9700 with --scheduler); 0: a free port each, shown in the table")
	f.StringVar(&fl.bind, "bind", "", "`ADDR` each daemon listens on (default: the address SSH reached the host at; '*': every interface)")
	f.IntVarP(&fl.cpus, "cpus", "c", 0, "passed on as the daemon's --cpus: 0 all, negative leaves that many free (default: the daemon's own)")
	f.StringVar(&fl.secretFile, "secret-file", "", "`FILE` holding the cluster secret to ship, mode 0600 (default $"+secretEnv+")")
	f.StringVar(&fl.certFile, "tls-cert", "", "the daemons' TLS certificate `FILE` (PEM) to ship; %h in the name is replaced by the host as given")
	f.StringVar(&fl.keyFile, "tls-key", "", "key `FILE` of --tls-cert (PEM) to ship, mode 0600; %h as for --tls-cert")
	f.StringVar(&fl.caFile, "tls-ca", "", "cluster CA `FILE` (PEM) to ship: clients must present a certificate it signed")
	f.BoolVar(&fl.insecure, "insecure", false, "start daemons that serve anyone, with neither secret nor TLS")
	f.StringVar(&fl.binary, "binary", "", "drove `EXECUTABLE` to install (default: this one); a Go binary for the hosts' platform")
	f.StringVar(&fl.launcher, "launcher", sshdaemon.LaunchAuto, "`HOW` to detach the daemon: auto (systemd-run --user if the user lingers, else setsid), systemd or setsid")
	f.DurationVar(&fl.wait, "wait", 30*time.Second, "how long to wait for each daemon to answer /healthz")
	return cmd
}

func runUp(cmd *cobra.Command, fl *upFlags, args, daemonArgs []string) error {
	targets, err := fl.hosts.targets(args)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	for _, a := range daemonArgs {
		name, _, _ := strings.Cut(a, "=")
		if use, ok := managedFlags[name]; ok {
			if use == "" {
				return fmt.Errorf("up: %s is set by drove up itself", name)
			}
			return fmt.Errorf("up: %s is set by drove up itself: give drove up's %s", name, use)
		}
	}
	base := sshdaemon.Config{Bind: fl.bind, Port: fl.port, Launcher: fl.launcher, Wait: fl.wait, Role: sshdaemon.RoleNode}
	switch fl.launcher {
	case sshdaemon.LaunchAuto, sshdaemon.LaunchSystemd, sshdaemon.LaunchSetsid:
	default:
		return fmt.Errorf("up: --launcher must be auto, systemd or setsid, not %q", fl.launcher)
	}
	if fl.scheduler {
		base.Role = sshdaemon.RoleScheduler
		if !cmd.Flags().Changed("port") {
			base.Port = scheduler.DefaultPort
		}
		if len(fl.nodes) == 0 {
			return errors.New("up: --scheduler needs --nodes, the scheduler's drove nodes")
		}
		base.Args = append(base.Args, "--nodes", strings.Join(fl.nodes, ","))
	} else if len(fl.nodes) > 0 {
		return errors.New("up: --nodes is for --scheduler")
	}
	if cmd.Flags().Changed("cpus") {
		base.Args = append(base.Args, "--cpus", strconv.Itoa(fl.cpus))
	}
	if fl.insecure {
		base.Args = append(base.Args, "--insecure")
	}
	base.Args = append(base.Args, daemonArgs...)
	if base.Secret, err = resolveSecret("", fl.secretFile); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	useTLS := fl.certFile != "" || fl.keyFile != "" || fl.caFile != ""
	if useTLS && (fl.certFile == "" || fl.keyFile == "" || fl.caFile == "") {
		return errors.New("up: TLS needs --tls-cert, --tls-key and --tls-ca")
	}
	if base.Secret == "" && !useTLS && !fl.insecure {
		return fmt.Errorf("up: no secret: give --secret-file or $%s, or --tls-cert, --tls-key and --tls-ca (or --insecure)", secretEnv)
	}
	if useTLS {
		if base.HealthTLS, err = nodeauth.ClientTLS("", "", fl.caFile); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	bin := fl.binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	blob, err := hostcache.NewBlob(bin)
	if err != nil {
		return fmt.Errorf("up: --binary: %w", err)
	}
	base.Binary = blob
	pool, err := fl.hosts.ssh.pool()
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer pool.Close()

	ctx := cmd.Context()
	results := each(&fl.hosts, targets, func(target string) sshdaemon.Result {
		cfg := base
		if useTLS {
			var tf sshdaemon.TLSFiles
			if err := readTLSFiles(&tf, fl, target); err != nil {
				return sshdaemon.Result{Target: target, Role: cfg.Role, State: sshdaemon.StateFailed, Err: err}
			}
			cfg.TLS = &tf
		}
		return sshdaemon.Up(ctx, pool, target, cfg)
	})
	return printDaemonTable(cmd.OutOrStdout(), results, false)
}

// readTLSFiles reads the TLS files for target, %h in their names replaced
// by it.
func readTLSFiles(tf *sshdaemon.TLSFiles, fl *upFlags, target string) error {
	for _, x := range []struct {
		dst  *[]byte
		name string
	}{{&tf.Cert, fl.certFile}, {&tf.Key, fl.keyFile}, {&tf.CA, fl.caFile}} {
		b, err := os.ReadFile(strings.ReplaceAll(x.name, "%h", target))
		if err != nil {
			return err
		}
		*x.dst = b
	}
	return nil
}

// printDaemonTable prints a line per result and returns an exitError if
// any failed. withRole adds the role to the detail (drove down).
func printDaemonTable(w io.Writer, results []sshdaemon.Result, withRole bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tADDRESS\tDETAIL")
	failed := 0
	for _, r := range results {
		addr := r.Addr
		if addr == "" {
			addr = "-"
		}
		var detail []string
		if withRole && r.Role != "" {
			detail = append(detail, r.Role)
		}
		if r.Role == sshdaemon.RoleScheduler && !withRole {
			detail = append(detail, "scheduler")
		}
		if r.PID > 0 {
			detail = append(detail, "pid "+strconv.Itoa(r.PID))
		}
		if r.Launcher != "" {
			detail = append(detail, "started with "+r.Launcher)
		}
		if r.Uploaded {
			detail = append(detail, "binary sent")
		}
		if r.Note != "" {
			detail = append(detail, r.Note)
		}
		if r.Err != nil {
			failed++
			detail = append(detail, strings.TrimPrefix(r.Err.Error(), "drove: "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Target, r.State, addr, strings.Join(detail, ", "))
	}
	tw.Flush()
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

type downFlags struct {
	hosts     upHostFlags
	scheduler bool
	node      bool
	port      int
	bind      string
}

func newDownCmd() *cobra.Command {
	var fl downFlags
	cmd := &cobra.Command{
		Use:   "down [flags] HOST… | -w NODESET | -h HOSTSFILE",
		Short: "Stop the drove daemons drove up started on SSH hosts",
		Long: `drove down stops, on each host, the drove daemons (nodes and schedulers) that
drove up started there at the address SSH reached the host at (and those
listening on every interface): SIGTERM, so that running jobs are stopped and
computations closed, then SIGKILL after 30s. It prints a table of the hosts
and their daemons: stopped, or not running (none was, or it had ended).
--port, --bind, --node and --scheduler pick which daemons. Hosts and SSH
flags are given as for drove up; the exit status is 1 if any host failed.`,
		Example: `  drove down -w node[01-16]
  drove down --scheduler sched1`,
		Args:         cobra.ArbitraryArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := fl.hosts.targets(args)
			if err != nil {
				return fmt.Errorf("down: %w", err)
			}
			filter := sshdaemon.DownFilter{Port: fl.port, Bind: fl.bind}
			switch {
			case fl.scheduler && fl.node:
			case fl.scheduler:
				filter.Role = sshdaemon.RoleScheduler
			case fl.node:
				filter.Role = sshdaemon.RoleNode
			}
			pool, err := fl.hosts.ssh.pool()
			if err != nil {
				return fmt.Errorf("down: %w", err)
			}
			defer pool.Close()
			ctx := cmd.Context()
			per := each(&fl.hosts, targets, func(target string) []sshdaemon.Result {
				return sshdaemon.Down(ctx, pool, target, filter)
			})
			var results []sshdaemon.Result
			for _, rs := range per {
				results = append(results, rs...)
			}
			return printDaemonTable(cmd.OutOrStdout(), results, true)
		},
	}
	fl.hosts.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&fl.scheduler, "scheduler", false, "stop schedulers only")
	f.BoolVar(&fl.node, "node", false, "stop nodes only")
	f.IntVar(&fl.port, "port", 0, "stop only the daemons on this `PORT` (default any)")
	f.StringVar(&fl.bind, "bind", "", "stop the daemons listening on `ADDR` (default: the address SSH reached the host at, and every interface; '*': every interface only)")
	return cmd
}
