package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"

	"github.com/drove-dev/drove/internal/filesink"
	"github.com/drove-dev/drove/internal/sshconn"
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

// Option configures [Dial].
type Option func(*config)

type config struct {
	ssh       sshconn.Config
	pool      *sshconn.Pool // shared, not owned
	killGrace time.Duration
}

// WithSSHConfig reads Host aliases from file instead of ~/.ssh/config; "none"
// disables ssh_config.
func WithSSHConfig(file string) Option { return func(c *config) { c.ssh.SSHConfigFile = file } }

// WithKnownHosts checks host keys against files instead of
// ~/.ssh/known_hosts (or ssh_config's UserKnownHostsFile).
func WithKnownHosts(files ...string) Option {
	return func(c *config) { c.ssh.KnownHostsFiles = files }
}

// WithAcceptNew trusts the key of a host not yet in known_hosts and records
// it there, like OpenSSH's StrictHostKeyChecking=accept-new. A changed key is
// still refused. By default unknown keys are refused.
func WithAcceptNew() Option { return func(c *config) { c.ssh.HostKeyPolicy = sshconn.AcceptNew } }

// WithIdentityFiles adds private key files to try after those ssh_config
// names. By default ~/.ssh/id_ed25519, id_ecdsa and id_rsa are tried.
func WithIdentityFiles(files ...string) Option {
	return func(c *config) { c.ssh.IdentityFiles = append(c.ssh.IdentityFiles, files...) }
}

// WithoutAgent disables ssh-agent, which is used by default when
// SSH_AUTH_SOCK is set.
func WithoutAgent() Option { return func(c *config) { c.ssh.NoAgent = true } }

// WithConnectTimeout bounds connecting when ssh_config sets no
// ConnectTimeout. The default is 10 seconds.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) { c.ssh.ConnectTimeout = d }
}

// WithKillGrace sets how long each step of stopping a timed-out or
// cancelled command's process group waits: SIGINT, then SIGTERM, then
// SIGKILL. The default is 2 seconds.
func WithKillGrace(d time.Duration) Option { return func(c *config) { c.killGrace = d } }

// WithLogger sets the logger for connection events. The default discards
// them.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.ssh.Logger = l } }

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
	sc     *sftpConn // nil until first use or after the SFTP server died
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
		p, err := sshconn.NewPool(c.ssh)
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
		return nil, fmt.Errorf("remote: %s: getwd: %w", target, sc.connErr(err, false))
	}
	h.mu.Lock()
	h.cwd = wd
	h.mu.Unlock()
	return h, nil
}

// Target returns the target Dial was given.
func (h *Host) Target() string { return h.target }

// closeGrace is how long Close waits for the SFTP session to end.
const closeGrace = 2 * time.Second

// Close ends the SFTP session and, unless the Host shares a Pool's
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
	sc := h.sc
	h.sc = nil
	h.mu.Unlock()
	if sc != nil {
		ended := make(chan struct{})
		go func() { sc.Close(); close(ended) }()
		select {
		case <-ended:
		case <-time.After(closeGrace):
			// pkg/sftp waits for the server to close its end, which a
			// stopped or stuck sftp-server never does: end the SSH
			// connection under the session instead.
			sc.lease.Client().Close()
			<-ended
		}
		sc.lease.Release()
	}
	h.wg.Wait()
	if h.ownPool {
		return h.pool.Close()
	}
	return nil
}

// sftpConn is one SFTP session and the SSH connection it runs on. It
// embeds the client so that its methods are called directly; connErr tells
// an error of the session's end from an answer of the server.
type sftpConn struct {
	*sftp.Client
	target string
	lease  *sshconn.Lease
	ended  chan struct{} // closed when the SFTP session has ended
}

// client returns the SFTP session, starting one on a pooled connection if
// there is none or the previous one died.
func (h *Host) client(ctx context.Context) (*sftpConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.sc != nil {
		select {
		case <-h.sc.lease.Lost():
			h.sc.Close()
			h.sc.lease.Release()
			h.sc = nil
		default:
			return h.sc, nil
		}
	}
	lease, err := h.pool.Acquire(ctx, h.target)
	if err != nil {
		return nil, err
	}
	sc, err := sftp.NewClient(lease.Client(),
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64),
		sftp.MaxPacketUnchecked(packetSize(lease.Client().ServerVersion())),
	)
	if err != nil {
		lease.Release()
		return nil, &ConnError{Host: h.target, Addr: lease.Endpoint().Addr(), Err: fmt.Errorf("sftp subsystem: %w", err)}
	}
	c := &sftpConn{Client: sc, target: h.target, lease: lease, ended: make(chan struct{})}
	h.sc = c
	h.wg.Add(1)
	go func() {
		// When the SFTP server goes away (killed, or the connection lost),
		// forget the client so that the next call starts a new one.
		defer h.wg.Done()
		sc.Wait()
		h.mu.Lock()
		if h.sc == c {
			h.sc = nil
			lease.Release()
		}
		h.mu.Unlock()
		// After h.sc is cleared, so that whoever sees ended and calls
		// client gets a new session.
		close(c.ended)
	}()
	return c, nil
}

// connErr returns err as a *ConnError when it was caused by the end of the
// SFTP session or of the SSH connection under it, so that callers (and
// [Pool], which moves the evaluation to another host) can tell a lost host
// from an answer of the server. Other errors are returned unchanged. eofOK
// says io.EOF is a normal result of the call (a read at the end of a file);
// otherwise an EOF means the channel closed under the request.
func (c *sftpConn) connErr(err error, eofOK bool) error {
	if err == nil {
		return nil
	}
	var ce *ConnError
	var se *sftp.StatusError
	switch {
	case errors.As(err, &ce),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		// The server answered: the session is alive.
		errors.As(err, &se), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission),
		errors.Is(err, fs.ErrExist), errors.Is(err, fs.ErrInvalid),
		errors.Is(err, errNotDir), errors.Is(err, errIsDir), errors.Is(err, errSpecial):
		return err
	}
	if errors.Is(err, io.EOF) && eofOK {
		return err
	}
	lost := errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if !lost {
		// Writes to a closed channel fail with errors of their own; the
		// session's state tells.
		select {
		case <-c.ended:
			lost = true
		case <-c.lease.Lost():
			lost = true
		default:
		}
	}
	if !lost {
		return err
	}
	return &ConnError{Host: c.target, Addr: c.lease.Endpoint().Addr(), Err: fmt.Errorf("sftp session lost: %w", err)}
}

// pathErr is the package's pathErr for an error of a call on c.
func (c *sftpConn) pathErr(op, name string, err error) error {
	return pathErr(op, name, c.connErr(unwrapPath(err), false))
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
		return sc.pathErr("chdir", dir, err)
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
func (h *Host) prep(ctx context.Context, op, name string) (string, *sftpConn, error) {
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
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: "remote: " + op, Path: name, Err: err}
}

// packetSize picks the SFTP data size per request. The SFTP draft's safe
// value is 32 KiB; OpenSSH's sftp-server has long accepted messages up to
// 256 KiB and reads of 64 KiB, and 64 KiB requests download about 20% faster
// on loopback (bench/remote.md).
func packetSize(serverVersion []byte) int {
	if bytes.Contains(serverVersion, []byte("OpenSSH")) {
		return 64 << 10
	}
	return 32 << 10
}
