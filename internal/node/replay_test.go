package node_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

var errCaptured = errors.New("captured, not sent")

// capture is a RoundTripper under nodeauth.Transport that keeps the
// signed request instead of sending it, as an eavesdropper on the path
// would; anything else (the node's /healthz) it lets through.
type capture struct {
	base   http.RoundTripper
	header http.Header
	body   []byte
}

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get(nodeauth.Header) == "" {
		return c.base.RoundTrip(r)
	}
	c.header = r.Header.Clone()
	if r.Body != nil {
		c.body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	return nil, errCaptured
}

// signedFor returns the headers a client with secret sends to the node at
// addr for method, path and body.
func signedFor(t *testing.T, secret, addr, method, path string, body []byte) http.Header {
	t.Helper()
	c := &capture{base: nodeexec.NewHTTPClient("", nil).Transport}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := (&nodeauth.Transport{Secret: secret, Base: c}).RoundTrip(req); !errors.Is(err, errCaptured) {
		t.Fatalf("capturing: %v", err)
	}
	if !bytes.Equal(c.body, body) {
		t.Fatalf("captured body %q, sent %q", c.body, body)
	}
	return c.header
}

// sendRaw sends method, path and body with header h as they are, with no
// signing of its own.
func sendRaw(t *testing.T, addr, method, path string, h http.Header, body []byte) (int, string) {
	t.Helper()
	return doWith(t, method, "http://"+addr+path, h, bytes.NewReader(body))
}

// TestSignatureBinding checks that a signed request is good for the one
// node it was signed for and with the one body it was signed with, on two
// nodes of one cluster.
func TestSignatureBinding(t *testing.T) {
	const secret = "shared"
	withSecret := func(c *node.Config) { c.Secret = secret }
	a, b := start(t, withSecret), start(t, withSecret)
	A, B := a.Addr().String(), b.Addr().String()
	info := drovev1connect.NodeServiceInfoProcedure
	blob := []byte("blob for node A")
	_, sum := blobURL(a, blob)
	put := "/blobs/" + sum

	for _, tc := range []struct {
		name         string
		signFor      string // node the request is signed for
		sendTo       string // node it is sent to
		method, path string
		signed, sent []byte // body signed, body sent
		want         int
	}{
		{"info for A, sent to B", A, B, http.MethodPost, info, []byte("{}"), []byte("{}"), http.StatusUnauthorized},
		{"info for A, sent to A with another body", A, A, http.MethodPost, info, []byte("{}"), []byte(`{"x":1}`), http.StatusUnauthorized},
		{"blob for A, sent to B", A, B, http.MethodPut, put, blob, blob, http.StatusUnauthorized},
		{"blob for A, sent to A with another body", A, A, http.MethodPut, put, blob, []byte("other contents"), http.StatusBadRequest},
		{"blob for A, sent to A", A, A, http.MethodPut, put, blob, blob, http.StatusCreated},
		{"info for A, sent to A", A, A, http.MethodPost, info, []byte("{}"), []byte("{}"), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := signedFor(t, secret, tc.signFor, tc.method, tc.path, tc.signed)
			code, body := sendRaw(t, tc.sendTo, tc.method, tc.path, h, tc.sent)
			if code != tc.want {
				t.Errorf("%d %s, want %d", code, body, tc.want)
			}
			if tc.want == http.StatusOK || tc.want == http.StatusCreated {
				// The good request, once more: a replay.
				if code, body := sendRaw(t, tc.sendTo, tc.method, tc.path, h, tc.sent); code != http.StatusUnauthorized {
					t.Errorf("replay: %d %s", code, body)
				}
			}
		})
	}
	// Node B never received the blob signed for A.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, "http://"+B+put, nil)
	resp, err := nodeexec.NewHTTPClient(secret, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("node B has the blob signed for A: HEAD %s", resp.Status)
	}
	alive(t, a, secret)
	alive(t, b, secret)
}

// TestClientFollowsRestartedNode checks that a client signs for a node
// that restarted on the same address (a new node id) without failing a
// request: the node's refusal names its new id, and the client signs the
// request again for it.
func TestClientFollowsRestartedNode(t *testing.T) {
	const secret = "shared"
	first, stop := nodetest.Start(t, func(c *node.Config) { c.Secret = secret })
	addr := first.Addr().(*net.TCPAddr)
	hc := nodeexec.NewHTTPClient(secret, nil)
	c := drovev1connect.NewNodeServiceClient(hc, "http://"+addr.String())
	before, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	_, stop = nodetest.Start(t, func(c *node.Config) { c.Secret, c.Port = secret, addr.Port })
	after, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if before.Msg.BootId == after.Msg.BootId {
		t.Errorf("the same node id %s before and after a restart", after.Msg.BootId)
	}
	// A body that cannot be read twice (no GetBody) is not sent again by
	// the client: the error says to send it again, and is not taken for a
	// wrong secret (which callers do not retry).
	stop()
	third := start(t, func(c *node.Config) { c.Secret, c.Port = secret, addr.Port })
	data := []byte("streamed blob")
	url, sum := blobURL(third, data)
	putOnce := func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, url, io.MultiReader(bytes.NewReader(data)))
		req.Header.Set(nodeauth.BodyHeader, sum)
		return hc.Do(req)
	}
	if _, err := putOnce(); err == nil || errors.Is(err, nodeauth.ErrUnauthenticated) || !strings.Contains(err.Error(), "send it again") {
		t.Errorf("PUT after a restart: %v, want an error saying to send it again", err)
	}
	resp, err := putOnce()
	if err != nil {
		t.Fatalf("PUT sent again: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("PUT sent again: %s", resp.Status)
	}
}
