package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// ConnError reports a host that could not be reached or authenticated to,
// or a connection lost while in use. It is never returned for a command that
// ran and failed.
type ConnError = sshconn.ConnError

// HostKeyError reports a host key that is not in known_hosts (Changed is
// false) or differs from the recorded one (Changed is true).
type HostKeyError = sshconn.HostKeyError

// ErrClosed is returned by the methods of a Host after Close.
var ErrClosed = errors.New("remote: host closed")

// Errors about what a server lists, which a hostile server could use to
// make a download write outside its destination or never end.
var (
	// ErrBadName is wrapped by the error of a call that read a directory
	// whose listing has a name that is not a single path element (empty,
	// ".", "..", or containing "/" or NUL), or has a name twice.
	ErrBadName = filesink.ErrBadElement
	// ErrTooDeep is wrapped by the error of a walk of a remote tree deeper
	// than 256 directories, which is what a directory cycle looks like.
	ErrTooDeep = filesink.ErrTooDeep
	// ErrLink is wrapped by the error of a [Host.Download] that met a
	// symbolic link in the destination where it needs a directory: it
	// never writes through one (the link may come from an earlier download
	// of the same server).
	ErrLink = filesink.ErrLink
)

// Config is how hosts are reached over SSH: ssh_config, known_hosts and
// the host key policy, identity files and ssh-agent, the login name, the
// connect timeout, session multiplexing and keepalives, and a logger. It is
// drove's one SSH configuration type: [WithConfig] takes it here, and
// drove.WithSSH takes the same type (drove.SSHConfig). The zero value
// behaves like OpenSSH's ssh for the current user; each field documents its
// default:
//
//	ConfigFile             ssh_config for Host aliases; "" = ~/.ssh/config, "none" = no file
//	KnownHosts             known_hosts files; none = ~/.ssh/known_hosts (or ssh_config's UserKnownHostsFile)
//	AcceptNew              trust and record unknown host keys (a changed key is still refused)
//	IdentityFiles          private keys tried after ssh_config's; none = ~/.ssh/id_ed25519, id_ecdsa, id_rsa
//	NoAgent                do not use ssh-agent ($SSH_AUTH_SOCK)
//	User                   login name for targets and ssh_config entries that name none; "" = yours
//	ConnectTimeout         dial and handshake limit when ssh_config sets none; 0 = 10 s
//	OverrideConnectTimeout ConnectTimeout wins over ssh_config's, as ssh -o does
//	MaxSessions            sessions per connection before another is opened; 0 = 10
//	KeepaliveInterval      keepalive period; 0 = 15 s, negative = none
//	KeepaliveCountMax      unanswered keepalives before a connection is dead; 0 = 3
//	Logger                 connection events; nil discards them
type Config = sshconn.Config

// Option configures [Dial]. The With… options that configure SSH set
// fields of the [Config] [WithConfig] gives, whatever their order.
type Option func(*config)

type config struct {
	ssh       Config
	sshSet    []func(*Config) // the With… setters, applied after WithConfig
	pool      *sshconn.Pool   // shared, not owned
	killGrace time.Duration
}

// ssh returns the SSH configuration: the one WithConfig gave, then the
// other options' changes.
func (c *config) sshConfig() Config {
	cfg := c.ssh
	for _, set := range c.sshSet {
		set(&cfg)
	}
	return cfg
}

func setSSH(f func(*Config)) Option {
	return func(c *config) { c.sshSet = append(c.sshSet, f) }
}

// WithConfig sets the whole SSH configuration. The other SSH options
// change fields of it, whether they come before or after it. The default is
// the zero Config.
func WithConfig(cfg Config) Option { return func(c *config) { c.ssh = cfg } }

// WithSSHConfig reads Host aliases from file instead of ~/.ssh/config; "none"
// disables ssh_config. It sets [Config.ConfigFile].
func WithSSHConfig(file string) Option { return setSSH(func(c *Config) { c.ConfigFile = file }) }

// WithKnownHosts checks host keys against files instead of
// ~/.ssh/known_hosts (or ssh_config's UserKnownHostsFile). It sets
// [Config.KnownHosts].
func WithKnownHosts(files ...string) Option {
	return setSSH(func(c *Config) { c.KnownHosts = files })
}

// WithAcceptNew trusts the key of a host not yet in known_hosts and records
// it there, like OpenSSH's StrictHostKeyChecking=accept-new. A changed key is
// still refused. By default unknown keys are refused. It sets
// [Config.AcceptNew].
func WithAcceptNew() Option { return setSSH(func(c *Config) { c.AcceptNew = true }) }

// WithIdentityFiles adds private key files to try after those ssh_config
// names. By default ~/.ssh/id_ed25519, id_ecdsa and id_rsa are tried. It
// appends to [Config.IdentityFiles].
func WithIdentityFiles(files ...string) Option {
	return setSSH(func(c *Config) { c.IdentityFiles = append(c.IdentityFiles, files...) })
}

// WithoutAgent disables ssh-agent, which is used by default when
// SSH_AUTH_SOCK is set. It sets [Config.NoAgent].
func WithoutAgent() Option { return setSSH(func(c *Config) { c.NoAgent = true }) }

