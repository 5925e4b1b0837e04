package sshagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/sshserve"
	"github.com/drove-dev/drove/internal/wire"
)

// ErrUnavailable is wrapped by the error of [Launcher.Start] for a host
// that cannot run the agent (another platform, no writable cache, a noexec
// cache, an agent that did not start): its jobs run a session each
// instead.
var ErrUnavailable = errors.New("no agent on the host")

// Launcher starts agents, one per host and executor, and remembers the
// hosts that cannot run one, so that each is reported once and not tried
// again. Its methods are safe for concurrent use.
type Launcher struct {
	// Executable is the file installed and run as the agent; empty means
	// this program's own executable (os.Executable), whose drove.Main
	// serves.
	Executable string
	// Warn is told once per host why it runs no agent; nil says nothing.
	Warn func(target string, err error)
	// Logger receives what agents write on stderr, at debug level; nil
	// discards it.
	Logger *slog.Logger

	once    sync.Once
	blob    *hostcache.Blob
	blobErr error

	mu      sync.Mutex
	without map[string]error // hosts that cannot run an agent, and why
}

// Start starts an agent on target over pool. A host that cannot be
// reached is an error as in the rest of the SSH layer (a
// *sshconn.ConnError); a host that cannot run the agent is an error
// wrapping [ErrUnavailable], reported to Warn the first time.
func (l *Launcher) Start(ctx context.Context, pool *sshconn.Pool, target string) (*Client, error) {
	l.mu.Lock()
	why := l.without[target]
	l.mu.Unlock()
	if why != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, why)
	}
	l.once.Do(func() {
		exe := l.Executable
		if exe == "" {
			exe, l.blobErr = os.Executable()
		}
		if l.blobErr == nil {
			l.blob, l.blobErr = hostcache.NewBlob(exe)
		}
	})
	err := l.blobErr
	var c *Client
	if err == nil {
		c, err = start(ctx, pool, target, l.blob, l.Logger)
		if err != nil && ctx.Err() == nil && sshconn.IsHostError(err) && reachable(ctx, pool, target) {
			// The connection may have been cut under the start and the
			// host be back already: one more try tells that from an
			// error about the agent itself.
			c, err = start(ctx, pool, target, l.blob, l.Logger)
		}
	}
	if err == nil {
		return c, nil
	}
	if ctx.Err() != nil || sshconn.IsHostError(err) && !reachable(ctx, pool, target) {
		return nil, err
	}
	l.mu.Lock()
	if l.without == nil {
		l.without = map[string]error{}
	}
	first := l.without[target] == nil
	l.without[target] = err
	l.mu.Unlock()
	if first && l.Warn != nil {
		l.Warn(target, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// reachable reports whether target still takes sessions: an error of the
// SSH layer while the agent started (its SFTP subsystem failing, say,
// under a ForceCommand that prints) is then about the agent, not the host.
func reachable(ctx context.Context, pool *sshconn.Pool, target string) bool {
	s, err := pool.NewSession(ctx, target)
	if err != nil {
		return false
	}
	s.Close()
	return true
}

// helloTimeout bounds the wait for the agent's first frame once it has
// printed its marker.
const helloTimeout = 30 * time.Second

// Client is an agent running on one host over one SSH session. Its Run
// runs a command there as [sshconn.Pool.RunLeader] does, without a
// session of its own.
type Client struct {
	target string
	sess   *sshserve.Session
	r      *wire.Reader // the agent's frames, on sess.Stdout
	cpus   int

	wmu  sync.Mutex // one frame at a time on the session's stdin
	wbuf []byte

	mu     sync.Mutex
	calls  map[uint64]*call
	nextID uint64
	err    error         // why the agent is gone, once dead is closed
	dead   chan struct{} // closed when the session or the protocol broke
	rdone  chan struct{} // closed when the reader has ended
}

// call is a command in flight.
type call struct {
	stdout, stderr io.Writer
	exit           chan *frame // gets the tExit frame
}

// start starts the agent on target and waits for its hello.
func start(ctx context.Context, pool *sshconn.Pool, target string, exe *hostcache.Blob, log *slog.Logger) (*Client, error) {
	s, err := sshserve.Start(ctx, pool, target, sshserve.Config{
		Executable: exe,
		Env:        []string{EnvAgent + "=" + sshserve.CacheVar},
		Marker:     Marker,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	c := &Client{target: target, sess: s, r: newReader(s.Stdout), calls: map[uint64]*call{}, dead: make(chan struct{}), rdone: make(chan struct{})}
	hello := make(chan error, 1)
	go func() {
		f, err := readFrame(c.r)
		switch {
		case err != nil:
		case f.typ != tHello:
			err = fmt.Errorf("%w: first frame of type %d, not hello", errMalformed, f.typ)
		case f.version != Version:
			err = fmt.Errorf("agent speaks protocol version %d, not %d", f.version, Version)
		default:
			c.cpus = int(min(f.cpus, 1<<16))
		}
		hello <- err
	}()
	select {
	case err = <-hello:
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-time.After(helloTimeout):
		err = errors.New("no hello from the agent")
	}
	if err != nil {
		s.Close()
		<-s.Done()
		if _, ok := errors.AsType[*sshconn.ConnError](err); !ok && sshconn.IsHostError(s.Err()) {
			return nil, s.Err()
		}
		if msg := s.Stderr(); msg != "" {
			err = fmt.Errorf("%w; it printed: %s", err, msg)
		}
		return nil, fmt.Errorf("drove: %s: starting the agent %s: %w", target, s.Path, err)
	}
	go c.read()
	return c, nil
}

// CPUs returns the host's CPU count, as the agent found it.
func (c *Client) CPUs() int { return c.cpus }

// Path returns where the agent's executable is on the host.
func (c *Client) Path() string { return c.sess.Path }

// Done is closed when the agent is gone: its session ended or its
// protocol broke.
func (c *Client) Done() <-chan struct{} { return c.dead }

// Close ends the agent's session, and with it the agent and the commands
// still running (their process groups are stopped), and waits for the
// reader.
func (c *Client) Close() error {
	c.sess.Close()
	c.fail(errors.New("agent closed"))
	<-c.rdone
	return nil
}

// fail marks the agent gone for err (the first reason wins).
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.dead)
	}
}

// connErr is the error of a command whose agent is gone.
func (c *Client) connErr() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	return &sshconn.ConnError{Host: c.target, Addr: c.sess.Addr, Err: fmt.Errorf("agent session ended: %w", err)}
}

