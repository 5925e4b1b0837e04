package monitor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// CSRFHeader is the header an action must carry the page's token in. A
// cross-site page can neither read the token (the API sends no CORS
// headers) nor send a custom header without a preflight the monitor never
// grants.
const CSRFHeader = "X-Drove-CSRF"

// Config configures a Handler.
type Config struct {
	// Source is what the monitor shows. Required.
	Source Source
	// ReadOnly hides and refuses the Source's actions.
	ReadOnly bool
	// Sessions, if set, serves /login and /logout for browsers that sign
	// in with the cluster secret; who mounts the handler checks the
	// session cookie (Sessions.Valid) as part of its authentication.
	Sessions *Sessions
	// Refresh is how often the event stream sends a snapshot even
	// without changes (running jobs' times, free memory); default 2s.
	Refresh time.Duration
	// MinInterval is the least time between two snapshots on the event
	// stream, however many changes: default 250ms.
	MinInterval time.Duration
}

// Handler serves the monitor: the page at /, its files under /static/,
// and the API under /api/. Create it with New.
type Handler struct {
	cfg  Config
	mux  *http.ServeMux
	csrf string
}

// New returns the monitor's handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 2 * time.Second
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 250 * time.Millisecond
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), csrf: hex.EncodeToString(b[:])}
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w)
		http.ServeFileFS(w, r, sub, "index.html")
	})
	h.mux.Handle("GET /static/", http.StripPrefix("/static", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w)
		files.ServeHTTP(w, r)
	})))
	h.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // no icon; asked for by every browser
	})
	h.mux.HandleFunc("GET /api/status", h.status)
	h.mux.HandleFunc("GET /api/jobs/{id}", h.job)
	h.mux.HandleFunc("GET /api/events", h.events)
	h.mux.HandleFunc("POST /api/action", h.action)
	if cfg.Sessions != nil {
		h.mux.HandleFunc("POST /login", cfg.Sessions.login)
		h.mux.HandleFunc("POST /logout", cfg.Sessions.logout)
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Public reports whether r asks for what anybody may have without
// authentication: the page and its files (no data: the page reads the
// API) and the sign-in. Who mounts the handler serves these without
// authenticating, so a browser gets the sign-in form.
func Public(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet && (r.URL.Path == "/" || r.URL.Path == "/favicon.ico" || strings.HasPrefix(r.URL.Path, "/static/")):
		return true
	case r.Method == http.MethodPost && (r.URL.Path == "/login" || r.URL.Path == "/logout"):
		return true
	}
	return false
}

func setPageHeaders(w http.ResponseWriter) {
	// Nothing from elsewhere, no framing by other sites (clickjacking the
	// action buttons).
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

// query parses the page of jobs a request asks for.
func query(v url.Values) Query {
	q := Query{Status: v.Get("status")}
	q.Offset, _ = strconv.Atoi(v.Get("offset"))
	q.Limit, _ = strconv.Atoi(v.Get("limit"))
	return q
}

// snapshot is the Source's snapshot with what the handler adds.
func (h *Handler) snapshot(ctx context.Context, q Query) (Status, error) {
	st, err := h.cfg.Source.Snapshot(ctx, q)
	if err != nil {
		return st, err
	}
	st.Actions = h.actions()
	if len(st.Actions) > 0 {
		st.CSRF = h.csrf
	}
	if st.Nodes == nil {
		st.Nodes = []Node{}
	}
	if st.Computations == nil {
		st.Computations = []Computation{}
	}
	if st.Jobs == nil {
		st.Jobs = []Job{}
	}
	return st, nil
}

func (h *Handler) actions() []string {
	if h.cfg.ReadOnly {
		return []string{}
	}
	a, ok := h.cfg.Source.(Actions)
	if !ok {
		return []string{}
	}
	return slices.Clone(a.Supported())
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.snapshot(r.Context(), query(r.URL.Query()))
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, st)
}

func (h *Handler) job(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("drove: monitor: bad job id %q", r.PathValue("id")))
		return
	}
	d, err := h.cfg.Source.Job(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		httpError(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, d)
}

// events streams snapshots as server-sent events ("status"), one after
// each change (at most one per MinInterval) and one per Refresh.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, errors.New("drove: monitor: streaming unsupported"))
		return
	}
	ctx := r.Context()
	q := query(r.URL.Query())
	changed := h.cfg.Source.Subscribe(ctx)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(h.cfg.Refresh)
	defer tick.Stop()
	for {
		st, err := h.snapshot(ctx, q)
		if err != nil {
			return
		}
		b, err := json.Marshal(st)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return
		}
		fl.Flush()
		// Coalesce bursts: a thousand jobs ending at once make one
		// snapshot, not a thousand.
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.cfg.MinInterval):
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// maxActionBody bounds an action's body.
const maxActionBody = 4 << 10

func (h *Handler) action(w http.ResponseWriter, r *http.Request) {
	if err := h.checkCSRF(r); err != nil {
		httpError(w, http.StatusForbidden, err)
		return
	}
	var a Action
	body, err := io.ReadAll(io.LimitReader(r.Body, maxActionBody+1))
	if err == nil && len(body) > maxActionBody {
		err = errors.New("body too large")
	}
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("drove: monitor: bad action: %w", err))
		return
	}
	acts, ok := h.cfg.Source.(Actions)
	if h.cfg.ReadOnly || !ok || !slices.Contains(acts.Supported(), a.Kind) {
		httpError(w, http.StatusForbidden, fmt.Errorf("%w: %q (this monitor is read-only or does not offer it)", ErrUnsupported, a.Kind))
		return
	}
	err = acts.Do(r.Context(), a)
	switch {
	case errors.Is(err, ErrNotFound):
		httpError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrUnsupported):
		httpError(w, http.StatusForbidden, err)
	case err != nil:
		httpError(w, http.StatusBadRequest, err)
	default:
		writeJSON(w, map[string]bool{"ok": true})
	}
}

// checkCSRF refuses an action that is not the page's own: without the
// token in CSRFHeader, as JSON, or from another origin.
func (h *Handler) checkCSRF(r *http.Request) error {
	if got := r.Header.Get(CSRFHeader); subtle.ConstantTimeCompare([]byte(got), []byte(h.csrf)) != 1 {
		return fmt.Errorf("drove: monitor: action refused: missing or wrong %s token (reload the page)", CSRFHeader)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return errors.New("drove: monitor: action refused: not application/json")
	}
	return sameOrigin(r)
}

// sameOrigin refuses a request whose Origin (sent by browsers on every
// POST) is another site than the one it was sent to.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil // not a browser's cross-site request
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != r.Host {
		return fmt.Errorf("drove: monitor: request from another origin (%s) refused", o)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// httpError answers as the daemon's authentication does: a JSON object
// with a message.
func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": http.StatusText(code), "message": err.Error()})
}
