package drove

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
)

// The network-namespace tests build a small LAN: three hosts (network
// namespaces) on one bridge, in a fourth. Two run a drove node, the third a
// client that finds them by UDP broadcast. They need root (CAP_NET_ADMIN)
// and ip(8); without them they skip, unless DROVE_REQUIRE_NETNS=1 (test.sh
// sets it as root), when they fail.

const netnsRole = "DROVE_NETNS_ROLE"

type lan struct {
	t      *testing.T
	prefix string // 10.77.N.
	hub    string
	ns     []string
}

func (l *lan) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// requireNetnsEnv, set to 1, makes a network-namespace test whose
// prerequisites are missing fail instead of skipping (CI runs as root, where
// they must run).
const requireNetnsEnv = "DROVE_REQUIRE_NETNS"

// skipNetns skips t, or fails it when DROVE_REQUIRE_NETNS=1.
func skipNetns(t *testing.T, why string) {
	t.Helper()
	if os.Getenv(requireNetnsEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires the network-namespace tests to run", why, requireNetnsEnv)
	}
	t.Skip(why)
}

func newLAN(t *testing.T, hosts int) *lan {
	t.Helper()
	if os.Geteuid() != 0 {
		skipNetns(t, "network-namespace tests need root (CAP_NET_ADMIN) to create namespaces, veths and a bridge")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipNetns(t, "network-namespace tests need ip(8) (Debian package iproute2)")
	}
	id := os.Getpid() % 100000
	l := &lan{t: t, prefix: fmt.Sprintf("10.77.%d.", id%250)}
	hub := fmt.Sprintf("drv%dhub", id)
	l.hub = hub
	l.ip("netns", "add", hub)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", hub).Run() })
	l.ip("-n", hub, "link", "add", "br0", "type", "bridge")
	l.ip("-n", hub, "link", "set", "br0", "up")
	for i := 1; i <= hosts; i++ {
		ns := fmt.Sprintf("drv%dh%d", id, i)
		l.ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		l.ip("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", fmt.Sprintf("p%d", i), "netns", hub)
		l.ip("-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", l.prefix, i), "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		// Multicast discovery sends to 239.255.61.59: route the group out
		// of eth0, as a LAN's default route would.
		l.ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
		l.ip("-n", hub, "link", "set", fmt.Sprintf("p%d", i), "master", "br0")
		l.ip("-n", hub, "link", "set", fmt.Sprintf("p%d", i), "up")
		l.ns = append(l.ns, ns)
	}
	return l
}

// helper runs this test binary as a helper in host i's namespace.
type helper struct {
	cmd   *exec.Cmd
	lines chan string
	out   strings.Builder
	mu    sync.Mutex
}

func (l *lan) start(i int, env ...string) *helper {
	l.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns[i-1], exe, "-test.run", "^TestNetnsHelper$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "DROVE_NETNS_PREFIX="+l.prefix, fmt.Sprintf("DROVE_NETNS_HOST=%d", i), "TMPDIR="+l.t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	h := &helper{cmd: cmd, lines: make(chan string, 100)}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.mu.Lock()
			h.out.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "DROVE ") {
				h.lines <- strings.TrimPrefix(sc.Text(), "DROVE ")
			}
		}
		close(h.lines)
		_ = cmd.Wait()
	}()
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if l.t.Failed() {
			h.mu.Lock()
			l.t.Logf("helper %d output:\n%s", i, h.out.String())
			h.mu.Unlock()
		}
	})
	return h
}

func (h *helper) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		case <-timeout:
			t.Fatalf("no %q from helper in 60s", prefix)
		}
	}
}

