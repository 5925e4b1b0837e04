package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Pool keeps SSH connections to any number of hosts and hands out sessions
// over them. It is safe for concurrent use. Create it with [NewPool] and
// release it with [Pool.Close].
type Pool struct {
	cfg    Config
	sshcfg *sshConfig
	keys   hostKeys

	mu     sync.Mutex
	hosts  map[string]*hostConns
	closed bool
	wg     sync.WaitGroup // connection monitors

	keyMu   sync.Mutex
	keyFile map[string]ssh.Signer // parsed identity files; nil value = unusable
}

type hostConns struct {
	conns        []*conn
	dialing      *attempt // a dial in progress, or nil
	sftp         *SFTP    // the host's SFTP session, or nil
	sftpStarting *attempt // an SFTP session being started, or nil
}

// attempt is a dial, or the start of an SFTP session, in progress for a
// host. Callers that find one wait for its outcome rather than start their
// own, so a host that is down (or at MaxStartups) is not hammered.
type attempt struct {
	done chan struct{}
	err  error
}

func newAttempt() *attempt { return &attempt{done: make(chan struct{})} }

// end records the outcome and wakes the waiters; the caller holds Pool.mu.
func (a *attempt) end(err error) {
	a.err = err
	close(a.done)
}

// wait waits for a to end and returns its error; nil means it succeeded
// and the caller looks again. A ctx that ends first gives a *ConnError.
func (a *attempt) wait(ctx context.Context, target, addr string) error {
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return &ConnError{Host: target, Addr: addr, Err: context.Cause(ctx)}
	}
}

// conn is one SSH connection. inUse and limit are guarded by Pool.mu.
type conn struct {
	client *ssh.Client
	ep     Endpoint
	closer []*ssh.Client // jump hosts, closed after client
	inUse  int
	limit  int
	dead   bool
	lost   chan struct{} // closed when the connection ends
}

// NewPool returns a pool for cfg. It reads the ssh_config file now, so a
// syntax error is reported here.
func NewPool(cfg Config) (*Pool, error) {
	cfg = cfg.withDefaults()
	sc, err := loadSSHConfig(cfg.ConfigFile)
	if err != nil {
		return nil, err
	}
	return &Pool{cfg: cfg, sshcfg: sc, hosts: make(map[string]*hostConns)}, nil
}

// Resolve returns the endpoint target resolves to through ssh_config and the
// pool's Config, without connecting.
func (p *Pool) Resolve(target string) (Endpoint, error) { return p.resolve(target) }

// Lease is one session slot on a connection, held until Release. An
// [SFTP] session holds one for its channel; [Pool.NewSession] holds one per
// session.
type Lease struct {
	p    *Pool
	c    *conn
	once sync.Once
}

// Client returns the connection. Open at most one channel on it per lease.
func (l *Lease) Client() *ssh.Client { return l.c.client }

// Endpoint returns the resolved target.
func (l *Lease) Endpoint() Endpoint { return l.c.ep }

// Lost is closed when the connection has ended (closed, failed keepalives,
// or the server went away).
func (l *Lease) Lost() <-chan struct{} { return l.c.lost }

// Release gives the slot back. It is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.p.mu.Lock()
		l.c.inUse--
		l.p.mu.Unlock()
	})
}

// Acquire reserves a session slot on a connection to target, dialling one if
// every existing connection is at its session cap. ctx bounds only waiting
// and dialling. The error is a [*ConnError] or a [*HostKeyError] when the
// host cannot be used.
func (p *Pool) Acquire(ctx context.Context, target string) (*Lease, error) {
	ep, err := p.resolve(target)
	if err != nil {
		return nil, err
	}
	k := ep.key()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		h := p.hosts[k]
		if h == nil {
			h = &hostConns{}
			p.hosts[k] = h
		}
		for _, c := range h.conns {
			if !c.dead && c.inUse < c.limit {
				c.inUse++
				p.mu.Unlock()
				return &Lease{p: p, c: c}, nil
			}
		}
		if d := h.dialing; d != nil {
			p.mu.Unlock()
			if err := d.wait(ctx, target, ep.Addr()); err != nil {
				return nil, err
			}
			continue
		}
		d := newAttempt()
		h.dialing = d
		p.mu.Unlock()

		c, err := p.dial(ctx, ep)

		p.mu.Lock()
		h.dialing = nil
		d.end(err)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.closed {
			p.mu.Unlock()
			c.close()
			return nil, ErrClosed
		}
		c.inUse = 1
		h.conns = append(h.conns, c)
		p.wg.Add(1)
		p.mu.Unlock()
		go p.monitor(k, c)
		p.cfg.Logger.Debug("ssh: connected", "host", ep.Target, "addr", ep.Addr(), "conns", len(h.conns))
		return &Lease{p: p, c: c}, nil
	}
}

