// Package nodeauth authenticates requests between drove clients and drove
// node daemons with a shared cluster secret, HMAC-style: every request
// carries a timestamp, a random nonce and an HMAC-SHA256 over them, the
// method, the path, the SHA-256 of the body and the id of the node it is
// meant for, so the secret never crosses the wire and a captured request
// can neither be replayed (on this node or on another node of the cluster)
// nor be sent with another body. The node answers with an HMAC of the
// nonce, so a client also knows it speaks to a node of its own cluster.
//
// The node id is a challenge the node hands out: a random value per node
// process, sent in [NodeHeader] on every answer. Binding the signature to
// it rather than to the address the client dialled works through NAT and
// host aliases and with several nodes on one host, and makes a captured
// request useless once the node restarts (its nonce memory is gone then).
//
// Answers' bodies are not covered: integrity of what a node sends back on
// an untrusted network is what mutual TLS is for (see package doc of
// internal/node).
package nodeauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names.
const (
	// Header carries the request's signature.
	Header = "Drove-Auth"
	// ReplyHeader carries the node's proof that it knows the secret.
	ReplyHeader = "Drove-Auth-Reply"
	// NodeHeader carries the node's id on every answer, signed requests
	// must name it.
	NodeHeader = "Drove-Node"
	// BodyHeader carries the hex SHA-256 of the request's body.
	BodyHeader = "Drove-Content-Sha256"
)

// version starts the signature header and the signed message; a request
// of an older client is told so instead of failing its MAC check.
const version = "v2"

// Window is how far a request's timestamp may be from the node's clock.
const Window = 2 * time.Minute

// ErrUnauthenticated is wrapped by every verification failure.
var ErrUnauthenticated = errors.New("drove: request not authenticated")

// ErrBodyTooLarge is returned by CheckBody for a body over its limit.
var ErrBodyTooLarge = errors.New("drove: request body too large")

