package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/gen/drove/v1/drovev1connect"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/wire"
)

// floods are ways to hold a connection to a node open without
// authenticating: what each sends first. (The node also closes an HTTP/2
// connection that does not answer its pings, after Config.ClientSilence;
// one that answers is held open as long as one that keeps alive.)
var floods = []struct{ name, hello string }{
	{"raw", ""}, // connects and sends nothing
	// Asks for /healthz, which needs no authentication, and keeps the
	// connection alive.
	{"keep-alive", "GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n"},
	// Opens an HTTP/2 connection (preface and empty SETTINGS) and sends no
	// request.
	{"h2c", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"},
}

// flood opens n connections to addr, each sending hello. The node may
// close them at any time, so a failed write is no error. They are closed
// at the end of the test.
func flood(t *testing.T, addr, hello string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("flood connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if hello != "" {
			_, _ = io.WriteString(c, hello)
		}
	}
	return conns
}

// closedWithin reads each of conns until the node closes it or within
// ends, and returns how many the node closed.
func closedWithin(conns []net.Conn, within time.Duration) int {
	deadline := time.Now().Add(within)
	var mu sync.Mutex
	var wg sync.WaitGroup
	closed := 0
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			if !errors.Is(err, os.ErrDeadlineExceeded) { // EOF (nil) or reset
				mu.Lock()
				closed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return closed
}

// signedJobs runs jobs on the node at addr through a client holding the
// cluster secret, and checks every one ran: a client the node leaves
// hanging fails here after a minute.
func signedJobs(t *testing.T, addr, secret string, jobs int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	prog, err := nodeexec.HashFile("/bin/echo")
	if err != nil {
		t.Fatal(err)
	}
	s := sched.New(sched.Config{})
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = s.Close(cctx)
	}()
	ex, err := nodeexec.Dial(ctx, nodeexec.Config{Addr: addr, Secret: secret, ClientID: "signed", Heartbeat: 100 * time.Millisecond},
		&nodeexec.Computation{Program: prog, ProgramName: "echo"}, s)
	if err != nil {
		t.Fatalf("signed client: %v", err)
	}
	if err := s.AddNode(ex.Name(), ex.Slots(), ex); err != nil {
		t.Fatal(err)
	}
	tasks := make([]*sched.Task, jobs)
	for i := range tasks {
		tasks[i] = &sched.Task{ID: int64(i + 1), Input: wire.AppendStrings(nil, []string{strconv.Itoa(i)})}
		if err := s.Submit(ctx, tasks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("signed client's jobs: %v", err)
	}
	for i, tk := range tasks {
		if r := tk.Result(); tk.State() != sched.Finished || string(r.Stdout) != fmt.Sprintln(i) {
			t.Fatalf("job %d: %v %v %q", i, tk.State(), r.Err, r.Stdout)
		}
	}
}

// dropped returns the node's drove_node_dropped_connections_total for
// reason, read from /metrics, which loopback clients get unsigned.
func dropped(t *testing.T, addr, reason string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := `drove_node_dropped_connections_total{reason="` + reason + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestConnFlood: a flood of connections that never authenticate, far
// beyond the node's bound (in total, or per address: all come from
// 127.0.0.1), does not keep a client with the cluster secret from running
// its jobs; the node holds at most its bound of them open.
func TestConnFlood(t *testing.T) {
	const secret, bound, each = "s3cret", 40, 100
	for _, tc := range []struct {
		name string
		cfg  func(*node.Config)
	}{
		{"total", func(c *node.Config) { c.MaxConns = bound }},
		{"per host", func(c *node.Config) { c.MaxConnsPerHost = bound }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, func(c *node.Config) {
				c.Secret = secret
				c.UnauthTimeout = time.Hour // the bound is tested, not the timeout
				tc.cfg(c)
			})
			addr := n.Addr().String()
			var conns []net.Conn
			for _, f := range floods {
				conns = append(conns, flood(t, addr, f.hello, each)...)
			}
			signedJobs(t, addr, secret, 20)
			if open := len(conns) - closedWithin(conns, 2*time.Second); open > bound {
				t.Errorf("%d of %d unauthenticated connections still open; the bound is %d", open, len(conns), bound)
			}
			if got := dropped(t, addr, "bound"); got < float64(len(conns)-bound) {
				t.Errorf("drove_node_dropped_connections_total{reason=bound} = %v, want at least %d", got, len(conns)-bound)
			}
		})
	}
}

// TestConnFloodFewFiles: on a real drove node process that may open 256
// files, 246 idle connections that never authenticate (which used to use
// up its descriptors, so that accept failed and a signed client hung)
// do not keep a client with the cluster secret from running its jobs.
func TestConnFloodFewFiles(t *testing.T) {
	const secret, nofile = "s3cret", 256
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "drove-few-files")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n %d || exit 1\nexec %s \"$@\"\n", nofile, nodetest.Build(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := nodetest.StartProcess(t, wrapper, []string{"DROVE_SECRET=" + secret}, "--cpus", "2", "--unauth-timeout", "1h")
	if got := openFilesLimit(t, p.Cmd.Process.Pid); got != strconv.Itoa(nofile) {
		t.Fatalf("the node may open %s files, want %d", got, nofile)
	}
	flood(t, p.Addr, floods[1].hello, nofile-10)
	signedJobs(t, p.Addr, secret, 20)
}

