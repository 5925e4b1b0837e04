package nodeauth

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newReq(t testing.TB, method, path, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sign(t testing.TB, r *http.Request, secret, nodeID string, now time.Time) string {
	t.Helper()
	nonce, err := Sign(r, secret, nodeID, now)
	if err != nil {
		t.Fatal(err)
	}
	return nonce
}

// TestSignVerify checks what a signature binds: secret, method, path,
// node, body hash and time, and that a nonce is good once.
func TestSignVerify(t *testing.T) {
	now := time.Now()
	good := newReq(t, http.MethodPost, "/a", "body")
	sign(t, good, "s", "node1", now)
	// moved copies good's signature headers onto another request.
	moved := func(method, path string) *http.Request {
		r := newReq(t, method, path, "body")
		r.Header = good.Header.Clone()
		return r
	}
	otherBody := moved(http.MethodPost, "/a")
	otherBody.Header.Set(BodyHeader, sha256Hex([]byte("other")))
	v1 := newReq(t, http.MethodPost, "/a", "body")
	v1.Header = good.Header.Clone()
	v1.Header.Set(Header, strings.Join(strings.Split(good.Header.Get(Header), ".")[1:3], ".")+"."+strings.Repeat("0", 64))
	// One verifier per node: "replayed" follows "good" on node1.
	verifiers := map[string]*Verifier{"node1": NewVerifier("s", "node1"), "node2": NewVerifier("s", "node2")}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		node   string
		now    time.Time
		errHas string // "" accepts
	}{
		{"another node", moved(http.MethodPost, "/a"), "node2", now, "signed for node node1"},
		{"another path", moved(http.MethodPost, "/b"), "node1", now, "wrong secret"},
		{"another method", moved(http.MethodPut, "/a"), "node1", now, "wrong secret"},
		{"another body hash", otherBody, "node1", now, "wrong secret"},
		{"too late", moved(http.MethodPost, "/a"), "node1", now.Add(Window + time.Second), "off by"},
		{"too early", moved(http.MethodPost, "/a"), "node1", now.Add(-Window - time.Second), "off by"},
		{"older client", v1, "node1", now, "older drove client"},
		{"good", good, "node1", now, ""},
		{"replayed", moved(http.MethodPost, "/a"), "node1", now, "replayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifiers[tc.node].Verify(tc.r, tc.now)
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.errHas != "" && (!errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("got %v, want an ErrUnauthenticated saying %q", err, tc.errHas)
			}
		})
	}
	wrong := newReq(t, http.MethodPost, "/a", "body")
	sign(t, wrong, "wrong", "node1", now)
	if _, err := NewVerifier("s", "node1").Verify(wrong, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong secret accepted: %v", err)
	}
}

// TestCheckBody checks the body against the signed hash, within a limit,
// and leaves it readable for the handler.
func TestCheckBody(t *testing.T) {
	for _, tc := range []struct {
		name, signed, sent string
		limit              int64
		want               error
	}{
		{"same", "hello", "hello", 5, nil},
		{"empty", "", "", 0, nil},
		{"altered", "hello", "hellO", 5, ErrUnauthenticated},
		{"longer", "hello", "hello!", 10, ErrUnauthenticated},
		{"over the limit", "hello", "hello", 4, ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq(t, http.MethodPost, "/a", tc.signed)
			sign(t, r, "s", "n", time.Now())
			r.Body = http.NoBody
			if tc.sent != "" {
				r.Body = newReq(t, http.MethodPost, "/a", tc.sent).Body
			}
			err := CheckBody(r, tc.limit)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil {
				var b bytes.Buffer
				_, _ = b.ReadFrom(r.Body)
				if b.String() != tc.sent {
					t.Errorf("handler reads %q, want %q", b.String(), tc.sent)
				}
			}
		})
	}
}

