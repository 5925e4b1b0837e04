package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drove-dev/drove/internal/node"
)

// secretEnv is the environment variable holding the cluster secret, for
// nodes and clients; the secret never needs to be on a command line.
const secretEnv = "DROVE_SECRET"

func newNodeCmd() *cobra.Command {
	var (
		cfg       node.Config
		d         *daemonFlags
		schedHost []string
		noDisc    bool
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a node daemon that executes jobs for drove clients",
		Long: `Run the drove node daemon (dispy's dispynode): it executes the jobs of any
number of clients' computations on this machine's CPUs, sharing the CPUs
between them, and serves everything on one TCP port (default 9701): the
control API, content-addressed file transfer, /healthz and /metrics.

Security: with --secret (or --secret-file, or $DROVE_SECRET) every request
must be signed with the cluster secret (the secret itself never crosses the
network); with --tls-cert, --tls-key and --tls-ca clients need a certificate
of the cluster CA (see "drove cert"); --tls-cert and --tls-key without
--tls-ca only encrypt and do not count. With neither, only clients of the
same user on this machine are served (on Linux; elsewhere none), unless
--insecure is given.

The CPUs are shared between the computations by --policy: fair (the
default) gives each computation with jobs an even share of the CPU time;
fsfs runs the jobs in the order they were submitted, whichever computation
they belong to; early runs the earliest computation's jobs first, the later
ones taking the CPUs it leaves free. A computation's own jobs run in the
order submitted.

A client that goes away finds its finished results kept for it when it comes
back; after --zombie-interval without contact its computation is closed and
its files deleted.`,
		Example: `  DROVE_SECRET=s3cret drove node
  drove node --cpus -1 --host 10.0.0.5 --secret-file /etc/drove/secret
  drove node --tls-cert node.pem --tls-key node-key.pem --tls-ca ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.apply(cmd); err != nil {
				return err
			}
			cfg.SchedulerHosts = schedHost
			cfg.Discovery = !noDisc
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "drove node %s serving %d CPUs on %s\n", n.Name(), n.CPUs(), n.Addr())
			return n.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	d = addDaemonFlags(f, &cfg, node.DefaultPort, "the CPUs")
	f.IntVarP(&cfg.CPUs, "cpus", "c", 0, "CPUs to use: 0 for all, a negative number leaves that many free")
	f.StringVar(&cfg.Dir, "dest-path", "", "directory for received files, with per-client and per-computation subdirectories (default $TMPDIR/drove/node)")
	f.IntVar(&cfg.Serve, "serve", 0, "exit after serving this many clients (distinct client ids; others are refused meanwhile) once they have closed their computations; 0 for no limit")
	f.StringArrayVar(&schedHost, "scheduler-host", nil, "client host[:port] (port default 9700) told by UDP unicast that this node is up, at start and every 10s, so a client on another subnet that discovers nodes (\"*\") finds it (repeatable)")
	f.BoolVar(&noDisc, "no-discovery", false, "do not answer UDP discovery (clients then list this node by address)")
	f.BoolVar(&cfg.Multicast, "udp-multicast", false, "discovery over IPv4 multicast group 239.255.61.59 instead of broadcast")
	return cmd
}

// resolveSecret picks the secret from the flag, the file or the
// environment, in that order.
func resolveSecret(flag, file string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("--secret-file: %s is empty", file)
		}
		return s, nil
	}
	return os.Getenv(secretEnv), nil
}

// parseSize parses a byte count with an optional k/m/g/t suffix (powers of
// 1024, as dispynode's --max_file_size).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "b"), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return n * mult, nil
}

// applyConfigFile sets flags from "name = value" lines; flags given on the
// command line are left alone.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("--config %s:%d: want name = value", path, ln)
		}
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v = strings.TrimSpace(v)
		fl := fs.Lookup(k)
		if fl == nil || k == "config" {
			return fmt.Errorf("--config %s:%d: unknown option %q", path, ln, k)
		}
		if fl.Changed {
			continue
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("--config %s:%d: %s: %w", path, ln, k, err)
		}
		fl.Changed = false // a later line may not override, the command line may
	}
	return sc.Err()
}
