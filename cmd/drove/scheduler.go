package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/scheduler"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// nodeSecretEnv holds the secret a scheduler signs its requests to the
// nodes with, when it differs from the clients'.
const nodeSecretEnv = "DROVE_NODE_SECRET"

func newSchedulerCmd() *cobra.Command {
	var (
		cfg            node.Config
		d              *daemonFlags
		mc             scheduler.Config
		nodeSecretFile string
		nodeCert       string
		nodeKey        string
		nodeCA         string
		stateDir       string
	)
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Run a shared scheduler that many clients use at once over a set of drove nodes",
		Long: `Run the drove shared scheduler (dispy's dispyscheduler): one daemon that many
clients use at once, which runs their jobs on a set of drove nodes. A client
uses it with --scheduler HOST (drove submit, drove demo) or
drove.WithScheduler in Go; it ships its computation to the scheduler once, and
the scheduler ships it on to each node (by content hash: a blob a node holds
is never sent again, whichever client it came from).

The nodes are given with --nodes: addresses ("10.0.0.5", "node7:9701"), or
patterns ("*", "10.0.0.*") matched against the nodes that answer UDP
discovery now and that announce themselves later (on UDP port --port; start
the nodes with --scheduler-host THIS-HOST across subnets). A node that goes
down is tried again every 5s; its running jobs end Abandoned, or run again
elsewhere if their client made them reentrant.

The nodes' CPUs are shared between the clients' computations by --policy:
fair (the default) gives each computation with jobs an even share; fsfs runs
jobs in the order they were submitted, whichever computation they belong
to; early runs the earliest computation's jobs first, the later ones taking
the CPUs it leaves free. A computation made exclusive (drove.WithExclusive,
--exclusive on submit and demo) runs alone: once those created before it are
done, and holding back those created after it until it is. While several
computations are open, a node gets a job only when it has a free CPU, so
that the policy decides what runs next.

Security towards clients is a node's: --secret, --secret-file or
$DROVE_SECRET, or mutual TLS with --tls-cert, --tls-key and --tls-ca. Towards
the nodes, the scheduler signs with --node-secret-file or $DROVE_NODE_SECRET
(default: the clients' secret), or uses --node-tls-cert, --node-tls-key and
--node-tls-ca. The scheduler is one client of its nodes, under an id kept in
--dest-path, so that after a restart the nodes still know it.

With --state DIR the scheduler loses nothing when it is stopped or killed
(kill -9 included): it keeps, in one database in DIR, every computation, every job
that has no result yet (its input, and the node it went to) and every
result its client has not acknowledged. Started again with the same --state,
it takes the computations up again: queued jobs are queued again, jobs that
were on nodes are not run again but their outcomes fetched from the nodes
(which keep the scheduler's results while it is away), and each client,
which keeps trying the scheduler meanwhile, gets every result once. DIR
also holds the clients' files and the scheduler's id unless --dest-path is
given (then keep both). Without --state a restarted scheduler has forgotten
its computations, and their clients' jobs end or run again elsewhere as on a
lost node.`,
		Example: `  DROVE_SECRET=s3cret drove scheduler --nodes '*'
  drove scheduler --nodes 10.0.0.5,10.0.0.6 --secret-file /etc/drove/secret --policy fsfs
  drove scheduler --nodes '10.0.0.*' --state /var/lib/drove/scheduler
  # then, on any client machine:
  DROVE_SECRET=s3cret drove submit --scheduler schedhost -a 1 -a 2 ./compute.sh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.apply(cmd); err != nil {
				return err
			}
			var err error
			if mc.Secret, err = resolveSecret("", nodeSecretFile); err != nil {
				return fmt.Errorf("--node-secret-file: %w", err)
			}
			if nodeSecretFile == "" {
				if mc.Secret = os.Getenv(nodeSecretEnv); mc.Secret == "" {
					mc.Secret = cfg.Secret
				}
			}
			if nodeCert != "" || nodeKey != "" || nodeCA != "" {
				if nodeCA == "" {
					return fmt.Errorf("--node-tls-cert and --node-tls-key need --node-tls-ca, the CA of the nodes' certificates")
				}
				if mc.TLS, err = nodeauth.ClientTLS(nodeCert, nodeKey, nodeCA); err != nil {
					return err
				}
			}
			if mc.CPUs < 0 {
				return fmt.Errorf("--cpus must be 0 (all) or more, got %d", mc.CPUs)
			}
			if cfg.Dir == "" {
				cfg.Dir = stateDir
			}
			if cfg.Dir == "" {
				cfg.Dir = filepath.Join(os.TempDir(), "drove", "scheduler")
			}
			if stateDir != "" {
				db, err := openState(stateDir, cfg.Clean)
				if err != nil {
					return err
				}
				defer db.Close()
				cfg.State, mc.State = db, db
			}
			mc.Dir = cfg.Dir
			mc.Logger = cfg.Logger
			mc.Discovery.ListenAddr = ":" + strconv.Itoa(cfg.Port)
			if cfg.Port == 0 {
				// A random TCP port has no UDP twin the nodes know of.
				mc.Discovery.ListenAddr = ":0"
			}
			m := scheduler.New(mc)
			cfg.Machines = m
			// Clients discovering nodes must not take the scheduler for
			// one.
			cfg.Discovery = false
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "drove scheduler %s on %s for nodes %v\n", n.Name(), n.Addr(), mc.Nodes)
			return n.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	d = addDaemonFlags(f, &cfg, scheduler.DefaultPort, "the nodes' CPUs")
	f.StringSliceVarP(&mc.Nodes, "nodes", "n", nil, `drove nodes to run jobs on, comma-separated or repeated: host[:port] (port default 9701) or patterns ("*", "10.0.0.*", "*:PORT" for nodes on another port) found by UDP discovery, pinged again every 2s while no node is found`)
	f.IntVarP(&mc.CPUs, "cpus", "c", 0, "most CPUs to use on each node; 0 for all a node offers")
	f.StringVar(&cfg.Dir, "dest-path", "", "directory for clients' files and the scheduler's id (default --state, else $TMPDIR/drove/scheduler)")
	f.StringVar(&stateDir, "state", "", "directory of the scheduler's state (computations, jobs, undelivered results), kept across restarts and kill -9; --clean forgets it")
	f.StringVar(&nodeSecretFile, "node-secret-file", "", "file holding the secret of the nodes (default $"+nodeSecretEnv+", else the clients' secret)")
	f.StringVar(&nodeCert, "node-tls-cert", "", "client certificate (PEM) the scheduler presents to nodes (mutual TLS)")
	f.StringVar(&nodeKey, "node-tls-key", "", "key of --node-tls-cert (PEM)")
	f.StringVar(&nodeCA, "node-tls-ca", "", "CA (PEM) of the nodes' certificates")
	f.BoolVar(&mc.Discovery.Multicast, "udp-multicast", false, "discover nodes over IPv4 multicast group 239.255.61.59 instead of broadcast")
	f.DurationVar(&mc.Retry, "node-retry", 0, "how often a node that is down or unreachable is tried again (default 5s)")
	return cmd
}

// openState opens the scheduler's state database in dir; clean starts
// with an empty one.
func openState(dir string, clean bool) (*state.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	path := filepath.Join(dir, state.FileName)
	if clean {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("--clean: %w", err)
		}
	}
	return state.Open(path)
}
