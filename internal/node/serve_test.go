package node_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/node"
)

// TestServeClients: Serve counts clients, not computations: a client may
// open several computations; once two clients were served a third is
// refused, and Run returns when the served clients have closed theirs.
func TestServeClients(t *testing.T) {
	n, err := node.New(node.Config{Hosts: []string{"127.0.0.1"}, Dir: t.TempDir(), CPUs: 1, Serve: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(t.Context()) }()
	c := api(n, "")
	prog := []byte("#!/bin/sh\nexit 0\n")
	sum := putBlob(t, n, prog)
	setup := func(client string) (string, error) {
		resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: client, Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p"}))
		if err != nil {
			return "", err
		}
		return resp.Msg.ComputationId, nil
	}
	closeComp := func(id string) {
		t.Helper()
		if _, err := c.Close(t.Context(), connect.NewRequest(&drovev1.CloseRequest{ComputationId: id})); err != nil {
			t.Fatal(err)
		}
	}
	running := func() bool {
		select {
		case err := <-done:
			done <- err
			return false
		case <-time.After(300 * time.Millisecond):
			return true
		}
	}
	a1, err := setup("alice")
	if err != nil {
		t.Fatal(err)
	}
	closeComp(a1)
	// One computation closed, but only one client served: still running,
	// and alice may come back.
	if !running() {
		t.Fatal("node exited after one computation of one client")
	}
	a2, err := setup("alice")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := setup("bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup("carol"); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("third client: %v, want Unavailable", err)
	}
	closeComp(a2)
	if !running() {
		t.Fatal("node exited while bob's computation is open")
	}
	closeComp(b1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node still running after serving its two clients")
	}
}

// TestClean: Clean empties what the node keeps in Dir (blobs and
// computations) and leaves anything else there alone.
func TestClean(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"blobs/ab/old", "comp/c1/x/exe", "mine.txt"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := node.New(node.Config{Hosts: []string{"127.0.0.1"}, Dir: dir, Clean: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{"blobs/ab/old": false, "comp/c1": false, "mine.txt": true} {
		_, err := os.Stat(filepath.Join(dir, f))
		if got := err == nil; got != want {
			t.Errorf("%s exists: %v, want %v", f, got, want)
		}
	}
}
