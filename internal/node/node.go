// Package node is the drove node daemon (drove node): it runs the jobs of
// any number of clients' computations on this machine's CPUs, with the same
// local executor an embedded cluster uses, and serves everything on one TCP
// port with one net/http server:
//
//   - the control API (proto/drove/v1, connect-go): Info, Setup, Submit,
//     Cancel, Results (a server stream that is also the node's heartbeat),
//     Heartbeat and Close;
//   - /blobs/{sum}: content-addressed files over plain HTTP (HEAD, PUT, GET):
//     executables, programs and depends going in, files sent back by jobs
//     coming out; a blob the node holds is never sent again;
//   - /healthz and /metrics (Prometheus, the node's own registry);
//   - the web monitor (package monitor) at /, its API under /api/.
//
// Every request is authenticated before its body is read: with a cluster
// secret by an HMAC header (package nodeauth; the body is then checked
// against the hash the header signs), with mutual TLS by the handshake, or
// both. With neither (TLS without required client certificates counts as
// neither), only clients of the node's own user on this machine (loopback,
// the socket's owner checked, see peeruid.go) are served unless
// Config.Insecure is set.
//
// The node schedules with drove's scheduling core (package sched): this
// machine is one node of Config.CPUs slots, each computation is a tenant
// with its own local executor (functions) or process executor (programs),
// and each job is a task of its tenant. A computation runs up to its slots
// at once, and Config.Policy picks whose job takes a CPU that frees (fair
// shares by default, so two busy clients get half each). Events a client has not
// acknowledged outlive its connection (on disk while it is away) and are
// delivered when it comes back; a computation whose client stays away for
// Config.ZombieInterval is closed and its files removed.
package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/errgroup"

	"github.com/drove-dev/drove/internal/blob"
	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/local"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/scheduler/state"
)

// DefaultPort is the node's TCP port, dispy's node port.
const DefaultPort = 9701

