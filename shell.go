package drove

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/wire"
	"github.com/drove-dev/drove/remote"
)

// Shell returns a computation that runs each job's input as a shell command
// line, exactly as given, and returns its exit code; a non-zero exit is a
// result, not an error, and stdout and stderr are captured. On an SSH host
// the command line is run by the user's login shell, as `ssh host command`
// and GNU parallel -S run it (for an account whose shell is a POSIX sh that
// is /bin/sh -c); on this machine by /bin/sh -c.
//
// Its nodes are SSH hosts, "ssh://[user@]host[:port]" or "ssh://alias" for
// an alias of ~/.ssh/config, reached with ssh-agent or key files and checked
// against ~/.ssh/known_hosts; nothing but sshd is needed on them. Each host
// runs as many commands at once as it has CPUs, or as WithCPUs says (n
// slots per host; -n leaves n of its CPUs free). ":" (or no nodes at all)
// runs commands on this machine. A host that cannot be reached, or whose
// host key is refused, is left out and reported to OnNodeStatus as
// NodeLost with an error wrapping an *SSHConnError or an *SSHHostKeyError;
// NewCluster fails (with those errors) only when no node can be used. A
// host whose connection breaks later is reported NodeLost, dialled again
// (at once, then after 1, 2, 4, 8 and 16 s), and NodeInitialized again
// once it is back; one that stays away is given up and logged.
//
// Commands on an SSH host run through an agent: this program's own
// executable, copied once into a cache on the host and started there over
// one SSH session (drove.Main serves it), which runs each command as sshd
// would — the login shell with -c, the environment sshd gives, its own
// process group, stopped as a whole on cancel or timeout — without a new
// SSH session per command. A host that cannot run it (another platform, no
// writable cache, a noexec one) runs a session per command, with a warning
// once; WithoutAgent asks for that everywhere.
func Shell() *Function[string, int] {
	return &Function[string, int]{
		shell:  true,
		encode: func(cmd string) ([]byte, error) { return []byte(cmd), nil },
		decode: wire.ParseExitCode,
	}
}

// SSHConfig tunes how a Shell cluster reaches its SSH hosts. It is
// [remote.Config], drove's one SSH configuration type (package remote's
// Dial takes it with remote.WithConfig); the fields this type had before
// it became an alias (ConfigFile, KnownHosts, IdentityFiles, AcceptNew)
// keep their names and meaning. The zero value means OpenSSH's defaults.
type SSHConfig = remote.Config

// WithSSH sets how a cluster reaches its SSH hosts (a Shell cluster's, and
// the ssh:// nodes of functions and programs). The default is
// OpenSSH's: ~/.ssh/config, ~/.ssh/known_hosts strictly, ssh-agent and the
// usual key files. A zero ConnectTimeout is [WithConnectTimeout]'s, a nil
// Logger [WithLogger]'s.
func WithSSH(cfg SSHConfig) Option {
	return optionFunc(func(c *config) { c.ssh = cfg })
}

// SSHConnError is the error of an SSH host that cannot be reached: a
// connection failure, as opposed to a command that failed.
type SSHConnError = sshconn.ConnError

// SSHHostKeyError is the error of an SSH host whose key is not in
// known_hosts, or differs from the one there.
type SSHHostKeyError = sshconn.HostKeyError

// startShellNodes adds one executor per SSH host (or this machine) to the
// scheduler. The SSH hosts are kept by a fleet: dialled in parallel, one
// that cannot be reached, or whose host key is refused, is left out and
// reported (NodeUnreachable, which OnNodeStatus sees as NodeLost), and
// one whose connection breaks is dialled again with fleet.DefaultBackoff.
// Only when no node at all can be used is that an error.
func (c *Cluster[In, Out]) startShellNodes(ctx context.Context) error {
	nodes := c.cfg.nodes
	if len(nodes) == 0 {
		nodes = []string{":"}
	}
	var targets []string
	for _, n := range nodes {
		if n == ":" {
			continue
		}
		target, ok := strings.CutPrefix(n, "ssh://")
		if !ok || target == "" {
			return fmt.Errorf("drove: shell node %q: want ssh://[user@]host[:port], ssh://alias or \":\"", n)
		}
		targets = append(targets, target)
	}
	if len(targets) > 0 && c.ssh == nil {
		pool, err := sshconn.NewPool(c.sshConfig())
		if err != nil {
			return err
		}
		c.ssh = pool
	}
	added := 0
	for _, n := range nodes {
		if n != ":" {
			continue
		}
		slots := local.Slots(c.cfg.cpus, runtime.NumCPU())
		ex := process.New(process.Config{Slots: slots, NonZeroIsResult: true, Grace: c.cfg.grace, Logger: c.log}, c.s)
		if err := c.s.AddNode(":", slots, ex); err != nil {
			return err
		}
		added++
	}
	if len(targets) == 0 {
		return nil
	}
	// WithCPUs is the slot count of every SSH host too: n > 0 slots, 0 the
	// host's CPU count, -n that count less n.
	slots, free := max(0, c.cfg.cpus), max(0, -c.cfg.cpus)
	var agent *sshagent.Launcher
	if !c.cfg.noAgent {
		agent = &sshagent.Launcher{Warn: c.warnNoAgent, Logger: c.log}
	}
	members := make([]fleet.Member, len(targets))
	for i, target := range targets {
		members[i] = fleet.Member{Key: target, Dial: func(ctx context.Context) (fleet.Conn, error) {
			ex, err := sshexec.New(ctx, c.ssh, target, sshexec.Config{
				Slots: slots, FreeCPUs: free, NonZeroIsResult: true, KillGrace: c.cfg.grace, Agent: agent, Logger: c.log,
			}, c.s)
			if err != nil {
				return fleet.Conn{}, fmt.Errorf("drove: ssh://%s: %w", target, err)
			}
			return fleet.Conn{Executor: ex, Slots: ex.Slots()}, nil
		}}
	}
	c.hosts = fleet.New(c.s, fleet.Config{Permanent: sshconn.Permanent, Logger: c.log})
	var errs []error
	for _, err := range c.hosts.Add(ctx, members...) {
		if err != nil {
			errs = append(errs, err)
		} else {
			added++
		}
	}
	if added == 0 {
		return errors.Join(errs...)
	}
	return nil
}

var _ sched.Executor = (*sshexec.Executor)(nil)

// warnNoAgent says that an SSH host cannot run the agent and gets a
// session per command: to the cluster's logger if it has one, else on
// standard error, once per host.
func (c *Cluster[In, Out]) warnNoAgent(target string, err error) {
	if c.cfg.logger != nil {
		c.log.Warn("drove: cannot start the agent; running a session per command", "host", target, "err", err)
		return
	}
	fmt.Fprintf(os.Stderr, "drove: ssh://%s: cannot start the agent, running a session per command: %v\n", target, err)
}

// sshConfig is WithSSH's configuration, completed by WithConnectTimeout and
// WithLogger.
func (c *Cluster[In, Out]) sshConfig() SSHConfig {
	sc := c.cfg.ssh
	if sc.ConnectTimeout == 0 {
		sc.ConnectTimeout = c.cfg.connect
	}
	if sc.Logger == nil {
		sc.Logger = c.log
	}
	return sc
}
