package sshconn

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Config is drove's one SSH client configuration: package remote exports
// it as remote.Config, the root package as drove.SSHConfig, and the CLI
// fills it from the flags run, exec and fs share. It configures a [Pool].
// The zero value is a usable configuration that behaves like OpenSSH's ssh
// for the current user.
type Config struct {
	// ConfigFile is the ssh_config file used to resolve Host aliases.
	// Empty means ~/.ssh/config; a missing file is not an error. "none"
	// disables ssh_config.
	ConfigFile string

	// KnownHosts are the known_hosts files checked, and the first one is
	// the file AcceptNew appends to. Empty means ~/.ssh/known_hosts, unless
	// ssh_config sets UserKnownHostsFile for the host.
	KnownHosts []string

	// AcceptNew trusts the key of a host that known_hosts does not list yet
	// and appends it to the first known_hosts file, but still refuses a key
	// that differs from a recorded one (OpenSSH's
	// StrictHostKeyChecking=accept-new). False (the default) refuses unknown
	// keys too, unless ssh_config sets StrictHostKeyChecking accept-new for
	// the host.
	AcceptNew bool

	// IdentityFiles are private key files tried after those ssh_config
	// names. If neither lists any, ~/.ssh/id_ed25519, id_ecdsa and id_rsa are
	// tried, as OpenSSH does. Encrypted keys are skipped (use the agent).
	IdentityFiles []string

	// NoAgent disables ssh-agent. By default the agent at $SSH_AUTH_SOCK is
	// used when that variable is set.
	NoAgent bool

	// User is the login name when neither the target nor ssh_config gives
	// one. Empty means the current user.
	User string

	// ConnectTimeout bounds dialling and the SSH handshake when ssh_config
	// sets no ConnectTimeout (or always, with OverrideConnectTimeout). Zero
	// means 10 seconds.
	ConnectTimeout time.Duration

	// OverrideConnectTimeout makes ConnectTimeout win over ssh_config's, as
	// `ssh -o ConnectTimeout=N` does. Set it when the timeout was given
	// explicitly (a command-line flag); leave it unset when ConnectTimeout
	// is only a default.
	OverrideConnectTimeout bool

	// MaxSessions is the number of sessions multiplexed over one connection
	// before the pool opens another connection to the same host. Zero means
	// 10, sshd's default MaxSessions. If the server refuses a session before
	// the cap is reached, the pool lowers the cap for that connection.
	MaxSessions int

	// KeepaliveInterval is the period of keepalive@openssh.com requests on
	// each connection. Zero means 15 seconds; a negative value disables
	// keepalives.
	KeepaliveInterval time.Duration

	// KeepaliveCountMax is the number of keepalives that may go unanswered
	// before the connection is closed as dead. Zero means 3.
	KeepaliveCountMax int

	// Logger receives debug and warning records. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 10
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 15 * time.Second
	}
	if c.KeepaliveCountMax <= 0 {
		c.KeepaliveCountMax = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.User == "" {
		if u, err := user.Current(); err == nil {
			c.User = u.Username
		} else {
			c.User = os.Getenv("USER")
		}
	}
	return c
}

// Endpoint is a target resolved through ssh_config.
type Endpoint struct {
	Target          string        // as given to the pool
	Alias           string        // the host part of Target, looked up in ssh_config
	User            string        // login name
	Host            string        // HostName to dial
	Port            int           // TCP port
	IdentityFiles   []string      // key files to try, in order
	IdentitiesOnly  bool          // ssh_config IdentitiesOnly: skip the agent's keys
	ProxyJump       string        // comma-separated jump hosts, or ""
	ConnectTimeout  time.Duration // dial and handshake limit
	KnownHostsFiles []string      // known_hosts files to check
	AcceptNew       bool          // trust unknown host keys on first use
}

// Addr returns host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// key identifies the connections that may be shared.
func (e Endpoint) key() string { return e.User + "@" + e.Addr() + "|" + e.ProxyJump }

// ParseTarget splits "[ssh://][user@]host[:port]" into its parts. Port is 0
// when absent. IPv6 literals are written in brackets.
func ParseTarget(target string) (userName, host string, port int, err error) {
	s := strings.TrimPrefix(target, "ssh://")
	s = strings.TrimSuffix(s, "/")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		userName, s = s[:i], s[i+1:]
	}
	host = s
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		h, p, splitErr := net.SplitHostPort(s)
		if splitErr == nil {
			host = h
			port, err = strconv.Atoi(p)
			if err != nil || port <= 0 || port > 65535 {
				return "", "", 0, fmt.Errorf("remote: bad port in target %q", target)
			}
		} else if strings.HasPrefix(s, "[") {
			host = strings.Trim(s, "[]")
		}
	}
	if host == "" {
		return "", "", 0, fmt.Errorf("remote: no host in target %q", target)
	}
	return userName, host, port, nil
}