// TestNonceKeptWhileTimestampGood checks the edge: a request stamped as
// far ahead of the node's clock as allowed is refused as a replay up to
// the last instant its timestamp is acceptable, however often the nonce
// memory is pruned meanwhile, and forgotten after.
func TestNonceKeptWhileTimestampGood(t *testing.T) {
	t0 := time.Unix(1_000_000_000, 0)
	v := NewVerifier("s", "n")
	r := newReq(t, http.MethodPost, "/a", "")
	sign(t, r, "s", "n", t0.Add(Window)) // the clock skew allowed
	if _, err := v.Verify(r, t0); err != nil {
		t.Fatal(err)
	}
	// Other requests along the way let the verifier prune.
	for at := t0; !at.After(t0.Add(2 * Window)); at = at.Add(Window / 4) {
		other := newReq(t, http.MethodPost, "/a", "")
		sign(t, other, "s", "n", at)
		if _, err := v.Verify(other, at); err != nil {
			t.Fatalf("at %v: %v", at.Sub(t0), err)
		}
		if _, err := v.Verify(r, at); err == nil || !strings.Contains(err.Error(), "replayed") {
			t.Fatalf("at t0+%v, the last instant of the request's window being t0+%v: got %v, want a replay refusal", at.Sub(t0), 2*Window, err)
		}
	}
	// A second later the timestamp is stale, and the nonce may go.
	late := t0.Add(2*Window + time.Second)
	if _, err := v.Verify(r, late); err == nil || !strings.Contains(err.Error(), "off by") {
		t.Errorf("stale request: %v", err)
	}
	prune := newReq(t, http.MethodPost, "/a", "")
	sign(t, prune, "s", "n", late.Add(Window))
	if _, err := v.Verify(prune, late.Add(Window)); err != nil {
		t.Fatal(err)
	}
	if len(v.seen) != 1 {
		t.Errorf("%d nonces remembered after their timestamps went stale, want 1", len(v.seen))
	}
}

func FuzzVerify(f *testing.F) {
	// A fixed nonce: fuzz workers re-run this function and must agree.
	nonce := "0123456789abcdef0123456789abcdef"
	body := sha256Hex([]byte("{}"))
	good := "v2.1000000000." + nonce + ".node1." + mac("s", message(http.MethodPost, "/a", "node1", body, "1000000000", nonce))
	f.Add(good, body)
	f.Add(good, emptySum)
	f.Add("v2.1000000000."+nonce+".node2."+mac("s", message(http.MethodPost, "/a", "node2", body, "1000000000", nonce)), body)
	f.Add("1.2.3", body)
	f.Add("v2....", "")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, h, bodySum string) {
		v := NewVerifier("s", "node1")
		req, _ := http.NewRequest(http.MethodPost, "http://x/a", nil)
		req.Header.Set(Header, h)
		req.Header.Set(BodyHeader, bodySum)
		if _, err := v.Verify(req, time.Unix(1e9, 0)); err == nil {
			// Only a correctly signed header passes.
			if h != good || bodySum != body {
				t.Fatalf("accepted forged header %q with body hash %q", h, bodySum)
			}
		} else if !errors.Is(err, ErrUnauthenticated) {
			t.Fatal(err)
		}
	})
}

func FuzzCheckBody(f *testing.F) {
	f.Add([]byte("{}"), sha256Hex([]byte("{}")))
	f.Add([]byte("{}"), sha256Hex([]byte("{ }")))
	f.Add([]byte{}, emptySum)
	f.Add([]byte("x"), "")
	f.Fuzz(func(t *testing.T, body []byte, claimed string) {
		const limit = 64
		r, _ := http.NewRequest(http.MethodPost, "http://x/a", bytes.NewReader(body))
		r.Header.Set(BodyHeader, claimed)
		err := CheckBody(r, limit)
		ok := len(body) <= limit && claimed == sha256Hex(body)
		if (err == nil) != ok {
			t.Fatalf("CheckBody(%q, %q) = %v, want accepted %v", body, claimed, err, ok)
		}
		if err != nil && !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrBodyTooLarge) {
			t.Fatal(err)
		}
		if err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(r.Body)
			if !bytes.Equal(b.Bytes(), body) {
				t.Fatalf("handler reads %q, want %q", b.Bytes(), body)
			}
		}
	})
}
