package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

func start(t *testing.T, mut func(*node.Config)) *node.Node {
	t.Helper()
	n, _ := nodetest.Start(t, mut)
	return n
}

func api(n *node.Node, secret string) drovev1connect.NodeServiceClient {
	return drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient(secret, nil), "http://"+n.Addr().String())
}

// alive checks the node still serves a good client.
func alive(t *testing.T, n *node.Node, secret string) {
	t.Helper()
	resp, err := api(n, secret).Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil {
		t.Fatalf("node no longer serves: %v", err)
	}
	if resp.Msg.Cpus != 2 || resp.Msg.Protocol != node.Protocol || resp.Msg.Avail == nil {
		t.Errorf("info %v", resp.Msg)
	}
}

func TestSecret(t *testing.T) {
	n := start(t, func(c *node.Config) { c.Secret = "s3cret" })
	base := "http://" + n.Addr().String()
	plain := nodeexec.NewHTTPClient("", nil)
	for _, tc := range []struct {
		name   string
		header string
	}{
		{"none", ""},
		{"malformed", "garbage"},
		{"wrong mac", "v2.1700000000." + strings.Repeat("a", 32) + ".node." + strings.Repeat("b", 64)},
		{"older client", "1700000000." + strings.Repeat("a", 32) + "." + strings.Repeat("b", 64)},
	} {
		req, _ := http.NewRequest(http.MethodPost, base+drovev1connect.NodeServiceInfoProcedure, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if tc.header != "" {
			req.Header.Set(nodeauth.Header, tc.header)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "not authenticated") {
			t.Errorf("%s: %s %s", tc.name, resp.Status, body)
		}
	}
	// Wrong secret through the real client: refused, and the node's answer
	// is not trusted either.
	_, err := api(n, "wrong").Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if !errors.Is(err, nodeauth.ErrUnauthenticated) && !strings.Contains(err.Error(), "secret") {
		t.Errorf("wrong secret: %v", err)
	}
	// A replayed request is refused.
	req, _ := http.NewRequest(http.MethodPost, base+drovev1connect.NodeServiceInfoProcedure, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if _, err := nodeauth.Sign(req, "s3cret", nodeID(t, n), time.Now()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{http.StatusOK, http.StatusUnauthorized} {
		r2 := req.Clone(t.Context())
		r2.Body = io.NopCloser(strings.NewReader("{}"))
		resp, err := plain.Do(r2)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("send %d: %s, want %d", i, resp.Status, want)
		}
	}
	// A node that does not know the secret is not trusted by the client.
	other := start(t, nil)
	if _, err := api(other, "s3cret").Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{})); err == nil {
		t.Error("client trusted a node without the secret")
	}
	alive(t, n, "s3cret")
}

// nodeID returns the id the node tells everyone, for signing requests.
func nodeID(t *testing.T, n *node.Node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(nodeauth.NodeHeader)
}

func blobURL(n *node.Node, data []byte) (string, string) {
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	return "http://" + n.Addr().String() + "/blobs/" + sum, sum
}

// putBlob uploads data to n's blob store and returns its sum.
func putBlob(t *testing.T, n *node.Node, data []byte) string {
	t.Helper()
	url, sum := blobURL(n, data)
	if code, body := do(t, http.MethodPut, url, bytes.NewReader(data)); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	return sum
}

func do(t *testing.T, method, url string, body io.Reader) (int, string) {
	t.Helper()
	return doWith(t, method, url, nil, body)
}