// TestNetnsDiscoveryAndFailures: a client on host 3 discovers the nodes of
// hosts 1 and 2 by broadcast, then runs 1,000 jobs while host 1 fails:
//
//   - kill -9 of its node, reentrant jobs: all 1,000 finish, each once;
//   - the same, not reentrant: the jobs it held end Abandoned, the rest
//     Finished, each once;
//   - its link cut for 10 s: no job lost or ended twice.
func TestNetnsDiscoveryAndFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test skipped in -short mode")
	}
	for _, tc := range []struct {
		name      string
		reentrant bool
		fail      func(l *lan, node *helper)
	}{
		{"kill reentrant", true, func(l *lan, n *helper) { _ = n.cmd.Process.Kill() }},
		{"kill", false, func(l *lan, n *helper) { _ = n.cmd.Process.Kill() }},
		{"link cut", true, func(l *lan, n *helper) {
			l.ip("-n", l.hub, "link", "set", "p1", "down")
			time.Sleep(10 * time.Second)
			l.ip("-n", l.hub, "link", "set", "p1", "up")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLAN(t, 3)
			n1 := l.start(1, netnsRole+"=node")
			n2 := l.start(2, netnsRole+"=node")
			n1.expect(t, "READY")
			n2.expect(t, "READY")
			c := l.start(3, netnsRole+"=client", fmt.Sprintf("DROVE_NETNS_REENTRANT=%v", tc.reentrant))
			if found := c.expect(t, "FOUND"); found != "2" {
				t.Fatalf("client discovered %s nodes, want 2", found)
			}
			c.expect(t, "PROGRESS")
			tc.fail(l, n1)
			var res netnsResult
			if err := json.Unmarshal([]byte(c.expect(t, "RESULT")), &res); err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if res.Ended != 1000 || res.Twice != 0 || res.Down != 1 {
				t.Errorf("result %+v: want 1000 jobs ended, each once, one node down", res)
			}
			switch {
			case tc.reentrant && res.Finished != 1000:
				t.Errorf("%d finished, want 1000", res.Finished)
			// The killed node may also have finished a job per slot whose
			// result had not reached the client (a node's results go out
			// after the next job's start): at most twice its 2 slots.
			case !tc.reentrant && (res.Abandoned < 1 || res.Abandoned > 4 || res.Finished+res.Abandoned != 1000):
				t.Errorf("finished %d, abandoned %d: want only the jobs the killed node had started (at most 2 per slot of 2) abandoned, the rest finished", res.Finished, res.Abandoned)
			}
		})
	}
}

// TestNetnsMulticastDiscovery: nodes on hosts 1 and 2 listen on the
// multicast group, the node on host 3 only for broadcast; a client on host
// 4 with the multicast option finds exactly the first two (with broadcast it
// would find three, with multicast broken none).
func TestNetnsMulticastDiscovery(t *testing.T) {
	l := newLAN(t, 4)
	n1 := l.start(1, netnsRole+"=node", "DROVE_NETNS_MULTICAST=1")
	n2 := l.start(2, netnsRole+"=node", "DROVE_NETNS_MULTICAST=1")
	n3 := l.start(3, netnsRole+"=node")
	for _, n := range []*helper{n1, n2, n3} {
		n.expect(t, "READY")
	}
	c := l.start(4, netnsRole+"=discover", "DROVE_NETNS_MULTICAST=1")
	if found := c.expect(t, "FOUND"); found != "2" {
		t.Fatalf("client discovered %s nodes over multicast, want the 2 in the group", found)
	}
}

// TestNetnsLoopbackOnly: a node with neither a secret nor mutual TLS
// refuses a client on another host, with an error that says what to do; a
// TLS certificate without --tls-ca does not change that (it authenticates
// the node, not the client). With --insecure the same client is served.
func TestNetnsLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		refused bool
	}{
		{"plain", nil, true},
		{"server TLS only", []string{"DROVE_NETNS_TLS=server"}, true},
		{"server TLS only, insecure", []string{"DROVE_NETNS_TLS=server", "DROVE_NETNS_INSECURE=1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLAN(t, 2)
			n := l.start(1, append([]string{netnsRole + "=node", "DROVE_NETNS_NOSECRET=1"}, tc.env...)...)
			n.expect(t, "READY")
			p := l.start(2, append([]string{netnsRole + "=probe"}, tc.env...)...)
			got := p.expect(t, "PROBE")
			t.Log(got)
			if refused := strings.Contains(got, "loopback clients only"); refused != tc.refused || (!tc.refused && got != "<nil>") {
				t.Errorf("probe from another host: %s; want refused=%v", got, tc.refused)
			}
		})
	}
}

