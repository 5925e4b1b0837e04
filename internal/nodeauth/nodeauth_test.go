package nodeauth

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	v := NewVerifier("s")
	now := time.Now()
	r, _ := http.NewRequest(http.MethodPost, "http://x/a", nil)
	nonce := Sign(r, "s", now)
	got, err := v.Verify(r, now)
	if err != nil || got != nonce {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := v.Verify(r, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("replay accepted: %v", err)
	}
	r2, _ := http.NewRequest(http.MethodPost, "http://x/b", nil)
	r2.Header.Set(Header, r.Header.Get(Header))
	if _, err := v.Verify(r2, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("header moved to another path accepted: %v", err)
	}
	r3, _ := http.NewRequest(http.MethodPost, "http://x/a", nil)
	Sign(r3, "s", now.Add(-10*time.Minute))
	if _, err := v.Verify(r3, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("stale request accepted: %v", err)
	}
	r4, _ := http.NewRequest(http.MethodPost, "http://x/a", nil)
	Sign(r4, "wrong", now)
	if _, err := v.Verify(r4, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong secret accepted: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	// A fixed nonce: fuzz workers re-run this function and must agree.
	nonce := "0123456789abcdef0123456789abcdef"
	good := "1000000000." + nonce + "." + mac("s", message(http.MethodPost, "/a", "1000000000", nonce))
	f.Add(good)
	f.Add("1.2.3")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		v := NewVerifier("s")
		req, _ := http.NewRequest(http.MethodPost, "http://x/a", nil)
		req.Header.Set(Header, h)
		if _, err := v.Verify(req, time.Unix(1e9, 0)); err == nil {
			// Only a correctly signed header passes.
			if h != good {
				t.Fatalf("accepted forged header %q", h)
			}
		} else if !errors.Is(err, ErrUnauthenticated) {
			t.Fatal(err)
		}
	})
}
