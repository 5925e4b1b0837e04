package node

import (
	"container/list"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the connection bounds and timeouts (see Config).
const (
	defaultMaxConnsPerHost = 256
	defaultIdleTimeout     = 2 * time.Minute
	defaultUnauthTimeout   = 30 * time.Second
	// maxConnsCap bounds the default MaxConns however many descriptors the
	// process may open.
	maxConnsCap = 4096
	// fdReserve is what the default MaxConns leaves to everything but
	// connections: listeners, discovery sockets, the runtime's own.
	fdReserve = 64
	// dropLogEvery rate-limits the warnings about dropped connections: a
	// flood of connections must not become a flood of log lines.
	dropLogEvery = 10 * time.Second
)

// defaultMaxConns derives the connection bound from the process's limit of
// open files (RLIMIT_NOFILE, which the Go runtime raises to the hard limit
// at start): accepting until that limit is reached makes accept fail with
// EMFILE, and net/http then retries for ever while every new client, an
// authenticated one included, hangs in the listen backlog. Half of what is
// left after a reserve, since a connection receiving or sending a blob, or
// one whose job runs, holds a file as well.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return maxConnsCap
	}
	cur := min(rl.Cur, 1<<20) // RLIM_INFINITY is the largest uint64
	return max(16, min(maxConnsCap, (int(cur)-fdReserve)/2))
}

// Reasons a connection is dropped, the label of
// drove_node_dropped_connections_total.
const (
	dropBound  = "bound"  // closed to make room for a new connection
	dropRefuse = "refuse" // new connection refused: every other one has authenticated
	dropUnauth = "unauth" // did not authenticate within Config.UnauthTimeout
)

// connLimiter bounds the node's TCP connections, in total and per client
// address, across all its listeners. A client that never authenticates
// cannot hold connections away from one that does: when a bound is reached
// the oldest connection that has not authenticated is closed to make room,
// and such connections are closed anyway after unauthTimeout. Connections
// on which a request passed authentication are closed only by the HTTP
// server (idle timeout, client gone); when every connection at a bound has
// authenticated, a new one is refused instead.
type connLimiter struct {
	max, maxPerHost int
	unauthTimeout   time.Duration
	log             *slog.Logger
	met             *metrics

	mu      sync.Mutex
	total   int
	perHost map[string]int
	unauth  list.List // *trackedConn not authenticated yet, oldest first
	// Dropped connections not logged yet, and when the last log was.
	unlogged map[string]int
	lastLog  time.Time
}

func newConnLimiter(cfg *Config, log *slog.Logger, met *metrics) *connLimiter {
	return &connLimiter{
		max:           cfg.MaxConns,
		maxPerHost:    cfg.MaxConnsPerHost,
		unauthTimeout: cfg.UnauthTimeout,
		log:           log,
		met:           met,
		perHost:       map[string]int{},
		unlogged:      map[string]int{},
	}
}

// listener returns ln with its connections bounded and tracked by l.
func (l *connLimiter) listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, lim: l}
}

type limitListener struct {
	net.Listener
	lim *connLimiter
}

// Accept returns the next connection the limiter admits; refused ones are
// closed and not returned.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := ll.lim.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// trackedConn is a connection the limiter counts. Its fields other than
// Conn, lim, key and since are guarded by lim.mu.
type trackedConn struct {
	net.Conn
	lim    *connLimiter
	key    string
	since  time.Time
	authed atomic.Bool   // a request on it passed authentication
	elem   *list.Element // in lim.unauth while not authenticated
	gone   bool          // no longer counted
}

// Close stops counting the connection and closes it.
func (c *trackedConn) Close() error {
	c.lim.mu.Lock()
	c.lim.forgetLocked(c)
	c.lim.mu.Unlock()
	return c.Conn.Close()
}

// authenticated marks the connection as one a request passed
// authentication on: it is no longer closed to make room, nor for not
// authenticating in time.
func (c *trackedConn) authenticated() {
	if c.authed.Load() {
		return
	}
	c.lim.mu.Lock()
	if c.elem != nil {
		c.lim.unauth.Remove(c.elem)
		c.elem = nil
	}
	c.lim.mu.Unlock()
	c.authed.Store(true)
}