// serverOnlyTLS makes a CA and a node certificate in dir and returns the
// node's TLS configuration without client authentication (--tls-cert and
// --tls-key, no --tls-ca).
func serverOnlyTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	caCert, caKey, err := nodeauth.NewCA("netns CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := nodeauth.IssueCert(caCert, caKey, nodeauth.CertNode, "node", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	if err := os.WriteFile(cf, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := nodeauth.ServerTLS(cf, kf, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestNetns127011: a --host name that resolves to 127.0.1.1 (as Debian's
// /etc/hosts does for the machine's own name) gets the warning that other
// machines cannot reach the node. The name resolves there only inside a
// namespace whose /etc/hosts (ip netns exec mounts /etc/netns/NAME/hosts)
// says so.
func TestNetns127011(t *testing.T) {
	l := newLAN(t, 1)
	dir := filepath.Join("/etc/netns", l.ns[0])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n127.0.1.1 drove-debian-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := l.start(1, netnsRole+"=warn127", "DROVE_NETNS_HOSTNAME=drove-debian-host")
	if got := h.expect(t, "WARNED"); got != "true" {
		t.Errorf("--host drove-debian-host (127.0.1.1): warned %s, want true", got)
	}
}

type netnsResult struct {
	Finished, Abandoned, Ended, Twice, Down int
}

// TestNetnsHelper is the node or client inside a namespace; it does nothing
// in a normal test run.
func TestNetnsHelper(t *testing.T) {
	role := os.Getenv(netnsRole)
	if role == "" {
		t.Skip("helper for the network-namespace tests")
	}
	prefix, host := os.Getenv("DROVE_NETNS_PREFIX"), os.Getenv("DROVE_NETNS_HOST")
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch role {
	case "warn127":
		var logs strings.Builder
		n, err := node.New(node.Config{Hosts: []string{os.Getenv("DROVE_NETNS_HOSTNAME")}, Dir: t.TempDir(),
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("DROVE ADDR", n.Addr())
		fmt.Println("DROVE WARNED", strings.Contains(logs.String(), "127.0.1.1, which other machines cannot reach"))
	case "probe":
		var tc *tls.Config
		if os.Getenv("DROVE_NETNS_TLS") != "" {
			// A client with no certificate, trusting anything: what the
			// node lets it do is the question.
			tc = &tls.Config{InsecureSkipVerify: true}
		}
		_, err := nodeexec.Info(t.Context(), nodeexec.NewHTTPClient("", tc), prefix+"1:9701", tc)
		fmt.Println("DROVE PROBE", err)
	case "node":
		secret := "netns"
		if os.Getenv("DROVE_NETNS_NOSECRET") != "" {
			secret = ""
		}
		var tc *tls.Config
		if os.Getenv("DROVE_NETNS_TLS") == "server" {
			tc = serverOnlyTLS(t, t.TempDir())
		}
		n, err := node.New(node.Config{
			Hosts: []string{prefix + host}, Port: node.DefaultPort, Name: "h" + host, Dir: t.TempDir(),
			CPUs: 2, Secret: secret, Discovery: true, PingInterval: 100 * time.Millisecond, Logger: log,
			Multicast: os.Getenv("DROVE_NETNS_MULTICAST") != "", TLS: tc, Insecure: os.Getenv("DROVE_NETNS_INSECURE") != "",
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("DROVE READY")
		if err := n.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	case "discover":
		c, err := NewCluster(t.Context(), Program("/bin/true"), WithNodes(prefix+"*"),
			WithSecret("netns"), WithMulticast(os.Getenv("DROVE_NETNS_MULTICAST") != ""))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("DROVE FOUND", len(c.Stats().Nodes))
		_ = c.Close(t.Context())
	case "client":
		var mu sync.Mutex
		ended := map[int64]int{}
		down := 0
		s := sched.New(sched.Config{Reentrant: os.Getenv("DROVE_NETNS_REENTRANT") == "true",
			OnTask: func(ev sched.TaskEvent) {
				if ev.State.Final() {
					mu.Lock()
					ended[ev.Task.ID]++
					mu.Unlock()
				}
			},
			OnNode: func(ev sched.NodeEvent) {
				if ev.Kind == sched.NodeDown {
					mu.Lock()
					down++
					mu.Unlock()
				}
			},
		})
		r, err := startRemoteNodes(t.Context(), s, remoteConfig{
			Nodes: []string{prefix + "*"}, Secret: "netns", Func: "test.sleep",
			Heartbeat: 100 * time.Millisecond, Misses: 5, Retry: 300 * time.Millisecond, Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		fmt.Println("DROVE FOUND", len(s.Stats().Nodes))
		in, err := gobEncode(3 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var ts []*sched.Task
		for i := range 1000 {
			tk := &sched.Task{ID: int64(i + 1), Input: in}
			if err := s.Submit(t.Context(), tk); err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tk)
		}
		for !ts[150].State().Final() {
			time.Sleep(time.Millisecond)
		}
		fmt.Println("DROVE PROGRESS")
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(ctx)
		var res netnsResult
		mu.Lock()
		for _, tk := range ts {
			switch tk.State() {
			case sched.Finished:
				res.Finished++
			case sched.Abandoned:
				res.Abandoned++
			}
		}
		for _, n := range ended {
			res.Ended++
			if n > 1 {
				res.Twice++
			}
		}
		res.Down = down
		mu.Unlock()
		b, _ := json.Marshal(res)
		fmt.Println("DROVE RESULT", string(b))
	}
}