// Config configures a Node. The zero value serves all CPUs on an
// OS-chosen port of every interface, to clients of the same user on this
// machine only.
type Config struct {
	// Hosts are the addresses to listen on; none means every interface.
	Hosts []string
	// Port is the TCP port; 0 lets the system pick one (see Node.Addr).
	Port int
	// ExtHost is the address announced to clients (behind NAT); "" means
	// the listening address.
	ExtHost string
	// Name is the node's name; "" means the host name.
	Name string
	// CPUs is how many CPUs to use: 0 all, a negative n leaves n free.
	CPUs int
	// Dir holds blobs and computation directories (per client and
	// computation); "" means drove/node under os.TempDir. One daemon
	// at a time: New locks it.
	Dir string
	// Clean removes what Dir holds from an earlier run before starting.
	Clean bool
	// Secret is the cluster secret clients must sign requests with; "" means
	// none.
	Secret string
	// TLS, if set, serves TLS with it; set ClientAuth to
	// RequireAndVerifyClientCert and ClientCAs in it for mutual TLS (see
	// nodeauth.ServerTLS). Only mutual TLS authenticates clients.
	TLS *tls.Config
	// Insecure serves any client, from any address and of any user, with
	// neither a secret nor mutual TLS. Without it such a node serves only
	// loopback clients of its own user.
	Insecure bool
	// MaxFileSize bounds any file received or sent back (blobs included); 0
	// means no bound.
	MaxFileSize int64
	// MaxMessage bounds one control message; default 64 MiB.
	MaxMessage int
	// Serve is how many clients (distinct client ids) to serve before Run
	// returns, as dispynode's --serve: once that many have set up a
	// computation, other clients are refused (Unavailable), and Run
	// returns when none of those clients has a computation open any more.
	// 0 means no limit.
	Serve int
	// ZombieInterval is how long a computation's client may stay away
	// before the computation is closed; default 60 minutes.
	ZombieInterval time.Duration
	// PingInterval is the default heartbeat interval on Results streams
	// (clients may ask for another); default 2s.
	PingInterval time.Duration
	// ShutdownTimeout bounds how long Run drains after ctx ends; default 10s.
	ShutdownTimeout time.Duration
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// Discovery answers clients' UDP discovery pings on the node's port and
	// announces the node to clients when it starts.
	Discovery bool
	// Multicast uses the IPv4 multicast group instead of broadcast.
	Multicast bool
	// AnnounceTo overrides where the start-up announcement goes (tests);
	// default the LAN's broadcast addresses on the clients' port.
	AnnounceTo []*net.UDPAddr
	// SchedulerHosts are clients ("host" or "host:port", port default
	// discovery.ClientPort) told by unicast that the node is up, as
	// dispynode's --scheduler_host: a client on another subnet, which no
	// broadcast reaches, learns of the node. The announcement is sent at
	// start and every AnnounceInterval, whether or not Discovery is on.
	SchedulerHosts []string
	// AnnounceInterval is how often SchedulerHosts are told again, so a
	// client started after the node hears of it; default 10s.
	AnnounceInterval time.Duration
	// ClientSilence is how long a client connection may send nothing
	// before the node pings it (HTTP/2 PING), and how long the node then
	// waits for the answer before dropping the connection; default five
	// PingIntervals, at least 1s. A client whose machine died or whose
	// process is frozen is so detected, and is away from then on (its
	// results spool to disk, the zombie interval runs).
	ClientSilence time.Duration
	// MaxConns bounds the node's open TCP connections. At the bound, the
	// oldest connection on which no request has passed authentication yet
	// is closed to make room for a new one; if every connection has
	// authenticated, the new one is refused. 0 means half the process's
	// limit of open files (RLIMIT_NOFILE) less 64, at most 4096, at least
	// 16.
	MaxConns int
	// MaxConnsPerHost bounds the connections from one client address (for
	// IPv6, one /64) the same way; default 256. Clients on this machine
	// share one address.
	MaxConnsPerHost int
	// IdleTimeout closes a connection that has no request in flight for
	// this long (HTTP/1.1 keep-alive, or HTTP/2 without streams: an open
	// Results stream keeps its connection); default 2 minutes.
	IdleTimeout time.Duration
	// UnauthTimeout closes a connection on which no request has passed
	// authentication this long after it was accepted; default 30s.
	// Authenticated means signed with the secret, or with mutual TLS over
	// a verified certificate, or a request the node serves without either
	// (a loopback client's on a node with neither, any with Insecure, and
	// /metrics from loopback); /healthz does not count.
	UnauthTimeout time.Duration
	// Policy chooses which computation's job takes a CPU that frees; the
	// default, sched.Fair, shares the CPUs evenly between the
	// computations with jobs. Within a computation, jobs run in the order
	// submitted.
	Policy sched.Policy
	// OnListen, if set, is called by Run once it serves (tests use it).
	OnListen func()
	// State, if set, keeps the computations, their jobs and the results
	// their clients have not acknowledged, so that the daemon started
	// again on it after it was killed takes them up again (drove scheduler
	// --state; see durable.go). The daemon does not close it.
	State *state.DB
	// Machines run the computations' jobs; nil means this machine's CPUs
	// (drove node). drove scheduler gives the drove nodes it drives
	// (package internal/scheduler).
	Machines Machines
	// Conn, if set, is the one connection the daemon serves instead of
	// listening on TCP: a node started over SSH by its client (drove.Main's
	// serving mode), whose stdin and stdout are the connection. Only who
	// may log in as the node's user could start it so, so every request
	// on Conn counts as authenticated, without a secret; there is no TCP
	// listener, no discovery, no idle timeout, and Run returns once Conn
	// has ended (the SSH channel closed), closing every computation.
	Conn net.Conn
	// BlobDir holds the blobs; "" means Dir/blobs. Nodes started over SSH
	// share the host's content-addressed cache (internal/sshconn/hostcache)
	// so that what one session received the next does not.
	BlobDir string
}