// doWith sends a request with header h (none if nil), unsigned, and
// returns the status and body of the answer.
func doWith(t *testing.T, method, url string, h http.Header, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		req.Header = h.Clone()
	}
	resp, err := nodeexec.NewHTTPClient("", nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBlobs(t *testing.T) {
	n := start(t, func(c *node.Config) { c.MaxFileSize = 1000 })
	data := []byte("hello blob")
	url, _ := blobURL(n, data)
	if code, _ := do(t, http.MethodHead, url, nil); code != http.StatusNotFound {
		t.Errorf("HEAD before PUT: %d", code)
	}
	if code, body := do(t, http.MethodPut, url, bytes.NewReader([]byte("other content"))); code != http.StatusBadRequest {
		t.Errorf("PUT of content not matching its sum: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPut, url, bytes.NewReader(data)); code != http.StatusCreated {
		t.Errorf("PUT: %d %s", code, body)
	}
	if code, _ := do(t, http.MethodHead, url, nil); code != http.StatusOK {
		t.Errorf("HEAD after PUT: %d", code)
	}
	if code, body := do(t, http.MethodGet, url, nil); code != http.StatusOK || body != string(data) {
		t.Errorf("GET: %d %q", code, body)
	}
	// A blob the node has is acknowledged without storing a byte (the
	// received-bytes metric below stays at one copy).
	if code, _ := do(t, http.MethodPut, url, bytes.NewReader(data)); code != http.StatusOK {
		t.Errorf("second PUT: %d", code)
	}
	big := bytes.Repeat([]byte("x"), 2000)
	bigURL, _ := blobURL(n, big)
	if code, body := do(t, http.MethodPut, bigURL, bytes.NewReader(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized PUT: %d %s", code, body)
	}
	// Without a length the limit is enforced while reading.
	if code, body := do(t, http.MethodPut, bigURL, io.MultiReader(bytes.NewReader(big))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked PUT: %d %s", code, body)
	}
	for _, bad := range []string{"/blobs/abc", "/blobs/..%2F..%2Fetc%2Fpasswd", "/blobs/" + strings.Repeat("z", 64)} {
		if code, _ := do(t, http.MethodGet, "http://"+n.Addr().String()+bad, nil); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("GET %s: %d", bad, code)
		}
	}
	if code, body := do(t, http.MethodGet, "http://"+n.Addr().String()+"/healthz", nil); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := do(t, http.MethodGet, "http://"+n.Addr().String()+"/metrics", nil); code != 200 || !strings.Contains(body, "drove_node_blob_received_bytes_total 10\n") {
		t.Errorf("metrics: %d %s", code, body)
	}
	alive(t, n, "")
}

// TestBigBlobs sends blobs of several MiB, over the store's chunk size:
// one within the limit is stored whole, one over it is refused while it is
// read (no length given) and leaves nothing.
func TestBigBlobs(t *testing.T) {
	n := start(t, func(c *node.Config) { c.MaxFileSize = 4 << 20 })
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(i * 31 >> 8)
	}
	url, _ := blobURL(n, data)
	if code, body := do(t, http.MethodPut, url, io.MultiReader(bytes.NewReader(data))); code != http.StatusCreated {
		t.Fatalf("PUT of %d bytes: %d %s", len(data), code, body)
	}
	if code, body := do(t, http.MethodGet, url, nil); code != http.StatusOK || body != string(data) {
		t.Errorf("GET: %d, %d bytes, equal %v", code, len(body), body == string(data))
	}
	big := make([]byte, 6<<20)
	copy(big, data)
	bigURL, _ := blobURL(n, big)
	if code, body := do(t, http.MethodPut, bigURL, io.MultiReader(bytes.NewReader(big))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked PUT: %d %s", code, body)
	}
	if code, _ := do(t, http.MethodHead, bigURL, nil); code != http.StatusNotFound {
		t.Errorf("HEAD of the refused blob: %d", code)
	}
	alive(t, n, "")
}

func TestSetupRefusals(t *testing.T) {
	n := start(t, func(c *node.Config) { c.MaxMessage = 4096 })
	c := api(n, "")
	prog := []byte("#!/bin/sh\necho hi\n")
	sum := putBlob(t, n, prog)
	good := func() *drovev1.SetupRequest {
		return &drovev1.SetupRequest{ClientId: "c1", Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p.sh"}
	}
	for _, tc := range []struct {
		name string
		mut  func(*drovev1.SetupRequest)
		code connect.Code
	}{
		{"traversal depends", func(r *drovev1.SetupRequest) {
			r.Depends = []*drovev1.Depend{{Name: "../../etc/cron.d/x", Blob: &drovev1.Blob{Sum: sum}}}
		}, connect.CodeInvalidArgument},
		{"absolute depends", func(r *drovev1.SetupRequest) {
			r.Depends = []*drovev1.Depend{{Name: "/etc/passwd", Blob: &drovev1.Blob{Sum: sum}}}
		}, connect.CodeInvalidArgument},
		{"traversal client id", func(r *drovev1.SetupRequest) { r.ClientId = "../.." }, connect.CodeInvalidArgument},
		{"missing blob", func(r *drovev1.SetupRequest) { r.Program.Sum = strings.Repeat("0", 64) }, connect.CodeFailedPrecondition},
		{"bad sum", func(r *drovev1.SetupRequest) { r.Program.Sum = "../x" }, connect.CodeFailedPrecondition},
		{"both", func(r *drovev1.SetupRequest) { r.FuncName = "f" }, connect.CodeInvalidArgument},
		{"wrong platform", func(r *drovev1.SetupRequest) {
			r.Program, r.FuncName, r.Goos, r.Goarch = nil, "f", "plan9", "mips"
			r.Executable = &drovev1.Blob{Sum: sum}
		}, connect.CodeFailedPrecondition},
		{"oversized message", func(r *drovev1.SetupRequest) { r.Env = []string{strings.Repeat("x", 8192)} }, connect.CodeResourceExhausted},
	} {
		r := good()
		tc.mut(r)
		_, err := c.Setup(t.Context(), connect.NewRequest(r))
		if connect.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.code)
		}
	}
	// The program's name cannot climb out either: only its base name is used.
	r := good()
	r.ProgramName = "../../../../bin/evil"
	resp, err := c.Setup(t.Context(), connect.NewRequest(r))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Close(t.Context(), connect.NewRequest(&drovev1.CloseRequest{ComputationId: resp.Msg.ComputationId})); err != nil {
		t.Fatal(err)
	}
	alive(t, n, "")
}

