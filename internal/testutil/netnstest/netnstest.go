// Package netnstest builds a small LAN of network namespaces for tests
// whose links must fail: hosts (namespaces) on one bridge, which lives in
// a namespace of its own (the hub), and optionally the test's own
// namespace on the bridge too. A host's link is cut by setting its bridge
// port down. It needs root (CAP_NET_ADMIN) and ip(8); without them a test
// skips, unless DROVE_REQUIRE_NETNS=1 (test.sh sets it as root), when it
// fails.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireEnv, set to 1, makes a test whose prerequisites are missing fail
// instead of skipping.
const RequireEnv = "DROVE_REQUIRE_NETNS"

// LAN is a bridge with hosts on it. Everything is removed at the end of
// the test.
type LAN struct {
	t      testing.TB
	prefix string // "10.78.N."
	hub    string
	ns     []string
}

// Skip skips t, or fails it when DROVE_REQUIRE_NETNS=1.
func Skip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires the network-namespace tests to run", why, RequireEnv)
	}
	t.Skip(why)
}

// New makes a LAN of hosts namespaces, host i (from 1) with address
// Addr(i) on its eth0 and loopback up.
func New(t testing.TB, hosts int) *LAN {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "network-namespace tests need root (CAP_NET_ADMIN) to create namespaces, veths and a bridge")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		Skip(t, "network-namespace tests need ip(8) (Debian package iproute2)")
	}
	id := os.Getpid() % 100000
	l := &LAN{t: t, prefix: fmt.Sprintf("10.78.%d.", id%250), hub: fmt.Sprintf("drt%dhub", id)}
	l.IP("netns", "add", l.hub)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.hub).Run() })
	l.IP("-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.IP("-n", l.hub, "link", "set", "br0", "up")
	for i := 1; i <= hosts; i++ {
		ns := fmt.Sprintf("drt%dh%d", id, i)
		l.IP("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		l.IP("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", l.port(i), "netns", l.hub)
		l.IP("-n", ns, "addr", "add", l.Addr(i)+"/24", "dev", "eth0")
		l.IP("-n", ns, "link", "set", "eth0", "up")
		l.IP("-n", ns, "link", "set", "lo", "up")
		l.plug(l.port(i))
		l.ns = append(l.ns, ns)
	}
	return l
}

func (l *LAN) port(i int) string { return fmt.Sprintf("p%d", i) }

func (l *LAN) plug(port string) {
	l.IP("-n", l.hub, "link", "set", port, "master", "br0")
	l.IP("-n", l.hub, "link", "set", port, "up")
}

// IP runs ip(8) with args, failing the test if it fails.
func (l *LAN) IP(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Addr returns host i's address; host 0 is the test's own namespace
// (see JoinHere).
func (l *LAN) Addr(i int) string {
	if i == 0 {
		return l.prefix + "254"
	}
	return fmt.Sprintf("%s%d", l.prefix, i)
}

// Namespace returns host i's network namespace.
func (l *LAN) Namespace(i int) string { return l.ns[i-1] }

// JoinHere puts the test's own network namespace on the LAN, with address
// Addr(0), so that processes started as usual reach the hosts. Its link
// goes with the hub at the end of the test.
func (l *LAN) JoinHere() {
	l.t.Helper()
	here := strings.TrimSuffix(l.hub, "hub") + "h0"
	l.IP("link", "add", "name", here, "type", "veth", "peer", "name", "p0", "netns", l.hub)
	l.t.Cleanup(func() { _ = exec.Command("ip", "link", "del", here).Run() })
	l.IP("addr", "add", l.Addr(0)+"/24", "dev", here)
	l.IP("link", "set", here, "up")
	l.plug("p0")
}

// SetLink sets host i's port on the bridge up or down: down cuts the host
// off, without its own interface noticing.
func (l *LAN) SetLink(i int, up bool) {
	l.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	l.IP("-n", l.hub, "link", "set", l.port(i), state)
}

// Wrap returns an executable that runs bin inside host i's namespace, for
// helpers that start a program by path.
func (l *LAN) Wrap(i int, bin string) string {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), fmt.Sprintf("in-h%d", i))
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.Namespace(i), bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		l.t.Fatal(err)
	}
	return path
}