// Node is a drove node daemon. Create it with New and start it with Run.
type Node struct {
	cfg    Config
	log    *slog.Logger
	lns    []net.Listener
	oneLn  *oneConnListener // Config.Conn's, or nil
	srv    *http.Server
	blobs  blob.Store
	verify *nodeauth.Verifier
	bootID string
	cpus   int
	met    *metrics
	conns  *connLimiter
	info   *infoSampler
	// lock is Dir's, held from New until Run returns.
	lock *dirLock
	disc *discovery.Responder
	// announcer sends announcements to SchedulerHosts: disc, or a socket
	// of its own without discovery.
	announcer *discovery.Responder

	// sched schedules every computation's jobs on the node's CPUs; Run
	// creates it before serving and closes it at the end.
	sched *sched.Scheduler

	// machines run the computations' jobs: Config.Machines, or this
	// machine. relay is machines if they are other daemons (a drove
	// scheduler's nodes), else nil.
	machines Machines
	relay    Relay

	// rec keeps the latest jobs for the monitor, mon serves it, sessions
	// sign browsers in with the secret (nil without one).
	rec      *monitor.Recorder
	mon      *monitor.Handler
	sessions *monitor.Sessions

	// stopping is set when Run starts closing the computations.
	stopping atomic.Bool

	mu       sync.Mutex
	comps    map[string]*Computation
	clients  map[string]bool // client ids served, counted for Serve
	serveEnd chan struct{}   // closed when Serve clients have been served
}