func TestMalformedFrames(t *testing.T) {
	n := start(t, func(c *node.Config) { c.MaxMessage = 4096 })
	base := "http://" + n.Addr().String()
	for _, tc := range []struct {
		name, ctype string
		body        []byte
	}{
		{"garbage proto", "application/proto", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"truncated proto", "application/proto", []byte{0x0a, 0x10, 'a'}},
		{"bad json", "application/json", []byte("{")},
		{"oversized", "application/proto", bytes.Repeat([]byte{0x0a}, 10000)},
		{"truncated stream envelope", "application/connect+proto", []byte{0, 0, 0, 1, 0}},
		{"oversized stream envelope", "application/connect+proto", []byte{0, 0x7f, 0xff, 0xff, 0xff}},
	} {
		proc := drovev1connect.NodeServiceSetupProcedure
		if strings.HasPrefix(tc.ctype, "application/connect+") {
			proc = drovev1connect.NodeServiceResultsProcedure
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+proc, bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := nodeexec.NewHTTPClient("", nil).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "error") {
			t.Errorf("%s: accepted: %s %q", tc.name, resp.Status, body)
		}
	}
	alive(t, n, "")
}

func TestZombie(t *testing.T) {
	n := start(t, func(c *node.Config) { c.ZombieInterval = 200 * time.Millisecond })
	c := api(n, "")
	prog := []byte("#!/bin/sh\nsleep 100\n")
	sum := putBlob(t, n, prog)
	resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: "gone", Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p", GraceMs: 100}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.ComputationId
	if _, err := c.Submit(t.Context(), connect.NewRequest(&drovev1.SubmitRequest{ComputationId: id, Jobs: []*drovev1.Job{{RunId: 1, Input: []byte{0}}}})); err != nil {
		t.Fatal(err)
	}
	// The client never connects for results nor sends heartbeats: after the
	// zombie interval its computation (and its job) is gone, and then its
	// files (the node forgets the computation first, and removes its
	// files once its job has stopped).
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Join(nodeDir(t, n), "comp", "gone"))
		if info.Msg.Computations == 0 && info.Msg.Busy == 0 && len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie not cleaned up: %v, computation files left: %v", info.Msg, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Heartbeat(t.Context(), connect.NewRequest(&drovev1.HeartbeatRequest{ComputationId: id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("heartbeat after cleanup: %v", err)
	}
}

func nodeDir(t *testing.T, n *node.Node) string { t.Helper(); return n.Dir() }

// Two daemons cannot share a directory: the second is refused with an
// error that names the directory, says who holds it and what to do, and
// the directory is free again once the first has stopped.
func TestDirInUse(t *testing.T) {
	dir := t.TempDir()
	cfg := node.Config{Hosts: []string{"127.0.0.1"}, Dir: dir}
	first, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.New(cfg)
	if !errors.Is(err, node.ErrDirInUse) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) || !strings.Contains(err.Error(), "--dest-path") {
		t.Fatalf("second node on %s: %v", dir, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	again, err := node.New(cfg)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := again.Run(ctx2); err != nil {
		t.Fatal(err)
	}
}

// TestNoMachines: a drove node runs its jobs itself: its Info lists no
// machines, its events name none, and SetCPUs is refused saying why.
func TestNoMachines(t *testing.T) {
	n := start(t, nil)
	c := api(n, "")
	info, err := c.Info(t.Context(), connect.NewRequest(&drovev1.InfoRequest{}))
	if err != nil || len(info.Msg.Machines) != 0 {
		t.Fatalf("Info: %v, machines %v; want none", err, info.Msg.GetMachines())
	}
	sum := putBlob(t, n, []byte("#!/bin/sh\nexit 0\n"))
	resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: "plain", Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p"}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.ComputationId
	_, err = c.SetCPUs(t.Context(), connect.NewRequest(&drovev1.SetCPUsRequest{ComputationId: id, Machine: info.Msg.Name, Cpus: 1}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "runs its jobs itself") {
		t.Errorf("SetCPUs on a drove node: %v, want failed_precondition saying it runs its jobs itself", err)
	}
	if _, err := c.Submit(t.Context(), connect.NewRequest(&drovev1.SubmitRequest{ComputationId: id, Jobs: []*drovev1.Job{{RunId: 1}}})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := c.Results(ctx, connect.NewRequest(&drovev1.ResultsRequest{ComputationId: id}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for st.Receive() {
		for _, ev := range st.Msg().Events {
			if ev.Machine != "" {
				t.Errorf("event %d names machine %q", ev.Seq, ev.Machine)
			}
			if ev.GetResult() != nil {
				return
			}
		}
	}
	t.Fatalf("no result: %v", st.Err())
}
