package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/pkg/sftp"
)

// SFTP is the SFTP session a [Pool] keeps for a host: one per host, shared
// by every caller of [Pool.SFTP] for it (package remote's Host, the file
// transfers of drove run), on a session slot of a pooled connection. It
// embeds the client, which is safe for concurrent use. This is the only
// place in drove that creates SFTP clients.
//
// The session ends when its server goes away, its connection is lost, or
// the pool closes or [Pool.CloseSFTP] ends it; the next [Pool.SFTP] then
// starts a new one.
type SFTP struct {
	*sftp.Client
	pool   *Pool
	target string
	lease  *Lease
	ended  chan struct{} // closed when the session has ended
}

// Target returns the target the session was opened for.
func (s *SFTP) Target() string { return s.target }

// Pool returns the pool the session belongs to.
func (s *SFTP) Pool() *Pool { return s.pool }

// Lease returns the session slot the SFTP channel occupies.
func (s *SFTP) Lease() *Lease { return s.lease }

// Ended is closed when the SFTP session has ended and the pool has
// forgotten it, so that [Pool.SFTP] starts a new one.
func (s *SFTP) Ended() <-chan struct{} { return s.ended }

// SFTP returns the pool's SFTP session for target, starting one on a pooled
// connection if there is none or the previous one ended. ctx bounds only
// waiting and dialling. The error is a [*ConnError] or a [*HostKeyError]
// when the host cannot be used, or when its server has no SFTP subsystem.
func (p *Pool) SFTP(ctx context.Context, target string) (*SFTP, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
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
		if s := h.sftp; s != nil {
			select {
			case <-s.lease.Lost():
				// The watcher forgets it once the client has noticed;
				// do not hand it out meanwhile.
				h.sftp = nil
			default:
				p.mu.Unlock()
				return s, nil
			}
		}
		if st := h.sftpStarting; st != nil {
			p.mu.Unlock()
			if err := st.wait(ctx, target, ep.Addr()); err != nil {
				return nil, err
			}
			continue
		}
		st := newAttempt()
		h.sftpStarting = st
		p.mu.Unlock()

		s, err := p.startSFTP(ctx, target)

		p.mu.Lock()
		h.sftpStarting = nil
		st.end(err)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.closed {
			p.mu.Unlock()
			s.close()
			return nil, ErrClosed
		}
		h.sftp = s
		p.wg.Add(1)
		p.mu.Unlock()
		go p.watchSFTP(h, s)
		return s, nil
	}
}

// startSFTP opens an SFTP session to target on a session slot of a pooled
// connection.
func (p *Pool) startSFTP(ctx context.Context, target string) (*SFTP, error) {
	lease, err := p.Acquire(ctx, target)
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(lease.Client(),
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64),
		sftp.MaxPacketUnchecked(packetSize(lease.Client().ServerVersion())),
	)
	if err != nil {
		lease.Release()
		return nil, &ConnError{Host: target, Addr: lease.Endpoint().Addr(), Err: fmt.Errorf("sftp subsystem: %w", err)}
	}
	return &SFTP{Client: c, pool: p, target: target, lease: lease, ended: make(chan struct{})}, nil
}

// watchSFTP forgets s when its server goes away (killed, or the connection
// lost), so that the next SFTP call starts a new session.
func (p *Pool) watchSFTP(h *hostConns, s *SFTP) {
	defer p.wg.Done()
	s.Wait()
	p.mu.Lock()
	if h.sftp == s {
		h.sftp = nil
	}
	p.mu.Unlock()
	s.Client.Close()
	s.lease.Release()
	// After h.sftp is cleared, so that whoever sees ended and asks for a
	// session gets a new one.
	close(s.ended)
}

// sftpCloseGrace is how long closing an SFTP session waits for its server.
const sftpCloseGrace = 2 * time.Second

// close ends the session. pkg/sftp waits for the server to close its end,
// which a stopped or stuck sftp-server never does: after sftpCloseGrace the
// SSH connection under the session is ended instead.
func (s *SFTP) close() {
	closed := make(chan struct{})
	go func() { s.Client.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(sftpCloseGrace):
		s.lease.p.markDead(s.lease.c)
		<-closed
	}
	s.lease.Release()
}

// CloseSFTP ends the pool's SFTP session for target, if there is one, and
// waits until it has ended: requests still waiting for its server fail. The
// next [Pool.SFTP] starts a new session.
func (p *Pool) CloseSFTP(target string) {
	ep, err := p.resolve(target)
	if err != nil {
		return
	}
	p.mu.Lock()
	var s *SFTP
	if h := p.hosts[ep.key()]; h != nil {
		s, h.sftp = h.sftp, nil
	}
	p.mu.Unlock()
	if s != nil {
		s.close()
		<-s.ended
	}
}

// closeSFTPs ends every SFTP session, for Close.
func (p *Pool) closeSFTPs(hosts []*hostConns) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		p.mu.Lock()
		s := h.sftp
		h.sftp = nil
		p.mu.Unlock()
		if s != nil {
			wg.Go(s.close)
		}
	}
	wg.Wait()
}

// ConnErr returns err as a [*ConnError] when it was caused by the end of
// the SFTP session or of the SSH connection under it, so that callers can
// tell a lost host from an answer of the server. Other errors are returned
// unchanged. eofOK says io.EOF is a normal result of the call (a read at
// the end of a file); otherwise an EOF means the channel closed under the
// request.
func (s *SFTP) ConnErr(err error, eofOK bool) error {
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
		errors.Is(err, fs.ErrExist), errors.Is(err, fs.ErrInvalid):
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
		case <-s.ended:
			lost = true
		case <-s.lease.Lost():
			lost = true
		default:
		}
	}
	if !lost {
		return err
	}
	return &ConnError{Host: s.target, Addr: s.lease.Endpoint().Addr(), Err: fmt.Errorf("sftp session lost: %w", err)}
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
