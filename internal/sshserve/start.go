package sshserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
)

// Config is what [Start] needs besides the host.
type Config struct {
	// Executable is this program as installed on hosts.
	Executable *hostcache.Blob
	// Env holds the NAME=value pairs that select the serving mode; a value
	// "$CACHE" is replaced by the host's cache directory.
	Env []string
	// Marker is the line the serving process prints on stdout once it
	// serves; what the login shell printed before it is skipped.
	Marker string
	// Logger receives what the serving process writes on stderr, a line at
	// a time, at debug level; nil discards it.
	Logger *slog.Logger
}

// CacheVar in a [Config.Env] value stands for the host's cache directory.
const CacheVar = "$CACHE"

// Session is the serving process on one SSH session. Write to Stdin and
// read from Stdout; Close ends the session, which ends the process.
type Session struct {
	// Host is the host as probed: its platform and cache.
	Host *hostcache.Host
	// Path is the executable serving there.
	Path string
	// Stdin is the session's standard input.
	Stdin io.Writer
	// Stdout is the session's standard output, after the marker line.
	Stdout *bufio.Reader
	// Addr is the address of the connection the session is on.
	Addr string

	sess    *sshconn.Session
	done    chan struct{} // closed when the session has ended
	waitErr error         // the session's end, once done is closed
	stderr  *tail
	once    sync.Once
}

// Start probes target over pool, checks that cfg.Executable runs on its
// platform (a *hostcache.PlatformError otherwise), installs it into the
// host's cache unless it is there already, and starts it with cfg.Env on
// a new session. It returns once the serving process has printed
// cfg.Marker, or with what it printed on stderr if it did not. An
// executable the host cannot run (a noexec cache) is a
// *hostcache.ExecError.
func Start(ctx context.Context, pool *sshconn.Pool, target string, cfg Config) (*Session, error) {
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
	s := &Session{Host: h, Path: in.Path, Addr: sess.Lease().Endpoint().Addr(), sess: sess, done: make(chan struct{}), stderr: &tail{log: cfg.Logger, target: target}}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, &sshconn.ConnError{Host: target, Addr: s.Addr, Err: err}
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, &sshconn.ConnError{Host: target, Addr: s.Addr, Err: err}
	}
	s.Stdin = stdin
	sess.Stderr = s.stderr
	words := []string{"exec", "env"}
	for _, kv := range cfg.Env {
		words = append(words, sshconn.Quote(strings.ReplaceAll(kv, CacheVar, h.Dir)))
	}
	words = append(words, sshconn.Quote(in.Path))
	if err := sess.Start(strings.Join(words, " ")); err != nil {
		sess.Close()
		return nil, &sshconn.ConnError{Host: target, Addr: s.Addr, Err: fmt.Errorf("starting %s: %w", in.Path, err)}
	}
	go func() {
		// Wait returns when the command has exited and its output is
		// read, or the connection is lost.
		s.waitErr = sess.Wait()
		close(s.done)
	}()
	br := bufio.NewReader(stdout)
	ready := make(chan error, 1)
	go func() { ready <- readMarker(br, cfg.Marker) }()
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
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
		s.Close()
		<-s.done
		var ee *ssh.ExitError
		if errors.As(s.waitErr, &ee) && ee.ExitStatus() == 126 {
			// The shell found the file but could not run it: a noexec
			// file system, or not a program for this host. Permanent.
			return nil, &hostcache.ExecError{Target: target, Path: in.Path, Code: 126, Output: s.stderr.String()}
		}
		if ee == nil && ctx.Err() == nil && !errors.Is(err, errNoMarker) {
			// No exit status: the connection went.
			return nil, &sshconn.ConnError{Host: target, Addr: s.Addr, Err: err}
		}
		if msg := s.stderr.String(); msg != "" {
			err = fmt.Errorf("%w; it printed: %s", err, msg)
		}
		return nil, fmt.Errorf("drove: %s: serving with %s: %w", target, in.Path, err)
	}
	s.Stdout = br
	return s, nil
}

var errNoMarker = errors.New("the process ended before it served")

// readMarker reads lines until marker; what the login shell printed
// before it is skipped. The reader keeps what follows.
func readMarker(br *bufio.Reader, marker string) error {
	for skipped := 0; skipped < 1<<20; {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == marker {
			return nil
		}
		skipped += len(line)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errNoMarker
			}
			return err
		}
	}
	return errors.New("no serving marker in the first MiB of output")
}

// Done is closed when the session has ended: the serving process exited
// or the connection was lost.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns how the session ended, once Done is closed.
func (s *Session) Err() error {
	<-s.done
	return s.waitErr
}

// Stderr returns the last lines the serving process wrote on stderr.
func (s *Session) Stderr() string { return s.stderr.String() }

// Close ends the session; the serving process then sees its stdin end.
// Closing the whole session rather than only its stdin (CloseWrite),
// which races with writes in x/crypto/ssh.
func (s *Session) Close() error {
	s.once.Do(func() { _ = s.sess.Close() })
	return nil
}

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
			t.log.Debug("ssh serving stderr", "host", t.target, "line", l)
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
