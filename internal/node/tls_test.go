package node_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
)

// pki writes a CA and a node and a client certificate into dir.
func pki(t *testing.T, dir string) {
	t.Helper()
	caCert, caKey, err := nodeauth.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", caCert)
	for _, c := range []struct {
		name string
		kind nodeauth.CertKind
	}{{"node", nodeauth.CertNode}, {"client", nodeauth.CertClient}} {
		cert, key, err := nodeauth.IssueCert(caCert, caKey, c.kind, c.name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		write(c.name+".pem", cert)
		write(c.name+"-key.pem", key)
	}
}

func TestMutualTLS(t *testing.T) {
	good, bad := t.TempDir(), t.TempDir()
	pki(t, good)
	pki(t, bad)
	p := func(dir, name string) string { return filepath.Join(dir, name) }
	srv, err := nodeauth.ServerTLS(p(good, "node.pem"), p(good, "node-key.pem"), p(good, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	n := start(t, func(c *node.Config) { c.TLS = srv })
	info := func(cfg *tls.Config) error {
		c := drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient("", cfg), "https://"+n.Addr().String())
		if cfg == nil {
			c = drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient("", nil), "http://"+n.Addr().String())
		}
		_, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
		return err
	}
	ok, err := nodeauth.ClientTLS(p(good, "client.pem"), p(good, "client-key.pem"), p(good, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := info(ok); err != nil {
		t.Fatalf("good client: %v", err)
	}
	for name, files := range map[string][3]string{
		"client of another CA":         {p(bad, "client.pem"), p(bad, "client-key.pem"), p(good, "ca.pem")},
		"client trusting another CA":   {p(good, "client.pem"), p(good, "client-key.pem"), p(bad, "ca.pem")},
		"client without a certificate": {"", "", p(good, "ca.pem")},
	} {
		cfg, err := nodeauth.ClientTLS(files[0], files[1], files[2])
		if err != nil {
			t.Fatal(err)
		}
		if err := info(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Plain text on the TLS port gets nowhere.
	if err := info(nil); err == nil {
		t.Error("plain-text client accepted")
	}
	if err := info(ok); err != nil {
		t.Fatalf("node no longer serves: %v", err)
	}
}
