package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
)

// daemonFlags are the flags drove node and drove scheduler share: both are
// the node daemon (package node), serving clients the same API with the
// same security and bounds; they differ in where the jobs run.
type daemonFlags struct {
	cfg        *node.Config
	secretFile string
	certFile   string
	keyFile    string
	caFile     string
	maxFile    string
	configFile string
	logLevel   string
	policy     string
}

// addDaemonFlags defines the shared flags on f, for cfg; port is the
// daemon's default port and shares says what the policy shares.
func addDaemonFlags(f *pflag.FlagSet, cfg *node.Config, port int, shares string) *daemonFlags {
	d := &daemonFlags{cfg: cfg}
	f.StringArrayVarP(&cfg.Hosts, "host", "i", nil, "address to listen on (repeatable); default all interfaces")
	f.StringVar(&cfg.ExtHost, "ext-host", "", "address to announce to clients, when they reach this daemon through NAT")
	f.IntVarP(&cfg.Port, "port", "p", port, "TCP port for everything: API, files, /healthz, /metrics (0 picks a free one)")
	f.StringVar(&cfg.Name, "name", "", "name shown to clients (default the host name)")
	f.StringVarP(&cfg.Secret, "secret", "s", "", "cluster secret clients must sign requests with (prefer --secret-file or $"+secretEnv+": command lines are visible to other users)")
	f.StringVar(&d.secretFile, "secret-file", "", "file holding the cluster secret")
	f.StringVar(&d.certFile, "tls-cert", "", "TLS certificate of this daemon (PEM)")
	f.StringVar(&d.keyFile, "tls-key", "", "key of --tls-cert (PEM)")
	f.StringVar(&d.caFile, "tls-ca", "", "cluster CA (PEM): clients must present a certificate it signed (mutual TLS)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "serve any client, of any user and address, without a secret or TLS")
	f.StringVar(&d.maxFile, "max-file-size", "0", "largest file a client may send or a job send back, with k, m, g or t suffix; 0 for no limit")
	f.DurationVar(&cfg.ZombieInterval, "zombie-interval", 60*time.Minute, "how long a client may stay away before its computation is closed and its files deleted")
	f.DurationVar(&cfg.PingInterval, "ping-interval", 2*time.Second, "heartbeat interval on client connections, unless the client asks for another")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "most TCP connections open at once; at the bound the oldest one that has not authenticated is closed to make room (0: half the open-file limit less 64, at most 4096)")
	f.IntVar(&cfg.MaxConnsPerHost, "max-conns-per-host", 256, "most TCP connections from one client address (IPv6: one /64) at once, bounded the same way")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 2*time.Minute, "close a connection with no request in flight for this long (an open results stream keeps its connection)")
	f.DurationVar(&cfg.UnauthTimeout, "unauth-timeout", 30*time.Second, "close a connection that has not made an authenticated request this long after connecting")
	f.BoolVar(&cfg.Clean, "clean", false, "delete what --dest-path holds from an earlier run before starting")
	f.StringVar(&d.configFile, "config", "", `file of "flag = value" lines (dispy's --config; [DEFAULT] headers and # comments are ignored); command-line flags win`)
	f.StringVar(&d.policy, "policy", "fair", "how computations share "+shares+": fair (even shares), fsfs (first submitted, first served) or early (earliest computation first)")
	f.StringVar(&d.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return d
}

// apply reads the config file, checks the flags and fills in what they
// configure: the secret, TLS, the policy, the bounds and the logger.
func (d *daemonFlags) apply(cmd *cobra.Command) error {
	cfg := d.cfg
	if d.configFile != "" {
		if err := applyConfigFile(cmd.Flags(), d.configFile); err != nil {
			return err
		}
	}
	var err error
	if cfg.Secret, err = resolveSecret(cfg.Secret, d.secretFile); err != nil {
		return err
	}
	if cfg.MaxFileSize, err = parseSize(d.maxFile); err != nil {
		return fmt.Errorf("--max-file-size: %w", err)
	}
	if d.certFile != "" || d.keyFile != "" || d.caFile != "" {
		if cfg.TLS, err = nodeauth.ServerTLS(d.certFile, d.keyFile, d.caFile); err != nil {
			return err
		}
	}
	if cfg.Policy, err = sched.ParsePolicy(d.policy); err != nil {
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
	if err := level.UnmarshalText([]byte(d.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	if cfg.TLS != nil && !node.MutualTLS(cfg.TLS) {
		cfg.Logger.Warn("--tls-cert without --tls-ca: TLS encrypts connections but does not authenticate clients")
	}
	if !cfg.Authenticates() && !cfg.Insecure {
		cfg.Logger.Warn("no --secret and no mutual TLS (--tls-ca): serving only this user's clients on this machine; use --secret for other users and machines, or --insecure to serve anyone")
	}
	return nil
}
