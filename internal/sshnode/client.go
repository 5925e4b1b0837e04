package sshnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/sshserve"
)

// Config is what Start needs besides the host.
type Config struct {
	// Executable is this program as installed on hosts: the serving
	// process is a copy of it (drove.Main serves when EnvServe is set).
	Executable *hostcache.Blob
	// LogLevel is the serving process's log level (EnvLog); "" is warn.
	LogLevel string
	// Logger receives what the serving process writes on stderr, a line
	// at a time, at debug level; nil discards it.
	Logger *slog.Logger
}

// Conn is a drove node served over one SSH session. Its HTTP client
// carries every request of the node protocol over the session; close it
// to end the session, which ends the serving process and its jobs.
type Conn struct {
	// HTTP is the client for nodeexec.Config.HTTPClient.
	HTTP *http.Client
	// Host is the host as probed: its platform and cache.
	Host *hostcache.Host
	// Path is the executable serving there.
	Path string

	sess *sshserve.Session
}

// Start probes target over pool, checks that Executable runs on its
// platform (a *hostcache.PlatformError otherwise), installs it into the
// host's cache unless it is there already, and starts it in serving mode
// on a new session (internal/sshserve). It returns once the serving
// process has said it is ready, or with what it printed on stderr if it
// did not.
func Start(ctx context.Context, pool *sshconn.Pool, target string, cfg Config) (*Conn, error) {
	env := []string{EnvServe + "=" + sshserve.CacheVar}
	if cfg.LogLevel != "" {
		env = append(env, EnvLog+"="+cfg.LogLevel)
	}
	s, err := sshserve.Start(ctx, pool, target, sshserve.Config{Executable: cfg.Executable, Env: env, Marker: Marker, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	c := &Conn{Host: s.Host, Path: s.Path, sess: s}
	nc := &node.StdioConn{R: readCloser{s.Stdout, closerFunc(s.Close)}, W: noClose{s.Stdin}, Local: sshAddr("client"), Remote: sshAddr("ssh://" + target)}
	c.HTTP = newHTTPClient(nc, target)
	return c, nil
}

// Done is closed when the session has ended: the serving process exited
// or the connection was lost.
func (c *Conn) Done() <-chan struct{} { return c.sess.Done() }

// Close ends the session; the serving process then stops its jobs and
// exits.
func (c *Conn) Close() error {
	c.sess.Close()
	if c.HTTP != nil {
		c.HTTP.CloseIdleConnections()
	}
	return nil
}

// newHTTPClient returns an HTTP/2 client whose one connection is nc; once
// nc is gone, requests fail at once (a new session is a new node process,
// which the fleet dials).
func newHTTPClient(nc net.Conn, target string) *http.Client {
	var mu sync.Mutex
	used := false
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			if used {
				return nil, fmt.Errorf("drove: ssh://%s: the node's session has ended", target)
			}
			used = true
			return nc, nil
		},
		// One connection only: concurrent requests share it.
		MaxConnsPerHost: 1,
		HTTP2: &http.HTTP2Config{
			// HTTP/2 pings find a session that went silent (nodeexec's
			// heartbeats do too, more slowly).
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	return &http.Client{Transport: tr}
}

// readCloser reads from r; Close closes c (the session's stdin).
type readCloser struct {
	r io.Reader
	c io.Closer
}

func (rc readCloser) Read(p []byte) (int, error) { return rc.r.Read(p) }
func (rc readCloser) Close() error               { return rc.c.Close() }

// closerFunc is a function as an io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// noClose is a writer whose Close does nothing: the session is closed as
// a whole.
type noClose struct{ w io.Writer }

func (n noClose) Write(p []byte) (int, error) { return n.w.Write(p) }
func (noClose) Close() error                  { return nil }

// sshAddr names an end of the session.
type sshAddr string

func (a sshAddr) Network() string { return "ssh" }
func (a sshAddr) String() string  { return string(a) }