// New validates cfg, prepares the directory and binds the listeners: every
// start-up failure is returned here. The directory is locked (Dir/lock)
// from New until Run returns: a second daemon given the same Dir fails
// with ErrDirInUse.
func New(cfg Config) (*Node, error) {
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.Name = h
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(os.TempDir(), "drove", "node")
	}
	if cfg.ZombieInterval <= 0 {
		cfg.ZombieInterval = 60 * time.Minute
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 2 * time.Second
	}
	if cfg.AnnounceInterval <= 0 {
		cfg.AnnounceInterval = 10 * time.Second
	}
	if cfg.ClientSilence <= 0 {
		cfg.ClientSilence = max(5*cfg.PingInterval, time.Second)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 64 << 20
	}
	if cfg.MaxConns < 0 || cfg.MaxConnsPerHost < 0 || cfg.IdleTimeout < 0 || cfg.UnauthTimeout < 0 {
		return nil, fmt.Errorf("drove: node: negative connection bound or timeout (max conns %d, per host %d, idle timeout %v, unauthenticated timeout %v)",
			cfg.MaxConns, cfg.MaxConnsPerHost, cfg.IdleTimeout, cfg.UnauthTimeout)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultMaxConns()
	}
	if cfg.MaxConnsPerHost == 0 {
		cfg.MaxConnsPerHost = defaultMaxConnsPerHost
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.UnauthTimeout == 0 {
		cfg.UnauthTimeout = defaultUnauthTimeout
	}
	if cfg.MaxFileSize < 0 {
		return nil, fmt.Errorf("drove: node: negative maximum file size %d", cfg.MaxFileSize)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("drove: node: port %d out of range", cfg.Port)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("drove: node: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	n, err := newLocked(cfg, lock)
	if err != nil {
		lock.release()
		return nil, err
	}
	return n, nil
}

// newLocked is the rest of New, once cfg.Dir is the node's alone.
func newLocked(cfg Config, lock *dirLock) (*Node, error) {
	if cfg.Clean {
		// Only what the node itself puts there: --dest-path may be a
		// directory that holds other things too.
		for _, d := range []string{"blobs", "comp"} {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, d)); err != nil {
				return nil, fmt.Errorf("drove: node: cleaning %s: %w", cfg.Dir, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "comp"), 0o700); err != nil {
		return nil, fmt.Errorf("drove: node: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger,
		blobs:   blob.Store{Dir: cmp.Or(cfg.BlobDir, filepath.Join(cfg.Dir, "blobs"))},
		bootID:  hex.EncodeToString(b[:]),
		cpus:    local.Slots(cfg.CPUs, runtime.NumCPU()),
		comps:   map[string]*Computation{},
		clients: map[string]bool{},
		info:    newInfoSampler(cfg.Dir),
		lock:    lock,
	}
	n.met = newMetrics(n.unackedEvents, func() (int, int) {
		st := n.sched.Stats()
		return st.Pending, st.Running
	})
	if n.machines = cfg.Machines; n.machines == nil {
		n.machines = newThisMachine(n)
	}
	n.relay, _ = n.machines.(Relay)
	if mr, ok := n.machines.(MetricsRegisterer); ok {
		mr.RegisterMetrics(n.met.reg)
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Serve > 0 {
		n.serveEnd = make(chan struct{})
	}
	if cfg.Secret != "" {
		n.verify = nodeauth.NewVerifier(cfg.Secret, n.bootID)
		n.sessions = monitor.NewSessions(cfg.Secret, n.bootID)
	}
	n.rec = monitor.NewRecorder(0)
	n.mon = monitor.New(monitor.Config{Source: monSource{n}, Sessions: n.sessions})
	n.conns = newConnLimiter(&n.cfg, n.log, n.met)
	if cfg.State == nil {
		// With a state, Run takes up its computations (restoreState).
		n.restore()
	}
	if cfg.Conn != nil {
		n.oneLn = newOneConnListener(cfg.Conn)
		n.lns = []net.Listener{n.oneLn}
		n.srv = n.newServer()
		// The client keeps its Results stream open while it needs the
		// node; between computations the connection is idle and must stay.
		n.srv.IdleTimeout = -1
		return n, nil
	}
	if err := n.listen(); err != nil {
		return nil, err
	}
	port := n.Addr().(*net.TCPAddr).Port
	dcfg := discovery.NodeConfig{
		Secret: cfg.Secret, Name: cfg.Name, Host: cfg.ExtHost, Hosts: n.boundIPs(), Port: port, Multicast: cfg.Multicast, Logger: n.log,
	}
	if cfg.Discovery {
		d, err := discovery.Listen(context.Background(), dcfg)
		if err != nil {
			// Explicit addresses still work; say why discovery will not.
			n.log.Warn("discovery disabled: cannot bind its UDP port", "port", port, "err", err)
		} else {
			n.disc = d
		}
	}
	if len(cfg.SchedulerHosts) > 0 {
		if n.announcer = n.disc; n.announcer == nil {
			// Without discovery, a socket of its own on any port: the
			// announcements say which TCP port to use.
			dcfg.ListenAddr = ":0"
			d, err := discovery.Listen(context.Background(), dcfg)
			if err != nil {
				n.closeListeners()
				return nil, fmt.Errorf("drove: node: announcing to --scheduler-host: %w", err)
			}
			n.announcer = d
		}
	}
	n.srv = n.newServer()
	return n, nil
}

func (n *Node) listen() error {
	hosts := n.cfg.Hosts
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	port := n.cfg.Port
	for _, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			n.closeListeners()
			return fmt.Errorf("drove: node: %w", err)
		}
		// The bound address, not the flag: a host name that resolves to
		// 127.0.1.1 (Debian's /etc/hosts) is the usual way to get here.
		if ip := ln.Addr().(*net.TCPAddr).IP; ip.Equal(net.IPv4(127, 0, 1, 1)) {
			n.log.Warn("listening on 127.0.1.1, which other machines cannot reach: the host name resolves to it (Debian's /etc/hosts); pass --host with this machine's LAN address", "host", h, "addr", ln.Addr())
		}
		// With port 0, the other addresses share the first one's port, so
		// the node has one port as documented.
		port = ln.Addr().(*net.TCPAddr).Port
		n.lns = append(n.lns, n.conns.listener(ln))
	}
	return nil
}

func (n *Node) closeListeners() {
	for _, l := range n.lns {
		l.Close()
	}
}

// boundIPs returns the addresses the listeners are bound to, none for a
// node listening on every interface.
func (n *Node) boundIPs() []net.IP {
	var ips []net.IP
	for _, l := range n.lns {
		ip := l.Addr().(*net.TCPAddr).IP
		if ip.IsUnspecified() {
			return nil
		}
		ips = append(ips, ip)
	}
	return ips
}

// Addr returns the address of the first listener, with the bound port.
func (n *Node) Addr() net.Addr { return n.lns[0].Addr() }

// Dir returns the node's directory.
func (n *Node) Dir() string { return n.cfg.Dir }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// CPUs returns how many CPUs the node shares between computations.
func (n *Node) CPUs() int { return n.cpus }

func (n *Node) newServer() *http.Server {
	mux := http.NewServeMux()
	// Large messages only are compressed (if the client asks): small ones
	// cost more CPU to compress than they save on a LAN.
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(n.cfg.MaxMessage), connect.WithCompressMinBytes(64 << 10)}
	path, h := drovev1connect.NewNodeServiceHandler(&service{n: n}, opts...)
	mux.Handle(path, h)
	mux.HandleFunc("HEAD /blobs/{sum}", n.blobHead)
	mux.HandleFunc("GET /blobs/{sum}", n.blobGet)
	mux.HandleFunc("PUT /blobs/{sum}", n.blobPut)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", n.met.handler())
	// Everything else: the web monitor.
	mux.Handle("/", n.mon)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           n.authMiddleware(mux),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         n.cfg.TLS,
		Protocols:         &protos,
		// A client machine that dies silently, or a frozen client process,
		// leaves its TCP connection open for as long as TCP retries (or
		// for ever on a frozen process, whose kernel still ACKs). Pinging
		// a silent connection and dropping it when the ping goes
		// unanswered ends its Results stream, so the node counts the
		// client as away: its results spool to disk and the zombie
		// interval starts.
		HTTP2:    &http.HTTP2Config{SendPingTimeout: n.cfg.ClientSilence, PingTimeout: n.cfg.ClientSilence},
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),

		// Applies to HTTP/2 too, to connections without streams only. No
		// ReadTimeout or WriteTimeout: they would cut Results streams and
		// large blobs.
		IdleTimeout: n.cfg.IdleTimeout,
		// The connection's tracker (markAuthenticated) and its client's
		// user, looked up once (peerUID).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if n.oneLn != nil && c == net.Conn(n.oneLn.conn) {
				ctx = context.WithValue(ctx, trustedConnKey{}, true)
			}
			return connContext(withConn(ctx, c), c)
		},
	}
}

