package sshnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
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

	sess    *sshconn.Session
	done    chan struct{} // closed when the session has ended
	waitErr error         // the session's end, once done is closed
	stderr  *tail
	once    sync.Once
}

// Start probes target over pool, checks that Executable runs on its
// platform (a *hostcache.PlatformError otherwise), installs it into the
// host's cache unless it is there already, and starts it in serving mode
// on a new session. It returns once the serving process has said it is
// ready, or with what it printed on stderr if it did not.
func Start(ctx context.Context, pool *sshconn.Pool, target string, cfg Config) (*Conn, error) {
	h, err := hostcache.Probe(ctx, pool, target)
	if err != nil {
		return nil, err
	}
	in, err := h.InstallExecutable(ctx, cfg.Executable)
	if err != nil {
		return nil, err
	}
	sess, err := pool.NewSession(ctx, target)
	if err != nil {
		return nil, err
	}
	c := &Conn{Host: h, Path: in.Path, sess: sess, done: make(chan struct{}), stderr: &tail{log: cfg.Logger, target: target}}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	sess.Stderr = c.stderr
	env := EnvServe + "=" + h.Dir
	if cfg.LogLevel != "" {
		env += " " + EnvLog + "=" + cfg.LogLevel
	}
	words := []string{"exec", "env"}
	for _, kv := range strings.Fields(env) {
		words = append(words, sshconn.Quote(kv))
	}
	words = append(words, sshconn.Quote(in.Path))
	if err := sess.Start(strings.Join(words, " ")); err != nil {
		sess.Close()
		return nil, fmt.Errorf("drove: %s: starting %s: %w", target, in.Path, err)
	}
	go func() {
		// Wait returns when the command has exited and its output is
		// read, or the connection is lost.
		c.waitErr = sess.Wait()
		close(c.done)
	}()
	br := bufio.NewReader(stdout)
	ready := make(chan error, 1)
	go func() { ready <- readMarker(br) }()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() == nil {
			// The process ended (or never printed the marker): let its
			// exit status arrive before the session is closed.
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
			}
		}
		c.Close()
		<-c.done
		var ee *ssh.ExitError
		if errors.As(c.waitErr, &ee) && ee.ExitStatus() == 126 {
			// The shell found the file but could not run it: a noexec
			// file system, or not a program for this host. Permanent.
			return nil, &hostcache.ExecError{Target: target, Path: in.Path, Code: 126, Output: c.stderr.String()}
		}
		if msg := c.stderr.String(); msg != "" {
			err = fmt.Errorf("%w; it printed: %s", err, msg)
		}
		return nil, fmt.Errorf("drove: %s: serving the node protocol with %s: %w", target, in.Path, err)
	}
	// Closing the connection closes the whole session: closing only its
	// stdin (CloseWrite) races with writes in x/crypto/ssh.
	nc := &node.StdioConn{R: readCloser{br, closerFunc(c.closeSession)}, W: noClose{stdin}, Local: sshAddr("client"), Remote: sshAddr("ssh://" + target)}
	c.HTTP = newHTTPClient(nc, target)
	return c, nil
}

// readMarker reads lines until Marker; what the login shell printed
// before it is skipped. The reader keeps what follows.
func readMarker(br *bufio.Reader) error {
	for skipped := 0; skipped < 1<<20; {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == Marker {
			return nil
		}
		skipped += len(line)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the process ended before it served")
			}
			return err
		}
	}
	return errors.New("no serving marker in the first MiB of output")
}

// Done is closed when the session has ended: the serving process exited
// or the connection was lost.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the session; the serving process then stops its jobs and
// exits.
func (c *Conn) Close() error {
	c.closeSession()
	if c.HTTP != nil {
		c.HTTP.CloseIdleConnections()
	}
	return nil
}

// closeSession closes the session once; the HTTP connection's Close calls
// it too.
func (c *Conn) closeSession() error {
	c.once.Do(func() { _ = c.sess.Close() })
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

// tail keeps the last lines the serving process wrote on stderr, for
// errors, and logs each at debug level.
type tail struct {
	log    *slog.Logger
	target string
	mu     sync.Mutex
	buf    []byte
}

const tailMax = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = t.buf[len(t.buf)-tailMax:]
	}
	if t.log != nil {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			t.log.Debug("ssh node stderr", "host", t.target, "line", l)
		}
	}
	return len(p), nil
}

// String returns the last lines written, joined with "; ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}
