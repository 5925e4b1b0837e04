package node

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/nodeauth"
)

// TestAuthDecision checks which requests the middleware lets through for
// each way a node can be configured: TLS counts only when client
// certificates are required and verified. Requests go over real loopback
// connections (the node checks who owns the client's socket); a remote
// address and a TLS state are then set on them as a remote or TLS client's
// would be.
func TestAuthDecision(t *testing.T) {
	serverOnly := &tls.Config{}
	mutual := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	noCert := &tls.ConnectionState{}
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	const remote, loop = "10.1.2.3:4000", "" // "": the real loopback address
	const nodeID = "thisnode"
	for _, tc := range []struct {
		name     string
		cfg      Config
		remote   string
		conn     *tls.ConnectionState
		sign     string // secret to sign with
		signFor  string // node id to sign for; "" nodeID
		want     int
		authents bool
	}{
		{"nothing, loopback, same user", Config{}, loop, nil, "", "", http.StatusOK, false},
		{"nothing, remote", Config{}, remote, nil, "", "", http.StatusForbidden, false},
		{"insecure, remote", Config{Insecure: true}, remote, nil, "", "", http.StatusOK, false},
		{"server TLS only, remote", Config{TLS: serverOnly}, remote, noCert, "", "", http.StatusForbidden, false},
		{"server TLS only, loopback, same user", Config{TLS: serverOnly}, loop, noCert, "", "", http.StatusOK, false},
		{"server TLS only, insecure, remote", Config{TLS: serverOnly, Insecure: true}, remote, noCert, "", "", http.StatusOK, false},
		{"server TLS and secret, unsigned", Config{TLS: serverOnly, Secret: "k"}, remote, noCert, "", "", http.StatusUnauthorized, true},
		{"server TLS and secret, signed", Config{TLS: serverOnly, Secret: "k"}, remote, noCert, "k", "", http.StatusOK, true},
		{"mutual TLS, verified client", Config{TLS: mutual}, remote, verified, "", "", http.StatusOK, true},
		{"mutual TLS, no client certificate", Config{TLS: mutual}, remote, noCert, "", "", http.StatusUnauthorized, true},
		{"secret, wrong", Config{Secret: "k"}, remote, nil, "other", "", http.StatusUnauthorized, true},
		{"secret, right", Config{Secret: "k"}, remote, nil, "k", "", http.StatusOK, true},
		{"secret, signed for another node", Config{Secret: "k"}, remote, nil, "k", "othernode", http.StatusUnauthorized, true},
		{"secret, unsigned, loopback", Config{Secret: "k"}, loop, nil, "", "", http.StatusUnauthorized, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Authenticates(); got != tc.authents {
				t.Errorf("Authenticates() = %v, want %v", got, tc.authents)
			}
			tc.cfg.MaxMessage = 1 << 20
			n := &Node{cfg: tc.cfg, log: slog.New(slog.DiscardHandler), met: newMetrics(nil, nil), bootID: nodeID}
			if tc.cfg.Secret != "" {
				n.verify = nodeauth.NewVerifier(tc.cfg.Secret, nodeID)
			}
			h := n.authMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.remote != "" {
					r.RemoteAddr = tc.remote
				}
				r.TLS = tc.conn
				h.ServeHTTP(w, r)
			}))
			srv.Config.ConnContext = connContext
			srv.Start()
			defer srv.Close()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/drove.v1.NodeService/Info", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.sign != "" {
				if _, err := nodeauth.Sign(req, tc.sign, cmp.Or(tc.signFor, nodeID), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if got := resp.Header.Get(nodeauth.NodeHeader); got != nodeID {
				t.Errorf("%s header %q, want %q", nodeauth.NodeHeader, got, nodeID)
			}
		})
	}
}