// errNotLoopback is what a remote client of a node that cannot
// authenticate it is told.
var errNotLoopback = errors.New("drove: this node has neither a cluster secret nor mutual TLS configured and serves loopback clients only, of its own user (start it with --secret, --tls-cert/--tls-key/--tls-ca or --insecure)")

// MutualTLS reports whether cfg authenticates clients by their TLS
// certificates: only then does TLS count as authentication. A server
// certificate alone encrypts the connection but lets anyone in.
func MutualTLS(cfg *tls.Config) bool {
	return cfg != nil && cfg.ClientAuth == tls.RequireAndVerifyClientCert && cfg.ClientCAs != nil
}

// Authenticates reports whether a node with cfg authenticates its clients
// (a cluster secret or mutual TLS). A node that does not serves only
// loopback clients of its own user, unless cfg.Insecure.
func (cfg *Config) Authenticates() bool { return cfg.Secret != "" || MutualTLS(cfg.TLS) }

// authMiddleware authenticates every request before any body is read.
func (n *Node) authMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// On every answer, refusals included: signed requests name it
		// (package nodeauth).
		w.Header().Set(nodeauth.NodeHeader, n.bootID)
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if trusted(r.Context()) {
			// Config.Conn: authenticated by SSH, which started the node.
			next.ServeHTTP(w, r)
			return
		}
		loop := isLoopback(r.RemoteAddr)
		mutual := MutualTLS(n.cfg.TLS)
		if mutual && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			// The handshake enforces this; a plain-text request on a TLS
			// server never gets here. Belt and braces.
			n.refuse(w, r, http.StatusUnauthorized, errors.New("drove: client certificate required"))
			return
		}
		if monitor.Public(r) {
			// The monitor's page and sign-in: no data, and the page
			// must load for a browser to sign in.
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case n.sessions != nil && n.sessions.Valid(r):
			// A browser signed in to the monitor with the secret.
		case n.verify != nil:
			if r.URL.Path == "/metrics" && loop {
				break
			}
			nonce, err := n.verify.Verify(r, time.Now())
			if err != nil {
				n.refuse(w, r, http.StatusUnauthorized, err)
				return
			}
			if err := n.checkBody(r); err != nil {
				code := http.StatusUnauthorized
				if errors.Is(err, nodeauth.ErrBodyTooLarge) {
					code = http.StatusRequestEntityTooLarge
				}
				n.refuse(w, r, code, err)
				return
			}
			w.Header().Set(nodeauth.ReplyHeader, nodeauth.Reply(n.cfg.Secret, nonce))
		case mutual, n.cfg.Insecure:
			// A verified client certificate, or an explicit --insecure.
			// TLS without client certificates is not on this list: it
			// proves nothing about the client.
		case loop && r.URL.Path == "/metrics":
			// Numbers only, as with a secret: any local scraper.
		case loop:
			if err := sameUser(r); err != nil {
				n.refuse(w, r, http.StatusForbidden, err)
				return
			}
		default:
			n.refuse(w, r, http.StatusForbidden, errNotLoopback)
			return
		}
		markAuthenticated(r.Context())
		next.ServeHTTP(w, r)
	})
}

