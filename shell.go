package drove

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/wire"
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
// runs as many commands at once as it has CPUs. ":" (or no nodes at all)
// runs commands on this machine. An unreachable host is an error from
// NewCluster wrapping an *SSHConnError; an unknown or changed host key one
// wrapping an *SSHHostKeyError.
func Shell() *Function[string, int] {
	return &Function[string, int]{
		shell:  true,
		encode: func(cmd string) ([]byte, error) { return []byte(cmd), nil },
		decode: wire.ParseExitCode,
	}
}

// SSHConfig tunes how a Shell cluster reaches its SSH hosts. The zero value
// means OpenSSH's defaults.
type SSHConfig struct {
	// ConfigFile is the ssh_config file for Host aliases; "" means
	// ~/.ssh/config.
	ConfigFile string
	// KnownHosts are the known_hosts files; none means ~/.ssh/known_hosts.
	KnownHosts []string
	// IdentityFiles are private keys tried after ssh_config's; none (and
	// none in ssh_config) means ~/.ssh/id_ed25519, id_ecdsa and id_rsa.
	IdentityFiles []string
	// AcceptNew trusts and records the key of a host known_hosts does not
	// list yet, as StrictHostKeyChecking=accept-new; a changed key is still
	// refused.
	AcceptNew bool
}

// WithSSH sets how a Shell cluster reaches its SSH hosts. The default is
// OpenSSH's: ~/.ssh/config, ~/.ssh/known_hosts strictly, ssh-agent and the
// usual key files.
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
// scheduler.
func (c *Cluster[In, Out]) startShellNodes(ctx context.Context) error {
	nodes := c.cfg.nodes
	if len(nodes) == 0 {
		nodes = []string{":"}
	}
	for _, n := range nodes {
		if n == ":" {
			slots := local.Slots(c.cfg.cpus, runtime.NumCPU())
			ex := sshexec.NewLocal(sshexec.LocalConfig{Slots: slots, NonZeroIsResult: true, KillGrace: c.cfg.grace, Logger: c.log}, c.s)
			if err := c.s.AddNode(":", slots, ex); err != nil {
				return err
			}
			continue
		}
		target, ok := strings.CutPrefix(n, "ssh://")
		if !ok || target == "" {
			return fmt.Errorf("drove: shell node %q: want ssh://[user@]host[:port], ssh://alias or \":\"", n)
		}
		if c.ssh == nil {
			sc := sshconn.Config{
				SSHConfigFile:   c.cfg.ssh.ConfigFile,
				KnownHostsFiles: c.cfg.ssh.KnownHosts,
				IdentityFiles:   c.cfg.ssh.IdentityFiles,
				Logger:          c.log,
			}
			if c.cfg.ssh.AcceptNew {
				sc.HostKeyPolicy = sshconn.AcceptNew
			}
			pool, err := sshconn.NewPool(sc)
			if err != nil {
				return err
			}
			c.ssh = pool
		}
		ex, err := sshexec.New(ctx, c.ssh, target, sshexec.Config{NonZeroIsResult: true, KillGrace: c.cfg.grace, Logger: c.log}, c.s)
		if err != nil {
			return fmt.Errorf("drove: %s: %w", n, err)
		}
		if err := c.s.AddNode(target, ex.Slots(), ex); err != nil {
			_ = ex.Close(ctx)
			return err
		}
	}
	return nil
}

var _ sched.Executor = (*sshexec.Executor)(nil)
