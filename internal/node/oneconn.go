package node

import (
	"context"
	"net"
	"sync"
	"time"
)

// oneConnListener hands out one connection (Config.Conn) and then blocks
// until that connection is closed or the listener is, when Accept fails
// with net.ErrClosed: http.Server.Serve over it serves that connection
// and returns once the connection has ended.
type oneConnListener struct {
	conn     *endConn
	mu       sync.Mutex
	given    bool
	closed   chan struct{}
	closeOne sync.Once
}

// endConn is the served connection; ended is closed when the server
// closes it (it read EOF: the client went away).
type endConn struct {
	net.Conn
	ended chan struct{}
	once  sync.Once
}

func (c *endConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.ended) })
	return err
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: &endConn{Conn: c, ended: make(chan struct{})}, closed: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	given := l.given
	l.given = true
	l.mu.Unlock()
	if !given {
		return l.conn, nil
	}
	select {
	case <-l.conn.ended:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.closeOne.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// trustedConnKey marks the context of the connection given as
// Config.Conn, whose requests are authenticated by how it was made.
type trustedConnKey struct{}

// trusted reports whether ctx is a request's on Config.Conn.
func trusted(ctx context.Context) bool {
	v, _ := ctx.Value(trustedConnKey{}).(bool)
	return v
}

// StdioConn is a net.Conn made of a reader and a writer (a process's stdin
// and stdout): what a node started over SSH serves (Config.Conn). Close
// closes both.
type StdioConn struct {
	R interface {
		Read([]byte) (int, error)
		Close() error
	}
	W interface {
		Write([]byte) (int, error)
		Close() error
	}
	// Local and Remote name the ends; nil gives a placeholder address.
	Local, Remote net.Addr
}

// Read implements net.Conn.
func (c *StdioConn) Read(p []byte) (int, error) { return c.R.Read(p) }

// Write implements net.Conn.
func (c *StdioConn) Write(p []byte) (int, error) { return c.W.Write(p) }

// Close implements net.Conn.
func (c *StdioConn) Close() error {
	err := c.R.Close()
	if werr := c.W.Close(); err == nil {
		err = werr
	}
	return err
}

// LocalAddr implements net.Conn.
func (c *StdioConn) LocalAddr() net.Addr {
	if c.Local != nil {
		return c.Local
	}
	return stdioAddr("stdio")
}

// RemoteAddr implements net.Conn.
func (c *StdioConn) RemoteAddr() net.Addr {
	if c.Remote != nil {
		return c.Remote
	}
	return stdioAddr("stdio")
}

// SetDeadline implements net.Conn. Pipes have no deadlines: the
// connection ends when the other side closes it (the SSH channel ends).
func (c *StdioConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.Conn; see SetDeadline.
func (c *StdioConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn; see SetDeadline.
func (c *StdioConn) SetWriteDeadline(time.Time) error { return nil }

// stdioAddr is the address of a connection that is not a socket.
type stdioAddr string

func (a stdioAddr) Network() string { return "stdio" }
func (a stdioAddr) String() string  { return string(a) }
