package monitor

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "drove_session"

// DefaultSessionTTL is how long a browser stays signed in.
const DefaultSessionTTL = 12 * time.Hour

// Sessions lets a browser use a monitor whose API needs the cluster
// secret: the user types the secret into the page's sign-in form once
// (POST /login) and gets a cookie signed with a key derived from the
// secret and the daemon's boot id, valid for TTL; the daemon counts a
// request with a valid cookie as authenticated (Valid). The secret itself
// is never stored in the browser. The cookie is HttpOnly and
// SameSite=Strict, so other sites' pages never send it; signing out drops
// it, and restarting the daemon ends every session.
type Sessions struct {
	secret string
	key    []byte
	// TTL is how long a session lasts; DefaultSessionTTL if zero.
	TTL time.Duration
	now func() time.Time
}

// NewSessions returns sessions for a daemon (or client) with secret; salt
// (its boot id) ties them to this run of it.
func NewSessions(secret, salt string) *Sessions {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("drove-monitor-session-key\n" + salt))
	return &Sessions{secret: secret, key: m.Sum(nil), now: time.Now}
}

func (s *Sessions) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultSessionTTL
}

func (s *Sessions) sign(exp string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("drove-monitor-session\n" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// Valid reports whether r carries a valid, unexpired session cookie.
func (s *Sessions) Valid(r *http.Request) bool {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false
	}
	exp, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return false
	}
	if !hmac.Equal([]byte(sig), []byte(s.sign(exp))) {
		return false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && s.now().Unix() < t
}

// login checks the secret posted by the sign-in form and sets the
// session cookie. The form posts from the page itself: another origin is
// refused, so no site can sign a visitor in to a session of its choosing.
func (s *Sessions) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		httpError(w, http.StatusForbidden, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	got := r.PostFormValue("secret")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.secret)) != 1 {
		// Slow down guessing; the daemon's connection limits bound the rest.
		time.Sleep(500 * time.Millisecond)
		httpError(w, http.StatusUnauthorized, errWrongSecret)
		return
	}
	exp := strconv.FormatInt(s.now().Add(s.ttl()).Unix(), 10)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: exp + "." + s.sign(exp), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(s.ttl().Seconds()),
	})
	writeJSON(w, map[string]bool{"ok": true})
}

func (s *Sessions) logout(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		httpError(w, http.StatusForbidden, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, map[string]bool{"ok": true})
}

var errWrongSecret = sessionError("drove: monitor: wrong secret")

type sessionError string

func (e sessionError) Error() string { return string(e) }