// checkBody checks a signed request's body against its signed hash. A
// blob is named by the hash of its contents, which the blob store checks
// as it stores them: naming it is enough, and the node does not hold a
// large file in memory to hash it twice. Other bodies are control
// messages, bounded as connect bounds them.
func (n *Node) checkBody(r *http.Request) error {
	if r.Method == http.MethodPut && r.URL.Path == "/blobs/"+r.Header.Get(nodeauth.BodyHeader) {
		return nil
	}
	return nodeauth.CheckBody(r, int64(n.cfg.MaxMessage)+64<<10)
}

// sameUser refuses a loopback client of another user than the node's
// (see peeruid.go).
func sameUser(r *http.Request) error {
	uid, err := peerUID(r)
	if err != nil {
		return fmt.Errorf("drove: this node has neither a cluster secret nor mutual TLS and serves only its own user's clients on this machine, but cannot tell which user this client is (%w): start the node with --secret, --secret-file or $DROVE_SECRET and give the client the same secret", err)
	}
	if own := os.Getuid(); uid != own {
		return fmt.Errorf("drove: this node runs as %s and, without a cluster secret or mutual TLS, serves only that user's clients on this machine; you are %s: start the node with --secret, --secret-file or $DROVE_SECRET and give the client the same secret, or ask the node's owner", describeUID(own), describeUID(uid))
	}
	return nil
}

