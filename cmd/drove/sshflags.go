package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/remote"
)

// sshFlags are the SSH client flags drove run, drove exec and drove fs
// share: one spelling and meaning each, filling one remote.Config.
type sshFlags struct {
	config         string
	knownHosts     []string
	identities     []string
	user           string
	acceptNew      bool
	connectTimeout time.Duration
	maxSessions    int
	oldIdentities  []string       // drove fs -i, deprecated
	cmd            *cobra.Command // to tell a given flag from its default
}

// register adds the flags to cmd.
func (s *sshFlags) register(cmd *cobra.Command) {
	s.cmd = cmd
	f := cmd.Flags()
	f.StringVarP(&s.config, "ssh-config", "F", "", "ssh_config `FILE` for Host aliases, users, ports, keys, ProxyJump (default ~/.ssh/config; \"none\" for no file)")
	f.StringArrayVar(&s.knownHosts, "known-hosts", nil, "known_hosts `FILE` to check host keys against (repeatable; default ~/.ssh/known_hosts or ssh_config's UserKnownHostsFile)")
	f.StringArrayVar(&s.identities, "identity", nil, "private key `FILE` to log in with, after ssh-agent and ssh_config's IdentityFile (repeatable)")
	f.StringVar(&s.user, "login-user", "", "login `NAME` for hosts that name no user (default: ssh_config's User, else yours)")
	f.BoolVar(&s.acceptNew, "accept-new", false, "trust the key of a host known_hosts does not list yet and record it (StrictHostKeyChecking=accept-new); a changed key is still refused")
	f.DurationVar(&s.connectTimeout, "connect-timeout", 10*time.Second, "time to connect and log in before a host counts as down; when given, it wins over ssh_config's ConnectTimeout")
	f.IntVar(&s.maxSessions, "max-sessions", 10, "sessions multiplexed over one SSH connection before another is opened (sshd's MaxSessions)")
}

// registerDeprecatedIdentityShorthand keeps `-i FILE` working as
// --identity where it used to mean that (drove fs), for this release only:
// drove exec's -i is --inline, so the shared set has no -i.
func (s *sshFlags) registerDeprecatedIdentityShorthand(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVarP(&s.oldIdentities, "deprecated-i", "i", nil, "")
	f.Lookup("deprecated-i").Hidden = true
	cmd.PreRun = chainPreRun(cmd.PreRun, func(c *cobra.Command, _ []string) {
		if c.Flags().Changed("deprecated-i") {
			fmt.Fprintln(c.ErrOrStderr(), "drove: -i FILE is deprecated and will be removed in the next release; use --identity FILE")
		}
	})
}

func chainPreRun(prev, next func(*cobra.Command, []string)) func(*cobra.Command, []string) {
	if prev == nil {
		return next
	}
	return func(c *cobra.Command, args []string) { prev(c, args); next(c, args) }
}

// sshConfig returns the SSH configuration the flags give.
func (s *sshFlags) sshConfig() remote.Config {
	return remote.Config{
		ConfigFile:     s.config,
		KnownHosts:     s.knownHosts,
		IdentityFiles:  append(slices.Clone(s.identities), s.oldIdentities...),
		User:           s.user,
		AcceptNew:      s.acceptNew,
		ConnectTimeout: s.connectTimeout,
		MaxSessions:    s.maxSessions,
		// Given on the command line, the timeout wins over ssh_config's,
		// as ssh -o does; its default does not.
		OverrideConnectTimeout: s.cmd != nil && s.cmd.Flags().Changed("connect-timeout"),
	}
}

// pool returns a connection pool with the flags' configuration.
func (s *sshFlags) pool() (*sshconn.Pool, error) { return sshconn.NewPool(s.sshConfig()) }

// hasSSHNode reports whether --nodes names an SSH host (ssh://…), which
// the SSH flags then apply to.
func hasSSHNode(nodes []string) bool {
	return slices.ContainsFunc(nodes, func(n string) bool { return strings.HasPrefix(n, "ssh://") })
}