// Session is an SSH session opened by [Pool.NewSession]. Close it to free
// its slot.
type Session struct {
	*ssh.Session
	lease *Lease
}

// Close closes the session and releases its slot.
func (s *Session) Close() error {
	err := s.Session.Close()
	s.lease.Release()
	if errors.Is(err, io.EOF) { // already closed by Wait or the server
		err = nil
	}
	return err
}

// Lease returns the slot the session occupies.
func (s *Session) Lease() *Lease { return s.lease }

// NewSession opens a session to target over a pooled connection. A server
// refusing the session because of its MaxSessions makes the pool lower that
// connection's cap and try another connection; a connection found dead is
// replaced once.
func (p *Pool) NewSession(ctx context.Context, target string) (*Session, error) {
	redials := 0
	for refusals := 0; ; {
		l, err := p.Acquire(ctx, target)
		if err != nil {
			return nil, err
		}
		s, err := l.c.client.NewSession()
		if err == nil {
			return &Session{Session: s, lease: l}, nil
		}
		l.Release()
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			// The connection is alive (the server answered); OpenSSH reports
			// MaxSessions as "open failed" (ConnectionFailed).
			refusals++
			// A refusal can be transient (a closing session not yet freed by
			// sshd); only repeated ones mean the server's cap is lower.
			if refusals%5 == 0 {
				p.mu.Lock()
				if n := l.c.inUse; n >= 1 && n < l.c.limit {
					l.c.limit = n
					p.cfg.Logger.Warn("ssh: server refuses sessions; lowering cap", "host", target, "cap", n)
				}
				p.mu.Unlock()
			}
			if refusals > 50 {
				return nil, &ConnError{Host: target, Addr: l.c.ep.Addr(), Err: fmt.Errorf("session refused: %w", err)}
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.markDead(l.c)
		if redials++; redials > 1 {
			return nil, &ConnError{Host: target, Addr: l.c.ep.Addr(), Err: fmt.Errorf("open session: %w", err)}
		}
	}
}

// Close ends the SFTP sessions, closes every connection and waits for the
// pool's goroutines. Leases and sessions still open fail from then on.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var all []*conn
	var hosts []*hostConns
	for _, h := range p.hosts {
		all = append(all, h.conns...)
		hosts = append(hosts, h)
	}
	p.mu.Unlock()
	// SFTP sessions first, so that their servers see them closed cleanly.
	p.closeSFTPs(hosts)
	for _, c := range all {
		c.close()
	}
	p.wg.Wait()
	return nil
}

func (c *conn) close() {
	c.client.Close()
	for i := len(c.closer) - 1; i >= 0; i-- {
		c.closer[i].Close()
	}
}

func (p *Pool) markDead(c *conn) {
	p.mu.Lock()
	c.dead = true
	p.mu.Unlock()
	c.close()
}

// monitor sends keepalives on c and removes it from the pool when it ends, so
// that the next Acquire dials a fresh connection.
func (p *Pool) monitor(k string, c *conn) {
	defer p.wg.Done()
	ended := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.client.Wait()
		close(ended)
	}()
	var tick <-chan time.Time
	if p.cfg.KeepaliveInterval > 0 {
		t := time.NewTicker(p.cfg.KeepaliveInterval)
		defer t.Stop()
		tick = t.C
	}
	missed := 0
	replies := make(chan error, p.cfg.KeepaliveCountMax+1)
	pending := 0
loop:
	for {
		select {
		case <-ended:
			break loop
		case err := <-replies:
			pending--
			if err != nil {
				break loop
			}
			missed = 0
		case <-tick:
			if pending > 0 {
				missed++
				if missed >= p.cfg.KeepaliveCountMax {
					p.cfg.Logger.Warn("ssh: keepalive timeout; closing connection", "host", c.ep.Target)
					break loop
				}
				continue
			}
			pending++
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				// OpenSSH answers with a failure reply; any reply proves life.
				_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
		}
	}
	p.mu.Lock()
	c.dead = true
	if h := p.hosts[k]; h != nil {
		for i, x := range h.conns {
			if x == c {
				h.conns = append(h.conns[:i], h.conns[i+1:]...)
				break
			}
		}
	}
	p.mu.Unlock()
	c.close()
	<-ended
	close(c.lost)
	p.cfg.Logger.Debug("ssh: connection ended", "host", c.ep.Target)
}