func (n *Node) refuse(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code != http.StatusRequestEntityTooLarge {
		n.met.authFailures.Inc()
	}
	n.log.Warn("request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
	// Connect clients read errors from this JSON shape; others see the text.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	cerr := connect.NewError(connect.CodeUnauthenticated, err)
	switch code {
	case http.StatusForbidden:
		cerr = connect.NewError(connect.CodePermissionDenied, err)
	case http.StatusRequestEntityTooLarge:
		cerr = connect.NewError(connect.CodeResourceExhausted, err)
	}
	fmt.Fprintf(w, `{"code":%q,"message":%q}`, cerr.Code().String(), err.Error())
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run serves until ctx is done (or Config.Serve clients have been
// served), then stops taking requests, closes every computation and waits
// for it within Config.ShutdownTimeout. A clean stop returns nil.
func (n *Node) Run(ctx context.Context) error {
	defer n.lock.release()
	n.sched = sched.New(sched.Config{Policy: n.cfg.Policy, OnTask: n.onTask, Logger: n.log, Observer: n.met.jobs})
	n.met.jobs.Bind(n.sched)
	defer n.sched.WatchNodes(func(sched.NodeEvent) { n.rec.Notify() })()
	if err := n.machines.Start(ctx, n.sched); err != nil {
		return fmt.Errorf("drove: node: %w", err)
	}
	if n.cfg.State != nil {
		n.restoreState(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	// Serving the requested number of computations ends Run too.
	gctx, stop := context.WithCancel(gctx)
	defer stop()
	for _, ln := range n.lns {
		g.Go(func() error {
			var err error
			if n.cfg.TLS != nil {
				err = n.srv.ServeTLS(ln, "", "")
			} else {
				err = n.srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			if ln == net.Listener(n.oneLn) && errors.Is(err, net.ErrClosed) {
				// The one connection ended: the client went away.
				n.log.Info("connection ended; stopping")
				stop()
				return nil
			}
			return fmt.Errorf("drove: node: serving %s: %w", ln.Addr(), err)
		})
	}
	g.Go(func() error { n.reapZombies(gctx); return nil })
	g.Go(func() error { n.conns.reap(gctx); return nil })
	if n.disc != nil {
		g.Go(func() error { return n.disc.Serve(gctx) })
		targets := n.cfg.AnnounceTo
		if targets == nil {
			targets = discovery.Targets(discovery.ClientPort, n.cfg.Multicast)
			if len(targets) == 1 && !n.cfg.Multicast {
				// Only 255.255.255.255: no interface that is up has a
				// broadcast address (dispy #98/#117).
				n.log.Warn("no network interface with a broadcast address is up: clients on other machines cannot discover this node; they can still list it by address")
			}
		}
		n.disc.Announce(targets)
	}
	if n.announcer != nil {
		g.Go(func() error { n.announceToSchedulers(gctx); return nil })
	}
	n.log.Info("node serving", "name", n.cfg.Name, "addr", n.Addr().String(), "cpus", n.machines.Slots(0), "policy", n.cfg.Policy.String(), "dir", n.cfg.Dir)
	if n.cfg.OnListen != nil {
		n.cfg.OnListen()
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-n.serveEnd: // nil without Serve: blocks forever
			n.log.Info("served the requested number of clients; exiting", "serve", n.cfg.Serve)
		}
		defer stop()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout)
		defer cancel()
		n.stopping.Store(true)
		n.closeAll(sctx)
		n.machines.Stop()
		if err := n.sched.Close(sctx); err != nil {
			n.log.Warn("closing the scheduler", "err", err)
		}
		// The computations are closed, so what is left are answers in
		// flight and idle HTTP/2 connections, which Shutdown would wait
		// on until its deadline: give the answers a moment, then cut.
		hctx, hcancel := context.WithTimeout(sctx, 200*time.Millisecond)
		defer hcancel()
		err := n.srv.Shutdown(hctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = n.srv.Close()
		}
		return err
	})
	return g.Wait()
}

// announceToSchedulers tells SchedulerHosts the node is up, now and every
// AnnounceInterval, until ctx ends. Names are resolved each time, so a
// client host that was not resolvable at start is reached later.
func (n *Node) announceToSchedulers(ctx context.Context) {
	if n.announcer != n.disc {
		defer n.announcer.Close()
	}
	t := time.NewTicker(n.cfg.AnnounceInterval)
	defer t.Stop()
	for {
		var targets []*net.UDPAddr
		for _, h := range n.cfg.SchedulerHosts {
			hp := h
			if _, _, err := net.SplitHostPort(h); err != nil {
				hp = net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(discovery.ClientPort))
			}
			a, err := net.ResolveUDPAddr("udp4", hp)
			if err != nil {
				n.log.Warn("cannot announce to scheduler host", "scheduler_host", h, "err", err)
				continue
			}
			targets = append(targets, a)
		}
		n.announcer.Announce(targets)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unackedEvents counts the events of all computations that their clients
// have not acknowledged.
func (n *Node) unackedEvents() float64 {
	n.mu.Lock()
	comps := make([]*Computation, 0, len(n.comps))
	for _, c := range n.comps {
		comps = append(comps, c)
	}
	n.mu.Unlock()
	var sum uint64
	for _, c := range comps {
		sum += c.out.unacked()
	}
	return float64(sum)
}

// closeAll closes every computation, stopping their jobs.
func (n *Node) closeAll(ctx context.Context) {
	n.mu.Lock()
	comps := make([]*Computation, 0, len(n.comps))
	for _, c := range n.comps {
		comps = append(comps, c)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Go(func() { c.close(ctx, true, whyNodeStopping) })
	}
	wg.Wait()
}

// reapZombies closes computations whose client has been away too long.
func (n *Node) reapZombies(ctx context.Context) {
	tick := max(n.cfg.ZombieInterval/4, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		n.mu.Lock()
		var zombies []*Computation
		for _, c := range n.comps {
			if c.zombie(now, n.cfg.ZombieInterval) {
				zombies = append(zombies, c)
			}
		}
		n.mu.Unlock()
		for _, c := range zombies {
			n.log.Info("closing zombie computation: its client has been away too long", "computation", c.id, "client", c.clientID, "zombie_interval", n.cfg.ZombieInterval)
			c.close(ctx, true, "zombie")
		}
	}
}
