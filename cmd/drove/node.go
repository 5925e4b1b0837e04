package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
)

// secretEnv is the environment variable holding the cluster secret, for
// nodes and clients; the secret never needs to be on a command line.
const secretEnv = "DROVE_SECRET"

func newNodeCmd() *cobra.Command {
	var (
		cfg        node.Config
		secretFile string
		certFile   string
		keyFile    string
		caFile     string
		maxFile    string
		configFile string
		schedHost  []string
		logLevel   string
		policy     string
		noDisc     bool
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
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			var err error
			if cfg.Secret, err = resolveSecret(cfg.Secret, secretFile); err != nil {
				return err
			}
			if cfg.MaxFileSize, err = parseSize(maxFile); err != nil {
				return fmt.Errorf("--max-file-size: %w", err)
			}
			if certFile != "" || keyFile != "" || caFile != "" {
				if cfg.TLS, err = nodeauth.ServerTLS(certFile, keyFile, caFile); err != nil {
					return err
				}
			}
			if cfg.Policy, err = sched.ParsePolicy(policy); err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if cfg.ZombieInterval < time.Second {
				return fmt.Errorf("--zombie-interval must be at least 1s, got %v", cfg.ZombieInterval)
			}
			if cfg.MaxConns < 0 || cfg.MaxConnsPerHost <= 0 {
				return fmt.Errorf("--max-conns must be 0 (automatic) or more and --max-conns-per-host at least 1, got %d and %d", cfg.MaxConns, cfg.MaxConnsPerHost)
			}
			if cfg.IdleTimeout <= 0 || cfg.UnauthTimeout <= 0 {
				return fmt.Errorf("--idle-timeout and --unauth-timeout must be positive, got %v and %v", cfg.IdleTimeout, cfg.UnauthTimeout)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg.SchedulerHosts = schedHost
			if cfg.TLS != nil && !node.MutualTLS(cfg.TLS) {
				cfg.Logger.Warn("--tls-cert without --tls-ca: TLS encrypts connections but does not authenticate clients")
			}
			if !cfg.Authenticates() && !cfg.Insecure {
				cfg.Logger.Warn("no --secret and no mutual TLS (--tls-ca): serving only this user's clients on this machine; use --secret for other users and machines, or --insecure to serve anyone")
			}
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
	f.IntVarP(&cfg.CPUs, "cpus", "c", 0, "CPUs to use: 0 for all, a negative number leaves that many free")
	f.StringArrayVarP(&cfg.Hosts, "host", "i", nil, "address to listen on (repeatable); default all interfaces")
	f.StringVar(&cfg.ExtHost, "ext-host", "", "address to announce to clients, when they reach this node through NAT")
	f.IntVarP(&cfg.Port, "port", "p", node.DefaultPort, "TCP port for everything: API, files, /healthz, /metrics (0 picks a free one)")
	f.StringVar(&cfg.Name, "name", "", "node name shown to clients (default the host name)")
	f.StringVar(&cfg.Dir, "dest-path", "", "directory for received files, with per-client and per-computation subdirectories (default $TMPDIR/drove/node)")
	f.StringVarP(&cfg.Secret, "secret", "s", "", "cluster secret clients must sign requests with (prefer --secret-file or $"+secretEnv+": command lines are visible to other users)")
	f.StringVar(&secretFile, "secret-file", "", "file holding the cluster secret")
	f.StringVar(&certFile, "tls-cert", "", "TLS certificate of this node (PEM)")
	f.StringVar(&keyFile, "tls-key", "", "key of --tls-cert (PEM)")
	f.StringVar(&caFile, "tls-ca", "", "cluster CA (PEM): clients must present a certificate it signed (mutual TLS)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "serve any client, of any user and address, without a secret or TLS")
	f.StringVar(&maxFile, "max-file-size", "0", "largest file a client may send or a job send back, with k, m, g or t suffix; 0 for no limit")
	f.IntVar(&cfg.Serve, "serve", 0, "exit after serving this many clients (distinct client ids; others are refused meanwhile) once they have closed their computations; 0 for no limit")
	f.DurationVar(&cfg.ZombieInterval, "zombie-interval", 60*time.Minute, "how long a client may stay away before its computation is closed and its files deleted")
	f.DurationVar(&cfg.PingInterval, "ping-interval", 2*time.Second, "heartbeat interval on client connections, unless the client asks for another")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "most TCP connections open at once; at the bound the oldest one that has not authenticated is closed to make room (0: half the open-file limit less 64, at most 4096)")
	f.IntVar(&cfg.MaxConnsPerHost, "max-conns-per-host", 256, "most TCP connections from one client address (IPv6: one /64) at once, bounded the same way")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 2*time.Minute, "close a connection with no request in flight for this long (an open results stream keeps its connection)")
	f.DurationVar(&cfg.UnauthTimeout, "unauth-timeout", 30*time.Second, "close a connection that has not made an authenticated request this long after connecting")
	f.StringArrayVar(&schedHost, "scheduler-host", nil, "client host[:port] (port default 9700) told by UDP unicast that this node is up, at start and every 10s, so a client on another subnet that discovers nodes (\"*\") finds it (repeatable)")
	f.BoolVar(&cfg.Clean, "clean", false, "delete what --dest-path holds from an earlier run before starting")
	f.StringVar(&configFile, "config", "", `file of "flag = value" lines (dispynode's --config; [DEFAULT] headers and # comments are ignored); command-line flags win`)
	f.StringVar(&policy, "policy", "fair", "how computations share the CPUs: fair (even shares), fsfs (first submitted, first served) or early (earliest computation first)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
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
