package node

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/nodeauth"
)

// TestAuthDecision checks which requests the middleware lets through for
// each way a node can be configured: TLS counts only when client
// certificates are required and verified.
func TestAuthDecision(t *testing.T) {
	serverOnly := &tls.Config{}
	mutual := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	noCert := &tls.ConnectionState{}
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	const remote, loop = "10.1.2.3:4000", "127.0.0.1:4000"
	for _, tc := range []struct {
		name     string
		cfg      Config
		remote   string
		conn     *tls.ConnectionState
		sign     string // secret to sign with
		want     int
		authents bool
	}{
		{"nothing, loopback", Config{}, loop, nil, "", http.StatusOK, false},
		{"nothing, remote", Config{}, remote, nil, "", http.StatusForbidden, false},
		{"insecure, remote", Config{Insecure: true}, remote, nil, "", http.StatusOK, false},
		{"server TLS only, remote", Config{TLS: serverOnly}, remote, noCert, "", http.StatusForbidden, false},
		{"server TLS only, loopback", Config{TLS: serverOnly}, loop, noCert, "", http.StatusOK, false},
		{"server TLS only, insecure, remote", Config{TLS: serverOnly, Insecure: true}, remote, noCert, "", http.StatusOK, false},
		{"server TLS and secret, unsigned", Config{TLS: serverOnly, Secret: "k"}, remote, noCert, "", http.StatusUnauthorized, true},
		{"server TLS and secret, signed", Config{TLS: serverOnly, Secret: "k"}, remote, noCert, "k", http.StatusOK, true},
		{"mutual TLS, verified client", Config{TLS: mutual}, remote, verified, "", http.StatusOK, true},
		{"mutual TLS, no client certificate", Config{TLS: mutual}, remote, noCert, "", http.StatusUnauthorized, true},
		{"secret, wrong", Config{Secret: "k"}, remote, nil, "other", http.StatusUnauthorized, true},
		{"secret, right", Config{Secret: "k"}, remote, nil, "k", http.StatusOK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Authenticates(); got != tc.authents {
				t.Errorf("Authenticates() = %v, want %v", got, tc.authents)
			}
			n := &Node{cfg: tc.cfg, log: slog.New(slog.DiscardHandler), met: newMetrics()}
			if tc.cfg.Secret != "" {
				n.verify = nodeauth.NewVerifier(tc.cfg.Secret)
			}
			h := n.authMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest(http.MethodPost, "/drove.v1.NodeService/Info", nil)
			req.RemoteAddr, req.TLS = tc.remote, tc.conn
			if tc.sign != "" {
				nodeauth.Sign(req, tc.sign, time.Now())
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
		})
	}
}