// openFilesLimit returns the soft limit of open files of process pid.
func openFilesLimit(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no open files limit in /proc/%d/limits:\n%s", pid, b)
	return ""
}

// TestUnauthenticatedConnsClosed: connections on which nothing
// authenticated are closed after Config.UnauthTimeout, whatever they send
// (or not); an authenticated client's connection, older than all of them,
// is still open and reused after they are gone.
func TestUnauthenticatedConnsClosed(t *testing.T) {
	pkiDir := t.TempDir()
	pki(t, pkiDir)
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	srvTLS, err := nodeauth.ServerTLS(p("node.pem"), p("node-key.pem"), p("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cliTLS, err := nodeauth.ClientTLS(p("client.pem"), p("client-key.pem"), p("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		secret  string
		srv     *tls.Config
		cli     *tls.Config
		flooded []int // indexes into floods
	}{
		{name: "secret", secret: "s3cret", flooded: []int{0, 1, 2}},
		{name: "loopback only", flooded: []int{0, 1, 2}},
		{name: "mutual TLS", srv: srvTLS, cli: cliTLS, flooded: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, func(c *node.Config) {
				c.Secret, c.TLS = tc.secret, tc.srv
				c.UnauthTimeout = 300 * time.Millisecond
			})
			addr := n.Addr().String()
			scheme := "http://"
			if tc.cli != nil {
				scheme = "https://"
			}
			c := drovev1connect.NewNodeServiceClient(nodeexec.NewHTTPClient(tc.secret, tc.cli), scheme+addr)
			// info reports whether the request went on a connection
			// opened before.
			info := func() bool {
				t.Helper()
				var reused bool
				ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
				if _, err := c.Info(ctx, connect.NewRequest(&drovev1.InfoRequest{})); err != nil {
					t.Fatal(err)
				}
				return reused
			}
			info()
			var conns []net.Conn
			for _, i := range tc.flooded {
				conns = append(conns, flood(t, addr, floods[i].hello, 5)...)
			}
			if closed := closedWithin(conns, 30*time.Second); closed != len(conns) {
				t.Fatalf("%d of %d unauthenticated connections still open", len(conns)-closed, len(conns))
			}
			if !info() {
				t.Error("the authenticated connection was closed too")
			}
			if tc.cli == nil {
				if got := dropped(t, addr, "unauth"); got < float64(len(conns)) {
					t.Errorf("drove_node_dropped_connections_total{reason=unauth} = %v, want at least %d", got, len(conns))
				}
			}
		})
	}
}

// TestIdleTimeout: a keep-alive connection with no request in flight is
// closed after Config.IdleTimeout, but a Results stream, which may send
// nothing but heartbeats for hours, is not cut however long it lasts.
func TestIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	n := start(t, func(c *node.Config) { c.IdleTimeout = idle })
	addr := n.Addr().String()
	c := api(n, "")
	prog := []byte("#!/bin/sh\nexit 0\n")
	sum := putBlob(t, n, prog)
	resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: "idle", Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p"}))
	if err != nil {
		t.Fatal(err)
	}
	// A loopback client of a node without a secret is authenticated, so
	// only the idle timeout closes its connection.
	conns := flood(t, addr, "GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n", 3)
	stream, err := c.Results(t.Context(), connect.NewRequest(&drovev1.ResultsRequest{ComputationId: resp.Msg.ComputationId}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if closed := closedWithin(conns, 30*time.Second); closed != len(conns) {
		t.Fatalf("%d of %d idle connections still open", len(conns)-closed, len(conns))
	}
	// The stream outlived the idle connections; and heartbeats (every
	// 50 ms) keep coming for many more idle timeouts.
	for beat := 0; beat < int(10*idle/(50*time.Millisecond)); beat++ {
		if !stream.Receive() {
			t.Fatalf("Results stream ended after %d heartbeats: %v", beat, stream.Err())
		}
	}
}

// TestConnBoundAllAuthenticated: at the bound with every connection
// authenticated, a new connection is refused (closed at once, rather than
// left hanging) and the others are still served.
func TestConnBoundAllAuthenticated(t *testing.T) {
	const bound = 3
	n := start(t, func(c *node.Config) {
		c.MaxConns = bound
		c.UnauthTimeout = time.Hour // nothing but the bound closes connections
	})
	addr := n.Addr().String()
	get := func(c net.Conn, br *bufio.Reader, path string) string {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: node\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %s", path, err, resp.Status)
		}
		return string(b)
	}
	// Loopback clients of a node without a secret are authenticated.
	conns := flood(t, addr, "", bound)
	readers := make([]*bufio.Reader, bound)
	for i, c := range conns {
		readers[i] = bufio.NewReader(c)
		get(c, readers[i], "/metrics")
	}
	// Accepted, it would be kept alive after its answer.
	if closed := closedWithin(flood(t, addr, floods[1].hello, 1), 30*time.Second); closed != 1 {
		t.Fatal("a connection beyond the bound was not refused")
	}
	metrics := get(conns[0], readers[0], "/metrics")
	if !strings.Contains(metrics, `drove_node_dropped_connections_total{reason="refuse"} 1`) {
		t.Errorf("refused connection not counted:\n%s", metrics)
	}
	for i, c := range conns {
		get(c, readers[i], "/healthz")
	}
}