// WithConnectTimeout bounds connecting when ssh_config sets no
// ConnectTimeout. The default is 10 seconds. It sets
// [Config.ConnectTimeout].
func WithConnectTimeout(d time.Duration) Option {
	return setSSH(func(c *Config) { c.ConnectTimeout = d })
}

// WithKillGrace sets how long each step of stopping a timed-out or
// cancelled command's process group waits: SIGINT, then SIGTERM, then
// SIGKILL. The default is 2 seconds.
func WithKillGrace(d time.Duration) Option { return func(c *config) { c.killGrace = d } }

// WithLogger sets the logger for connection events. The default discards
// them.
// It sets [Config.Logger].
func WithLogger(l *slog.Logger) Option { return setSSH(func(c *Config) { c.Logger = l }) }

// withPool shares an existing connection pool (used by Pool).
func withPool(p *sshconn.Pool) Option { return func(c *config) { c.pool = p } }

// Host is a remote machine reached over SSH. Create it with [Dial]; it is
// safe for concurrent use. Close releases its connection.
type Host struct {
	target    string
	pool      *sshconn.Pool
	ownPool   bool
	killGrace time.Duration

	mu     sync.Mutex
	cwd    string
	closed bool
	wg     sync.WaitGroup
}

// Dial connects to target, "[user@]host[:port]" or an ssh_config Host alias,
// and starts an SFTP session. ctx bounds only the dial.
func Dial(ctx context.Context, target string, opts ...Option) (*Host, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	h := &Host{target: target, pool: c.pool, killGrace: c.killGrace}
	if h.pool == nil {
		p, err := sshconn.NewPool(c.sshConfig())
		if err != nil {
			return nil, err
		}
		h.pool, h.ownPool = p, true
	}
	sc, err := h.client(ctx)
	if err != nil {
		h.Close()
		return nil, err
	}
	wd, err := sc.Getwd()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("remote: %s: getwd: %w", target, connErr(sc, err, false))
	}
	h.mu.Lock()
	h.cwd = wd
	h.mu.Unlock()
	return h, nil
}

// Target returns the target Dial was given.
func (h *Host) Target() string { return h.target }

// Close ends the Host's SFTP session and, unless the Host shares a Pool's
// connections, the SSH connection. It waits for the Host's goroutines,
// among them calls abandoned when their ctx ended. If the SFTP server does
// not answer within 2 seconds, Close ends the SSH connection under the
// session, so that it returns even when the server is stuck.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	var err error
	if h.ownPool {
		err = h.pool.Close()
	} else {
		h.pool.CloseSFTP(h.target)
	}
	h.wg.Wait()
	return err
}

// client returns the host's SFTP session, which the connection pool keeps,
// starting one if there is none or the previous one ended.
func (h *Host) client(ctx context.Context) (*sshconn.SFTP, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return h.pool.SFTP(ctx, h.target)
}

// connErr is [sshconn.SFTP.ConnErr], but for the errors of the package's
// own checks, which are answers, never a lost session.
func connErr(sc *sshconn.SFTP, err error, eofOK bool) error {
	if errors.Is(err, errNotDir) || errors.Is(err, errIsDir) || errors.Is(err, errSpecial) {
		return err
	}
	return sc.ConnErr(err, eofOK)
}

// scPathErr is pathErr for an error of a call on sc.
func scPathErr(sc *sshconn.SFTP, op, name string, err error) error {
	return pathErr(op, name, connErr(sc, unwrapPath(err), false))
}

// Getwd returns the Host's working directory, against which relative paths
// are resolved. It starts as the login directory.
func (h *Host) Getwd() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cwd
}

// Abs returns name as a clean absolute remote path, resolving a relative
// name against [Host.Getwd].
func (h *Host) Abs(name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join(h.Getwd(), name)
}

// Chdir changes the Host's working directory to dir, which must be an
// existing directory.
func (h *Host) Chdir(ctx context.Context, dir string) error {
	p, sc, err := h.prep(ctx, "chdir", dir)
	if err != nil {
		return err
	}
	fi, err := call(ctx, h, 0, func() (fs.FileInfo, error) { return sc.Stat(p) }, nil)
	if err != nil {
		return scPathErr(sc, "chdir", dir, err)
	}
	if !fi.IsDir() {
		return pathErr("chdir", dir, errNotDir)
	}
	h.mu.Lock()
	h.cwd = p
	h.mu.Unlock()
	return nil
}

var (
	errNotDir = errors.New("not a directory")
	errIsDir  = errors.New("is a directory")
)

// prep validates name, resolves it and returns the SFTP client.
func (h *Host) prep(ctx context.Context, op, name string) (string, *sshconn.SFTP, error) {
	if strings.IndexByte(name, 0) >= 0 || name == "" {
		return "", nil, pathErr(op, name, fs.ErrInvalid)
	}
	sc, err := h.client(ctx)
	if err != nil {
		return "", nil, pathErr(op, name, err)
	}
	return h.Abs(name), sc, nil
}

// pathErr builds the *fs.PathError every file method returns, keeping the
// name as the caller gave it and unwrapping the sftp package's own PathError
// so that only one op and path appear in the message.
func pathErr(op, name string, err error) error { return sftpengine.PathErr(op, name, err) }

func unwrapPath(err error) error { return sftpengine.UnwrapPath(err) }