// read hands each frame from the agent to its call until the session
// ends.
func (c *Client) read() {
	defer close(c.rdone)
	for {
		f, err := readFrame(c.r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the agent exited or the connection was lost")
			}
			c.fail(err)
			return
		}
		c.mu.Lock()
		k := c.calls[f.id]
		if f.typ == tExit {
			delete(c.calls, f.id)
		}
		c.mu.Unlock()
		if k == nil {
			continue
		}
		switch f.typ {
		case tOut:
			w := k.stdout
			if f.stream == 2 {
				w = k.stderr
			}
			if w != nil {
				_, _ = w.Write(f.data)
			}
		case tExit:
			k.exit <- &frame{typ: tExit, code: f.code, signal: f.signal}
		}
	}
}

// send writes one frame to the agent.
func (c *Client) send(f *frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = appendFrame(c.wbuf[:0], f)
	if _, err := c.sess.Stdin.Write(c.wbuf); err != nil {
		c.fail(err)
		return c.connErr()
	}
	return nil
}

// Run runs cmd on the host through the agent and waits for it, with the
// contract of [sshconn.Pool.RunLeader]: the script (cmd.Script: the cd to
// Dir, the exports, the command) is run by the user's login shell as sshd
// runs a session's command, in its own process group; a non-zero exit is
// in the ExitStatus, not an error; when ctx ends the agent stops the
// group (SIGINT, SIGTERM, SIGKILL, cmd.KillGrace apart) and Run returns
// with Killed set and an error wrapping context.Cause(ctx); an agent or
// connection lost under the command is a [*sshconn.ConnError].
func (c *Client) Run(ctx context.Context, cmd *sshconn.Cmd) (sshconn.ExitStatus, error) {
	st := sshconn.ExitStatus{Code: -1}
	script, err := cmd.Script()
	if err != nil {
		return st, err
	}
	k := &call{stdout: cmd.Stdout, stderr: cmd.Stderr, exit: make(chan *frame, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return st, c.connErr()
	}
	c.nextID++
	id := c.nextID
	c.calls[id] = k
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}
	grace := proc.Grace(cmd.KillGrace)
	if err := c.send(&frame{typ: tStart, id: id, grace: grace, hasStdin: cmd.Stdin != nil, data: []byte(script)}); err != nil {
		forget()
		return st, err
	}
	ended := make(chan struct{})
	defer close(ended)
	if cmd.Stdin != nil {
		// Not waited for, as with a session: a Stdin that blocks must not
		// hold up Run.
		go c.feed(id, cmd.Stdin, ended)
	}
	var exit *frame
	select {
	case exit = <-k.exit:
	case <-c.dead:
		forget()
		return st, c.connErr()
	case <-ctx.Done():
		st.Killed = true
		if err := c.send(&frame{typ: tStop, id: id}); err != nil {
			forget()
			return st, err
		}
		select {
		case exit = <-k.exit:
		case <-c.dead:
			forget()
			return st, c.connErr()
		case <-time.After(proc.Longest(grace) + 30*time.Second):
			forget()
			return st, &sshconn.ConnError{Host: c.target, Addr: c.sess.Addr, Err: errors.New("the agent did not end a stopped command")}
		}
	}
	st.Code = int(exit.code)
	st.Signal = syscall.Signal(exit.signal)
	if st.Signal != 0 {
		st.Code = -1
	}
	if st.Killed {
		return st, fmt.Errorf("drove: %s: command killed: %w", c.target, context.Cause(ctx))
	}
	return st, nil
}

// feed sends r to command id's stdin in chunks, then its end.
func (c *Client) feed(id uint64, r io.Reader, ended <-chan struct{}) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		select {
		case <-ended:
			return
		default:
		}
		if n > 0 {
			if c.send(&frame{typ: tStdin, id: id, data: buf[:n]}) != nil {
				return
			}
		}
		if err != nil {
			_ = c.send(&frame{typ: tStdin, id: id})
			return
		}
	}
}