// sshConfig is a parsed ssh_config, or nil.
type sshConfig struct{ c *ssh_config.Config }

func loadSSHConfig(file string) (*sshConfig, error) {
	if file == "none" {
		return &sshConfig{}, nil
	}
	explicit := file != ""
	if !explicit {
		file = filepath.Join(homeDir(), ".ssh", "config")
	}
	f, err := os.Open(file)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return &sshConfig{}, nil
		}
		return nil, fmt.Errorf("remote: ssh_config: %w", err)
	}
	defer f.Close()
	c, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("remote: ssh_config %s: %w", file, err)
	}
	return &sshConfig{c: c}, nil
}

func (s *sshConfig) get(alias, key string) string {
	if s == nil || s.c == nil {
		return ""
	}
	v, _ := s.c.Get(alias, key)
	return strings.TrimSpace(v)
}

func (s *sshConfig) getAll(alias, key string) []string {
	if s == nil || s.c == nil {
		return nil
	}
	v, _ := s.c.GetAll(alias, key)
	return v
}

// resolve turns a target into an Endpoint: explicit user and port in the
// target win over ssh_config, which wins over Config.
func (p *Pool) resolve(target string) (Endpoint, error) {
	u, alias, port, err := ParseTarget(target)
	if err != nil {
		return Endpoint{}, err
	}
	sc := p.sshcfg
	e := Endpoint{Target: target, Alias: alias, User: u, Host: alias, Port: port}
	if hn := sc.get(alias, "HostName"); hn != "" {
		e.Host = strings.ReplaceAll(hn, "%h", alias)
	}
	if e.User == "" {
		e.User = sc.get(alias, "User")
	}
	if e.User == "" {
		e.User = p.cfg.User
	}
	if e.Port == 0 {
		if ps := sc.get(alias, "Port"); ps != "" {
			if e.Port, err = strconv.Atoi(ps); err != nil {
				return Endpoint{}, fmt.Errorf("remote: %s: bad Port %q in ssh_config", target, ps)
			}
		}
	}
	if e.Port == 0 {
		e.Port = 22
	}
	for _, f := range sc.getAll(alias, "IdentityFile") {
		e.IdentityFiles = append(e.IdentityFiles, expandPath(f, e, alias))
	}
	e.IdentityFiles = append(e.IdentityFiles, p.cfg.IdentityFiles...)
	if len(e.IdentityFiles) == 0 {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			e.IdentityFiles = append(e.IdentityFiles, filepath.Join(homeDir(), ".ssh", n))
		}
	}
	e.IdentitiesOnly = strings.EqualFold(sc.get(alias, "IdentitiesOnly"), "yes")
	if pj := sc.get(alias, "ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
		e.ProxyJump = pj
	}
	e.ConnectTimeout = p.cfg.ConnectTimeout
	if ct := sc.get(alias, "ConnectTimeout"); ct != "" && !p.cfg.OverrideConnectTimeout {
		if n, err := strconv.Atoi(ct); err == nil && n > 0 {
			e.ConnectTimeout = time.Duration(n) * time.Second
		}
	}
	e.KnownHostsFiles = p.cfg.KnownHosts
	if len(e.KnownHostsFiles) == 0 {
		if kh := sc.get(alias, "UserKnownHostsFile"); kh != "" && !strings.EqualFold(kh, "none") {
			for _, f := range strings.Fields(kh) {
				e.KnownHostsFiles = append(e.KnownHostsFiles, expandPath(f, e, alias))
			}
		}
	}
	if len(e.KnownHostsFiles) == 0 {
		e.KnownHostsFiles = []string{filepath.Join(homeDir(), ".ssh", "known_hosts")}
	}
	shk := strings.ToLower(sc.get(alias, "StrictHostKeyChecking"))
	e.AcceptNew = p.cfg.AcceptNew || shk == "accept-new"
	return e, nil
}

// expandPath expands ~ and the common ssh_config tokens %d %h %r %u %%.
func expandPath(s string, e Endpoint, alias string) string {
	if strings.HasPrefix(s, "~/") || s == "~" {
		s = homeDir() + s[1:]
	}
	if !strings.Contains(s, "%") {
		return s
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	r := strings.NewReplacer("%%", "%", "%d", homeDir(), "%h", e.Host, "%n", alias,
		"%r", e.User, "%u", local, "%p", strconv.Itoa(e.Port))
	return r.Replace(s)
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}
