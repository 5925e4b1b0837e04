// Package nodeauth authenticates requests between drove clients and drove
// node daemons with a shared cluster secret, HMAC-style: every request
// carries a timestamp, a random nonce and an HMAC-SHA256 over them, the
// method and the path, so the secret never crosses the wire and a captured
// request cannot be replayed. The node answers with an HMAC of the nonce, so
// a client also knows it speaks to a node of its own cluster.
//
// Request bodies are not covered: blobs are checked against their content
// hash, and integrity of the control messages on an untrusted network is
// what mutual TLS is for (see package doc of internal/node).
package nodeauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names.
const (
	Header      = "Drove-Auth"
	ReplyHeader = "Drove-Auth-Reply"
)

// Window is how far a request's timestamp may be from the node's clock.
const Window = 2 * time.Minute

// ErrUnauthenticated is wrapped by every verification failure.
var ErrUnauthenticated = errors.New("drove: request not authenticated")

func mac(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func message(method, path, ts, nonce string) string {
	return "drove-v1\n" + method + "\n" + path + "\n" + ts + "\n" + nonce
}

// Sign adds the authentication header to r and returns the nonce, with
// which [CheckReply] verifies the node's answer.
func Sign(r *http.Request, secret string, now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(Header, ts+"."+nonce+"."+mac(secret, message(r.Method, r.URL.Path, ts, nonce)))
	return nonce
}

// Reply returns the value of the node's reply header for nonce.
func Reply(secret, nonce string) string { return mac(secret, "drove-v1-reply\n"+nonce) }

// CheckReply verifies the node's reply header for nonce.
func CheckReply(h http.Header, secret, nonce string) error {
	got := h.Get(ReplyHeader)
	if got == "" || !hmac.Equal([]byte(got), []byte(Reply(secret, nonce))) {
		return fmt.Errorf("%w: the node does not know the cluster secret", ErrUnauthenticated)
	}
	return nil
}

// Verifier checks signed requests and remembers recent nonces. It is safe
// for concurrent use.
type Verifier struct {
	secret string

	mu     sync.Mutex
	seen   map[string]time.Time
	pruned time.Time
}

// NewVerifier returns a Verifier for secret, which must not be empty.
func NewVerifier(secret string) *Verifier {
	return &Verifier{secret: secret, seen: map[string]time.Time{}}
}

// Verify checks r's authentication header and returns its nonce.
func (v *Verifier) Verify(r *http.Request, now time.Time) (nonce string, err error) {
	h := r.Header.Get(Header)
	if h == "" {
		return "", fmt.Errorf("%w: no %s header (is the client configured with the cluster secret?)", ErrUnauthenticated, Header)
	}
	ts, rest, ok1 := strings.Cut(h, ".")
	nonce, sum, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(nonce) != 32 || len(sum) != 64 {
		return "", fmt.Errorf("%w: malformed %s header", ErrUnauthenticated, Header)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed timestamp", ErrUnauthenticated)
	}
	t := time.Unix(sec, 0)
	if d := now.Sub(t); d > Window || d < -Window {
		return "", fmt.Errorf("%w: timestamp %v off by %v (are the clocks synchronised?)", ErrUnauthenticated, t.UTC(), d)
	}
	if !hmac.Equal([]byte(sum), []byte(mac(v.secret, message(r.Method, r.URL.Path, ts, nonce)))) {
		return "", fmt.Errorf("%w: wrong secret", ErrUnauthenticated)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.seen[nonce]; dup {
		return "", fmt.Errorf("%w: replayed request", ErrUnauthenticated)
	}
	v.seen[nonce] = t
	if now.Sub(v.pruned) > Window {
		for k, at := range v.seen {
			if now.Sub(at) > 2*Window {
				delete(v.seen, k)
			}
		}
		v.pruned = now
	}
	return nonce, nil
}

// Transport signs every request it sends with Secret and checks that every
// answer comes from a node that knows it.
type Transport struct {
	Secret string
	Base   http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	nonce := Sign(r, t.Secret, time.Now())
	resp, err := t.Base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if err := CheckReply(resp.Header, t.Secret, nonce); err != nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("%w: the node refused the request (wrong or missing cluster secret)", ErrUnauthenticated)
		}
		return nil, err
	}
	return resp, nil
}