// emptySum is the SHA-256 of no bytes.
var emptySum = sha256Hex(nil)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mac(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// target is the signed part of the URL: the node serves by path, but a
// query, should one ever matter, is covered too.
func target(r *http.Request) string {
	if r.URL.RawQuery != "" {
		return r.URL.Path + "?" + r.URL.RawQuery
	}
	return r.URL.Path
}

func message(method, target, nodeID, bodySum, ts, nonce string) string {
	return "drove-" + version + "\n" + method + "\n" + target + "\n" + nodeID + "\n" + bodySum + "\n" + ts + "\n" + nonce
}

// isHex reports whether s is n lower-case hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validNodeID bounds what a node id may be: what the header carries is
// compared, never interpreted.
func validNodeID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// bufferBody reads r's body into memory, so it can be hashed and sent
// again, and sets BodyHeader. Only small bodies (control messages) come
// here: blob uploads set BodyHeader themselves.
func bufferBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		r.Header.Set(BodyHeader, emptySum)
		return nil
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return fmt.Errorf("drove: reading request body to sign it: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	r.Header.Set(BodyHeader, sha256Hex(b))
	return nil
}

// Sign adds the authentication header to r, for the node whose id is
// nodeID, and returns the nonce, with which [CheckReply] verifies the
// node's answer. The body is covered by the hash in r's BodyHeader; if r
// has none, Sign reads the body to compute it (replacing r.Body with what
// it read).
func Sign(r *http.Request, secret, nodeID string, now time.Time) (nonce string, err error) {
	if r.Header.Get(BodyHeader) == "" {
		if err := bufferBody(r); err != nil {
			return "", err
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce = hex.EncodeToString(b[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	sum := mac(secret, message(r.Method, target(r), nodeID, r.Header.Get(BodyHeader), ts, nonce))
	r.Header.Set(Header, version+"."+ts+"."+nonce+"."+nodeID+"."+sum)
	return nonce, nil
}

// Reply returns the value of the node's reply header for nonce.
func Reply(secret, nonce string) string { return mac(secret, "drove-"+version+"-reply\n"+nonce) }

// CheckReply verifies the node's reply header for nonce.
func CheckReply(h http.Header, secret, nonce string) error {
	got := h.Get(ReplyHeader)
	if got == "" || !hmac.Equal([]byte(got), []byte(Reply(secret, nonce))) {
		return fmt.Errorf("%w: the node does not know the cluster secret", ErrUnauthenticated)
	}
	return nil
}

// Verifier checks signed requests for one node and remembers their nonces
// for as long as their timestamps are acceptable. It is safe for
// concurrent use.
type Verifier struct {
	secret string
	nodeID string

	mu     sync.Mutex
	seen   map[string]time.Time // nonce: when its timestamp goes stale
	pruned time.Time
}

// NewVerifier returns a Verifier for secret, which must not be empty, on
// the node whose id is nodeID (sent to clients in NodeHeader).
func NewVerifier(secret, nodeID string) *Verifier {
	return &Verifier{secret: secret, nodeID: nodeID, seen: map[string]time.Time{}}
}

// Verify checks r's authentication header and returns its nonce. The body
// is not read: the header vouches for r's BodyHeader, and [CheckBody] (or,
// for content-addressed data, the caller) checks the body against it.
func (v *Verifier) Verify(r *http.Request, now time.Time) (nonce string, err error) {
	h := r.Header.Get(Header)
	if h == "" {
		return "", fmt.Errorf("%w: no %s header (is the client configured with the cluster secret?)", ErrUnauthenticated, Header)
	}
	parts := strings.Split(h, ".")
	if len(parts) == 3 {
		return "", fmt.Errorf("%w: signed by an older drove client (drove-v1 signatures): upgrade the client to the node's version", ErrUnauthenticated)
	}
	if len(parts) != 5 || parts[0] != version {
		return "", fmt.Errorf("%w: malformed %s header", ErrUnauthenticated, Header)
	}
	ts, nonce, nodeID, sum := parts[1], parts[2], parts[3], parts[4]
	if !isHex(nonce, 32) || !isHex(sum, 64) || !validNodeID(nodeID) {
		return "", fmt.Errorf("%w: malformed %s header", ErrUnauthenticated, Header)
	}
	bodySum := r.Header.Get(BodyHeader)
	if !isHex(bodySum, 64) {
		return "", fmt.Errorf("%w: missing or malformed %s header", ErrUnauthenticated, BodyHeader)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed timestamp", ErrUnauthenticated)
	}
	t := time.Unix(sec, 0)
	if d := now.Sub(t); d > Window || d < -Window {
		return "", fmt.Errorf("%w: timestamp %v off by %v (are the clocks synchronised?)", ErrUnauthenticated, t.UTC(), d)
	}
	if !hmac.Equal([]byte(sum), []byte(mac(v.secret, message(r.Method, target(r), nodeID, bodySum, ts, nonce)))) {
		return "", fmt.Errorf("%w: wrong secret", ErrUnauthenticated)
	}
	// After the MAC: only a holder of the secret learns that the id was
	// wrong, which is the client that must learn the node's id again.
	if nodeID != v.nodeID {
		return "", fmt.Errorf("%w: signed for node %s, this is node %s (a request meant for another node, or for this node before it restarted)", ErrUnauthenticated, nodeID, v.nodeID)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.seen[nonce]; dup {
		return "", fmt.Errorf("%w: replayed request", ErrUnauthenticated)
	}
	// The timestamp is acceptable until t+Window: the nonce must be
	// remembered until then, however far ahead of the node's clock t was.
	v.seen[nonce] = t.Add(Window)
	if now.Sub(v.pruned) > Window {
		for k, stale := range v.seen {
			if now.After(stale) {
				delete(v.seen, k)
			}
		}
		v.pruned = now
	}
	return nonce, nil
}

// CheckBody reads r's body, at most limit bytes of it, checks that it
// hashes to r's BodyHeader (which [Verifier.Verify] checked the signature
// of) and puts what it read back as r.Body. A body over limit fails with
// ErrBodyTooLarge.
func CheckBody(r *http.Request, limit int64) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("drove: reading request body: %w", err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("%w: over %d bytes", ErrBodyTooLarge, limit)
	}
	if !hmac.Equal([]byte(sha256Hex(b)), []byte(r.Header.Get(BodyHeader))) {
		return fmt.Errorf("%w: the body does not match its signed hash (altered on the way?)", ErrUnauthenticated)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// Transport signs every request it sends with Secret, for the node it
// goes to, and checks that every answer comes from a node that knows the
// secret. It learns each node's id (NodeHeader) from the node's /healthz
// before the first request and again when the node answers with another
// one (it restarted). The zero value is not usable: set Secret and Base.
type Transport struct {
	Secret string
	Base   http.RoundTripper

	mu  sync.Mutex
	ids map[string]string // node id by scheme://host
}

func nodeKey(r *http.Request) string { return r.URL.Scheme + "://" + r.URL.Host }

func (t *Transport) cachedID(key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ids[key]
}

func (t *Transport) setID(key, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids == nil {
		t.ids = map[string]string{}
	}
	t.ids[key] = id
}

// nodeID returns the id of the node r goes to, asking its /healthz (which
// needs no signature) if it is not known yet.
func (t *Transport) nodeID(r *http.Request) (string, error) {
	key := nodeKey(r)
	if id := t.cachedID(key); id != "" {
		return id, nil
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, key+"/healthz", nil)
	if err != nil {
		return "", err
	}
	resp, err := t.Base.RoundTrip(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	id := resp.Header.Get(NodeHeader)
	if resp.StatusCode != http.StatusOK || !validNodeID(id) {
		return "", fmt.Errorf("%w: %s/healthz answered %s without a valid %s header: not a drove node, or one older than this client (upgrade them together)", ErrUnauthenticated, key, resp.Status, NodeHeader)
	}
	t.setID(key, id)
	return id, nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.Header.Get(BodyHeader) == "" {
		if err := bufferBody(r); err != nil {
			return nil, err
		}
	}
	id, err := t.nodeID(r)
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	nonce, err := Sign(r, t.Secret, id, time.Now())
	if err != nil {
		return nil, err
	}
	resp, err := t.Base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if newID := resp.Header.Get(NodeHeader); validNodeID(newID) && newID != id {
			// The node restarted (or another took its address): sign for
			// it again, if the body can be sent again.
			t.setID(nodeKey(r), newID)
			resp.Body.Close()
			body, ok := rewind(r)
			if !ok {
				// Not ErrUnauthenticated: sent again, it will pass.
				return nil, fmt.Errorf("drove: node %s restarted while this request was on its way: send it again", nodeKey(r))
			}
			r.Body = body
			if nonce, err = Sign(r, t.Secret, newID, time.Now()); err != nil {
				return nil, err
			}
			if resp, err = t.Base.RoundTrip(r); err != nil {
				return nil, err
			}
		}
	}
	if err := CheckReply(resp.Header, t.Secret, nonce); err != nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("%w: the node refused the request: %s", ErrUnauthenticated, refusal(resp.Body))
		}
		return nil, err
	}
	return resp, nil
}

// refusal returns why the node refused a request, from the connect error
// it answers with.
func refusal(body io.Reader) string {
	var e struct{ Message string }
	b, _ := io.ReadAll(io.LimitReader(body, 4096))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		return "wrong or missing cluster secret"
	}
	return strings.TrimPrefix(e.Message, ErrUnauthenticated.Error()+": ")
}

// rewind returns r's body anew for sending r again.
func rewind(r *http.Request) (io.ReadCloser, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return r.Body, true
	}
	if r.GetBody == nil {
		return nil, false
	}
	b, err := r.GetBody()
	return b, err == nil
}
