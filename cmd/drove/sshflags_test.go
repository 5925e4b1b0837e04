package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestFSIdentityFlag checks drove fs's key flag: --identity, as in run and
// exec, and -i, its old spelling, which still logs in for this release but
// says on stderr that it is deprecated. No ssh_config and no agent, so the
// login works only with the key given.
func TestFSIdentityFlag(t *testing.T) {
	s := sshtest.Start(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	target := s.User + "@" + s.Addrs[0]
	tests := []struct {
		name       string
		flags      []string
		ok         bool
		deprecated bool
	}{
		{"identity", []string{"--identity", s.KeyPath}, true, false},
		{"old -i", []string{"-i", s.KeyPath}, true, true},
		{"both", []string{"-i", "/nonexistent", "--identity", s.KeyPath}, true, true},
		{"no key", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--known-hosts", s.KnownHosts}, tt.flags...)
			args = append(args, target, "run", "echo", "hi")
			code, out, errs := fsRunCtx(t.Context(), "none", "", args...)
			if ok := code == 0 && out == "hi\n"; ok != tt.ok {
				t.Errorf("exit %d, out %q, stderr %q; want success %v", code, out, errs, tt.ok)
			}
			said := strings.Contains(errs, "-i FILE is deprecated") && strings.Contains(errs, "use --identity FILE")
			if said != tt.deprecated {
				t.Errorf("stderr %q: deprecation message %v, want %v", errs, said, tt.deprecated)
			}
		})
	}
}

// TestSharedSSHFlags checks that run, exec and fs take the same SSH flags,
// and that no letter means an SSH option in one and something else in
// another.
func TestSharedSSHFlags(t *testing.T) {
	shared := []string{"ssh-config", "known-hosts", "identity", "login-user", "accept-new", "connect-timeout", "max-sessions"}
	cmds := map[string]func() *cobra.Command{"run": newRunCmd, "exec": newExecCmd, "fs": newFSCmd}
	letters := map[string]string{} // shorthand -> long name of an SSH flag
	for name, newCmd := range cmds {
		c := newCmd()
		for _, long := range shared {
			f := c.Flags().Lookup(long)
			if f == nil {
				t.Errorf("%s has no --%s", name, long)
				continue
			}
			if f.Shorthand != "" {
				letters[f.Shorthand] = long
			}
		}
	}
	for name, newCmd := range cmds {
		c := newCmd()
		for short, long := range letters {
			if f := c.Flags().ShorthandLookup(short); f != nil && f.Name != long {
				t.Errorf("%s: -%s is --%s, but -%s is --%s elsewhere", name, short, f.Name, short, long)
			}
		}
	}
}
