package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
)

// TestSchedulerRefusingNode: of a scheduler's two nodes, one refuses a
// computation for good (a depends over its --max-file-size); the
// computation's jobs all run on the other, which the client names as
// where they ran, and none fails.
func TestSchedulerRefusingNode(t *testing.T) {
	bin := buildDrove(t)
	env := []string{"DROVE_SECRET=" + schedNodeSecret}
	a := startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "1", "--max-file-size", "16k")
	b := startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "1")
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr)
	waitNodes(t, s, 1, "nodeA", "nodeB")

	dir := t.TempDir()
	prog := filepath.Join(dir, "where.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\npwd\nwc -c < big.dat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.dat")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := drove.NewCluster(t.Context(), drove.Program(prog), drove.WithScheduler(s.Addr), drove.WithSecret(schedClientSecret), drove.WithDepends(big))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	var jobs []*drove.Job[int]
	for range 8 {
		j, err := c.Submit(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, j := range jobs {
		if code, err := j.Result(ctx); err != nil || code != 0 {
			t.Fatalf("job %d: %v, exit %d, %v (stderr %q)", j.ID(), j.Status(), code, err, j.Stderr())
		}
		out := string(j.Stdout())
		if !strings.HasPrefix(out, destPath(b)+"/") || !strings.HasSuffix(out, "\n65536\n") || j.Node() != "nodeB" {
			t.Errorf("job %d ran on %q with output %q, want nodeB (%s) with the depends", j.ID(), j.Node(), out, destPath(b))
		}
	}
	if !strings.Contains(s.Stderr.String(), "max-file-size") {
		t.Errorf("the scheduler's log does not say why nodeA refused the computation:\n%s", s.Stderr.String())
	}
	// Status lists both nodes, the one that refused included.
	names := map[string]bool{}
	for _, n := range c.Status().Nodes {
		names[n.Name] = true
	}
	if !names["nodeA"] || !names["nodeB"] {
		t.Errorf("Status lists %v, want nodeA and nodeB", names)
	}
}

// TestSchedulerHostile: while a well-behaved client's jobs are in flight
// at a scheduler, others send it a wrong secret, depends with names that
// lead out of the job directory, a malformed message, a truncated stream
// frame and bytes that are not HTTP at all, and a second scheduler's
// --node-secret-file does not match the nodes. Each gets an error that
// says what is wrong (or its connection closed); the well-behaved
// client's jobs all finish.
func TestSchedulerHostile(t *testing.T) {
	bin := buildDrove(t)
	a, b := startSchedNodes(t, bin)
	s := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr, "--unauth-timeout", "3s")
	waitNodes(t, s, 1, "nodeA", "nodeB")

	good := schedClient(t, s.Addr)
	gate := openGate(t)
	js := sleeps(1, 40, 5*time.Millisecond)
	for i := range js {
		js[i].Gate = gate
	}
	jobs := submitAll(t, good, js...)
	waitStarted(t, jobs[:2]...) // and held at the gate, on both nodes

	t.Run("client secret", func(t *testing.T) {
		_, err := drove.NewCluster(t.Context(), schedJob, drove.WithScheduler(s.Addr), drove.WithSecret("wrong"))
		if err == nil || !strings.Contains(err.Error(), "secret") {
			t.Errorf("wrong client secret: %v, want an error about the secret", err)
		}
	})

	hc := nodeexec.NewHTTPClient(schedClientSecret, nil)
	defer hc.CloseIdleConnections()
	base := "http://" + s.Addr
	api := drovev1connect.NewNodeServiceClient(hc, base)

	t.Run("traversal depends", func(t *testing.T) {
		exe := &drovev1.Blob{Sum: strings.Repeat("0", 64), Mode: 0o755, Size: 1}
		for _, name := range []string{"../escape", "/etc/passwd", "a/../../b", ""} {
			_, err := api.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{
				ClientId: "hostile", ProgramName: "p", Program: exe,
				Depends: []*drovev1.Depend{{Name: name, Blob: exe}},
			}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "inside the job directory") {
				t.Errorf("depends named %q: %v, want invalid_argument saying it must stay inside the job directory", name, err)
			}
		}
	})

	t.Run("malformed message", func(t *testing.T) {
		// A string field that claims 16 bytes and has 1.
		resp, err := hc.Post(base+drovev1connect.NodeServiceSubmitProcedure, "application/proto", bytes.NewReader([]byte{0x0a, 0x10, 'a'}))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") || !strings.Contains(string(body), "unmarshal") {
			t.Errorf("malformed Submit: %s %s, want 400 invalid_argument saying it cannot be unmarshalled", resp.Status, body)
		}
	})

	t.Run("truncated frame", func(t *testing.T) {
		// A stream envelope that promises 100 bytes and brings 3.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+drovev1connect.NodeServiceResultsProcedure,
			bytes.NewReader([]byte{0, 0, 0, 0, 100, 1, 2, 3}))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/connect+proto")
		req.Header.Set("Connect-Protocol-Version", "1")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"error"`) || !strings.Contains(string(body), "promised 100 bytes") {
			t.Errorf("truncated Results frame: %s %q, want an error saying the frame is short", resp.Status, body)
		}
	})

	t.Run("not HTTP", func(t *testing.T) {
		for _, junk := range [][]byte{
			[]byte("\x16\x03\x01\x02\x00garbage\r\n\r\n"),
			// The HTTP/2 preface, then a frame header promising 4 KiB
			// that never come.
			append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0x10, 0, 4, 0, 0, 0, 0, 0),
		} {
			conn, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(junk); err != nil {
				t.Fatal(err)
			}
			// The scheduler answers with an error, or closes the
			// connection by its --unauth-timeout at the latest.
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(conn)
			conn.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%q: the connection is still open after 30s (read %q)", junk, got)
			}
		}
	})

	t.Run("node secret", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "node-secret")
		if err := os.WriteFile(f, []byte("not-the-nodes-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		lone := startSchedProc(t, bin, nil, "--nodes", a.addr+","+b.addr, "--node-secret-file", f)
		_, err := drove.NewCluster(t.Context(), schedJob, drove.WithScheduler(lone.Addr), drove.WithSecret(schedClientSecret))
		if err == nil || !strings.Contains(err.Error(), "no node can") || !strings.Contains(err.Error(), "secret") {
			t.Errorf("nodes refusing the scheduler's --node-secret-file: %v, want an error saying no node can be used, and why", err)
		}
	})

	// The scheduler still answers, and the good client's jobs all finish.
	if _, err := api.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{})); err != nil {
		t.Fatalf("the scheduler after the hostile requests: %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, jobs)
	waitJobs(t, submitAll(t, good, sleeps(100, 10, time.Millisecond)...))
}