// hostKey is what the per-host bound counts connections by: the IP
// address, or for IPv6 its /64, which is what one subscriber usually gets.
func hostKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ta.IP.To4() != nil {
		return ta.IP.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// admit counts c, first closing the oldest unauthenticated connection of
// its host or of all hosts if a bound is reached. It returns nil, with c
// closed, if a bound is reached and every connection under it has
// authenticated.
func (l *connLimiter) admit(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, lim: l, key: hostKey(c.RemoteAddr()), since: time.Now()}
	var victims []*trackedConn
	refused := false
	l.mu.Lock()
	if l.perHost[tc.key] >= l.maxPerHost {
		if v := l.oldestUnauthLocked(tc.key); v != nil {
			victims = append(victims, v)
		} else {
			refused = true
		}
	}
	if !refused && l.total >= l.max {
		if v := l.oldestUnauthLocked(""); v != nil {
			victims = append(victims, v)
		} else {
			refused = true
		}
	}
	if !refused {
		l.total++
		l.perHost[tc.key]++
		tc.elem = l.unauth.PushBack(tc)
		l.met.conns.Set(float64(l.total))
	}
	l.mu.Unlock()
	l.drop(dropBound, victims)
	if refused {
		l.drop(dropRefuse, []*trackedConn{tc})
		return nil
	}
	return tc
}

// oldestUnauthLocked forgets and returns the oldest connection of host
// (any host if "") that has not authenticated, nil if there is none.
func (l *connLimiter) oldestUnauthLocked(host string) *trackedConn {
	for e := l.unauth.Front(); e != nil; e = e.Next() {
		if tc := e.Value.(*trackedConn); host == "" || tc.key == host {
			l.forgetLocked(tc)
			return tc
		}
	}
	return nil
}

func (l *connLimiter) forgetLocked(c *trackedConn) {
	if c.gone {
		return
	}
	c.gone = true
	l.total--
	if l.perHost[c.key]--; l.perHost[c.key] <= 0 {
		delete(l.perHost, c.key)
	}
	if c.elem != nil {
		l.unauth.Remove(c.elem)
		c.elem = nil
	}
	l.met.conns.Set(float64(l.total))
}

// reap closes connections that have not authenticated within
// unauthTimeout, until ctx ends.
func (l *connLimiter) reap(ctx context.Context) {
	t := time.NewTicker(max(l.unauthTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var victims []*trackedConn
		l.mu.Lock()
		for e := l.unauth.Front(); e != nil; e = l.unauth.Front() {
			tc := e.Value.(*trackedConn)
			if time.Since(tc.since) < l.unauthTimeout {
				break
			}
			l.forgetLocked(tc)
			victims = append(victims, tc)
		}
		l.mu.Unlock()
		l.drop(dropUnauth, victims)
	}
}

// drop closes cs (forgotten, or never counted), counts them and logs, at
// most once every dropLogEvery, how many were dropped since the last log.
func (l *connLimiter) drop(reason string, cs []*trackedConn) {
	if len(cs) == 0 {
		return
	}
	for _, c := range cs {
		c.Conn.Close()
		l.log.Debug("connection dropped", "remote", c.RemoteAddr(), "reason", reason)
	}
	l.met.dropped.WithLabelValues(reason).Add(float64(len(cs)))
	l.mu.Lock()
	l.unlogged[reason] += len(cs)
	if time.Since(l.lastLog) < dropLogEvery {
		l.mu.Unlock()
		return
	}
	l.lastLog = time.Now()
	bound, refused, unauth := l.unlogged[dropBound], l.unlogged[dropRefuse], l.unlogged[dropUnauth]
	clear(l.unlogged)
	total := l.total
	l.mu.Unlock()
	msg := "closed connections that did not authenticate: to make room for new ones (bound) or for not authenticating in time (unauth)"
	if refused > 0 {
		msg = "refused new connections: every connection at --max-conns or --max-conns-per-host has authenticated; raise them if these are your clients"
	}
	l.log.Warn(msg, "bound", bound, "unauth", unauth, "refused", refused, "open", total,
		"max_conns", l.max, "max_conns_per_host", l.maxPerHost, "last_remote", cs[len(cs)-1].RemoteAddr())
}

type connKey struct{}

// withConn is the server's ConnContext: it puts the tracked connection
// under a request's context, for markAuthenticated.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// markAuthenticated marks the connection a request came on as
// authenticated (see connLimiter).
func markAuthenticated(ctx context.Context) {
	if tc, ok := ctx.Value(connKey{}).(*trackedConn); ok {
		tc.authenticated()
	}
}