// dial connects to ep, through its ProxyJump hosts if any.
func (p *Pool) dial(ctx context.Context, ep Endpoint) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, ep.ConnectTimeout)
	defer cancel()
	connErr := func(err error) error {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w (after %v)", err, ep.ConnectTimeout)
		}
		return &ConnError{Host: ep.Target, Addr: ep.Addr(), Err: err}
	}

	var nc net.Conn
	var closers []*ssh.Client
	if ep.ProxyJump != "" {
		hops := strings.Split(ep.ProxyJump, ",")
		jep, err := p.resolve(strings.TrimSpace(hops[len(hops)-1]))
		if err != nil {
			return nil, err
		}
		jep.ProxyJump = strings.Join(hops[:len(hops)-1], ",")
		jc, err := p.dial(ctx, jep)
		if err != nil {
			return nil, err
		}
		closers = append(jc.closer, jc.client)
		nc, err = jc.client.DialContext(ctx, "tcp", ep.Addr())
		if err != nil {
			jc.close()
			return nil, connErr(fmt.Errorf("via %s: %w", jep.Target, err))
		}
	} else {
		var d net.Dialer
		var err error
		if nc, err = d.DialContext(ctx, "tcp", ep.Addr()); err != nil {
			return nil, connErr(err)
		}
	}
	cleanup := func() {
		nc.Close()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}

	var refused *HostKeyError
	auth, agentConn := p.auth(ep)
	if agentConn != nil {
		defer agentConn.Close()
	}
	cfg := &ssh.ClientConfig{
		User:              ep.User,
		Auth:              auth,
		HostKeyCallback:   p.keys.callback(ep, &refused),
		HostKeyAlgorithms: p.keys.algorithms(ep),
		Timeout:           ep.ConnectTimeout,
	}
	// The handshake has no context parameter: bound it by closing the
	// connection when ctx ends.
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, ep.Addr(), cfg)
	stopped := stop()
	if err != nil {
		cleanup()
		if refused != nil {
			return nil, refused
		}
		if !stopped {
			err = fmt.Errorf("handshake: %w", context.Cause(ctx))
		}
		return nil, connErr(err)
	}
	nc.SetDeadline(time.Time{})
	return &conn{
		client: ssh.NewClient(cc, chans, reqs),
		ep:     ep,
		closer: closers,
		limit:  p.cfg.MaxSessions,
		lost:   make(chan struct{}),
	}, nil
}

type closer interface{ Close() error }

// auth returns the public key methods for ep: the agent's keys (unless
// NoAgent or IdentitiesOnly), then the identity files. The returned closer is
// the agent connection, to close after the handshake.
func (p *Pool) auth(ep Endpoint) ([]ssh.AuthMethod, closer) {
	var ac net.Conn
	var agentClient agent.ExtendedAgent
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !p.cfg.NoAgent && !ep.IdentitiesOnly {
		if c, err := net.Dial("unix", sock); err == nil {
			ac = c
			agentClient = agent.NewClient(c)
		} else {
			p.cfg.Logger.Debug("ssh: ssh-agent unavailable", "err", err)
		}
	}
	signers := func() ([]ssh.Signer, error) {
		var out []ssh.Signer
		if agentClient != nil {
			if s, err := agentClient.Signers(); err == nil {
				out = append(out, s...)
			}
		}
		for _, f := range ep.IdentityFiles {
			if s := p.keyFromFile(f); s != nil {
				out = append(out, s)
			}
		}
		return out, nil
	}
	m := []ssh.AuthMethod{ssh.PublicKeysCallback(signers)}
	if ac == nil {
		return m, nil
	}
	return m, ac
}

// keyFromFile parses an identity file once. Missing files and encrypted keys
// are skipped, as they would be by ssh in batch mode.
func (p *Pool) keyFromFile(name string) ssh.Signer {
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	if s, ok := p.keyFile[name]; ok {
		return s
	}
	if p.keyFile == nil {
		p.keyFile = make(map[string]ssh.Signer)
	}
	var s ssh.Signer
	data, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		p.cfg.Logger.Warn("ssh: identity file unreadable", "file", name, "err", err)
	default:
		s, err = ssh.ParsePrivateKey(data)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			p.cfg.Logger.Debug("ssh: skipping encrypted identity file (use ssh-agent)", "file", name)
		} else if err != nil {
			p.cfg.Logger.Warn("ssh: identity file unusable", "file", name, "err", err)
		}
	}
	p.keyFile[name] = s
	return s
}

// NumConns returns the number of live connections the pool holds to target.
func (p *Pool) NumConns(target string) int {
	ep, err := p.resolve(target)
	if err != nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	if h := p.hosts[ep.key()]; h != nil {
		for _, c := range h.conns {
			if !c.dead {
				n++
			}
		}
	}
	return n
}
