package node_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/node"
)

// TestConnMode: a node given Config.Conn serves that one connection
// without a signature even though it has a secret (SSH authenticated it),
// keeps its blobs in BlobDir, and Run returns once the connection ends.
func TestConnMode(t *testing.T) {
	srvEnd, cliEnd := net.Pipe()
	blobs := filepath.Join(t.TempDir(), "blobs")
	n, err := node.New(node.Config{Dir: t.TempDir(), BlobDir: blobs, CPUs: 1, Secret: "s3cret", Conn: srvEnd})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()

	used := false
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if used {
			t.Error("the client dialled twice")
		}
		used = true
		return cliEnd, nil
	}, MaxConnsPerHost: 1}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	hc := &http.Client{Transport: tr}
	c := drovev1connect.NewNodeServiceClient(hc, "http://node")
	info, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		t.Fatalf("Info over the connection, unsigned: %v", err)
	}
	if info.Msg.Cpus != 1 {
		t.Errorf("info %+v", info.Msg)
	}
	if a, ok := n.Addr().(*net.TCPAddr); ok {
		t.Errorf("Addr %v: a TCP listener beside Conn", a)
	}
	cliEnd.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the connection ended")
	}
}
