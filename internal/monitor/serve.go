package monitor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server serves a monitor on an address of its own: a client's
// (drove.WithMonitor), whose process has no daemon port to share.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// ServerConfig configures Listen.
type ServerConfig struct {
	// Addr is where to listen ("host:port"). Without Secret it must be a
	// loopback address: the monitor then serves anybody on this machine
	// (as a browser cannot prove which user it runs as).
	Addr string
	// Secret, if set, lets browsers in only once signed in with it
	// (Sessions), on any address.
	Secret string
	// Monitor is the monitor's configuration; its Sessions is set by
	// Listen.
	Monitor Config
	// Extra handlers served beside the monitor, behind the same
	// authentication (such as /metrics).
	Extra map[string]http.Handler
	// Logger receives the server's errors; nil discards them.
	Logger *slog.Logger
}

// ErrNotLoopback is returned by Listen for an address other machines can
// reach without a secret to guard it.
var ErrNotLoopback = errors.New("drove: monitor: serving on an address other machines can reach needs the cluster secret (WithSecret or $DROVE_SECRET), which browsers sign in with; or use a loopback address such as 127.0.0.1:8181")

// Listen binds cfg.Addr and serves the monitor there until Close.
func Listen(cfg ServerConfig) (*Server, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("drove: monitor: address %q: %w", cfg.Addr, err)
	}
	if cfg.Secret == "" && !loopbackHost(host) {
		return nil, fmt.Errorf("%w (not %s)", ErrNotLoopback, cfg.Addr)
	}
	var sessions *Sessions
	if cfg.Secret != "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		sessions = NewSessions(cfg.Secret, hex.EncodeToString(b[:]))
		cfg.Monitor.Sessions = sessions
	}
	mux := http.NewServeMux()
	for p, h := range cfg.Extra {
		mux.Handle(p, h)
	}
	mux.Handle("/", New(cfg.Monitor))
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("drove: monitor: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           guard(mux, sessions),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guard lets in, with sessions, only signed-in browsers (and anybody to
// the page and the sign-in); without, only clients on this machine.
func guard(next http.Handler, sessions *Sessions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sessions != nil {
			if !Public(r) && !sessions.Valid(r) {
				httpError(w, http.StatusUnauthorized, errors.New("drove: monitor: sign in with the cluster secret"))
				return
			}
		} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !loopbackHost(host) {
			httpError(w, http.StatusForbidden, errors.New("drove: monitor: serves this machine only"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: open event streams end at once.
func (s *Server) Close() error {
	err := s.srv.Close()
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
