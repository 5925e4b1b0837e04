package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// getStatus reads a daemon's /api/status with hc.
func getStatus(t *testing.T, hc *http.Client, base string) (monitor.Status, int) {
	t.Helper()
	resp, err := hc.Get(base + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st monitor.Status
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
	}
	return st, resp.StatusCode
}

// act posts an action as the page does.
func act(t *testing.T, hc *http.Client, base, csrf string, a monitor.Action) int {
	t.Helper()
	b, _ := json.Marshal(a)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/action", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set(monitor.CSRFHeader, csrf)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls /api/status until ok accepts it.
func waitStatus(t *testing.T, hc *http.Client, base string, what string, ok func(monitor.Status) bool) monitor.Status {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, code := getStatus(t, hc, base)
		if code == http.StatusOK && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute (HTTP %d): %+v", what, code, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMonitorSession: on a node with a secret the page is public but the
// API is not; signing in with the secret gives a cookie the API accepts,
// and an action needs the page's token besides.
func TestMonitorSession(t *testing.T) {
	n, _ := nodetest.Start(t, func(c *node.Config) { c.Secret = "s3cret" })
	base := "http://" + n.Addr().String()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}

	resp, err := hc.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "drove") {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if _, code := getStatus(t, hc, base); code != http.StatusUnauthorized {
		t.Errorf("status before signing in: HTTP %d, want 401", code)
	}
	if code := act(t, hc, base, "x", monitor.Action{Kind: monitor.ActSetCPUs, Node: n.Name(), CPUs: 1}); code != http.StatusUnauthorized {
		t.Errorf("action before signing in: HTTP %d, want 401", code)
	}
	for _, tc := range []struct {
		secret string
		want   int
	}{{"wrong", http.StatusUnauthorized}, {"s3cret", http.StatusOK}} {
		resp, err := hc.PostForm(base+"/login", url.Values{"secret": {tc.secret}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("login with %q: HTTP %d, want %d", tc.secret, resp.StatusCode, tc.want)
		}
	}
	st, code := getStatus(t, hc, base)
	if code != http.StatusOK || st.Kind != "node" || st.CSRF == "" || len(st.Nodes) != 1 || st.Nodes[0].CPUs != 2 {
		t.Fatalf("status signed in: HTTP %d %+v", code, st)
	}
	if code := act(t, hc, base, "", monitor.Action{Kind: monitor.ActSetCPUs, Node: n.Name(), CPUs: 1}); code != http.StatusForbidden {
		t.Errorf("action without the token: HTTP %d, want 403", code)
	}
	if code := act(t, hc, base, st.CSRF, monitor.Action{Kind: monitor.ActSetCPUs, Node: n.Name(), CPUs: 1}); code != http.StatusOK {
		t.Errorf("set CPUs: HTTP %d, want 200", code)
	}
	waitStatus(t, hc, base, "node CPUs set to 1", func(st monitor.Status) bool { return st.Nodes[0].CPUs == 1 })
	if code := act(t, hc, base, st.CSRF, monitor.Action{Kind: monitor.ActDeallocate, Node: n.Name()}); code != http.StatusOK {
		t.Errorf("deallocate: HTTP %d, want 200", code)
	}
	waitStatus(t, hc, base, "node deallocated", func(st monitor.Status) bool { return !st.Nodes[0].Allocated })
	if code := act(t, hc, base, st.CSRF, monitor.Action{Kind: monitor.ActAddNode, Address: "127.0.0.1:1"}); code != http.StatusForbidden {
		t.Errorf("add a node to a node: HTTP %d, want 403 (not offered)", code)
	}
}

// TestMonitorScheduler: a scheduler's monitor shows its drove nodes with
// their addresses and what they report free, and adds a node by address.
func TestMonitorScheduler(t *testing.T) {
	n1, _ := nodetest.Start(t, nil)
	n2, _ := nodetest.Start(t, nil)
	s, _ := nodetest.StartScheduler(t, []string{n1.Addr().String()}, nil)
	base := "http://" + s.Addr().String()
	hc := &http.Client{}
	st := waitStatus(t, hc, base, "the node up", func(st monitor.Status) bool {
		return len(st.Nodes) == 1 && st.Nodes[0].State == "up"
	})
	nd := st.Nodes[0]
	if st.Kind != "scheduler" || nd.Address != n1.Addr().String() || nd.CPUs != 2 || nd.MemFree == nil || !slices.Contains(st.Actions, monitor.ActAddNode) {
		t.Errorf("scheduler status: kind %q, node %+v, actions %v", st.Kind, nd, st.Actions)
	}
	if code := act(t, hc, base, st.CSRF, monitor.Action{Kind: monitor.ActAddNode, Address: n2.Addr().String()}); code != http.StatusOK {
		t.Fatalf("add node: HTTP %d", code)
	}
	waitStatus(t, hc, base, "the added node up", func(st monitor.Status) bool {
		return len(st.Nodes) == 2 && slices.ContainsFunc(st.Nodes, func(n monitor.Node) bool { return n.Address == n2.Addr().String() && n.State == "up" })
	})
}
