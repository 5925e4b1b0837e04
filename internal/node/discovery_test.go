package node_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

// TestSchedulerHosts: a node started with SchedulerHosts tells them by
// unicast that it is up, at start and again every AnnounceInterval, with
// or without LAN discovery; the announcement names its listening address
// and port.
func TestSchedulerHosts(t *testing.T) {
	for _, disc := range []bool{false, true} {
		t.Run("discovery="+strconv.FormatBool(disc), func(t *testing.T) {
			sched, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer sched.Close()
			n := start(t, func(c *node.Config) {
				c.Hosts = []string{"127.0.0.2"}
				c.Secret = "k"
				c.Discovery = disc
				c.AnnounceTo = []*net.UDPAddr{} // no broadcast from a test
				c.SchedulerHosts = []string{sched.LocalAddr().String()}
				c.AnnounceInterval = 200 * time.Millisecond
			})
			buf := make([]byte, discovery.MaxDatagram)
			for i := range 2 {
				_ = sched.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, _, err := sched.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("announcement %d: %v", i+1, err)
				}
				m, err := discovery.Decode(buf[:k], "k")
				if err != nil {
					t.Fatal(err)
				}
				if m.Kind != discovery.KindAnnounce || net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)) != n.Addr().String() {
					t.Errorf("announcement %d: %+v, want one naming %s", i+1, m, n.Addr())
				}
			}
		})
	}
}

// TestDiscoveryAnswersListeningAddress: a node bound to 127.0.0.2 answers
// a ping sent to 127.0.0.1 with 127.0.0.2, where it listens, not with the
// source address the kernel gives the answer.
func TestDiscoveryAnswersListeningAddress(t *testing.T) {
	n := start(t, func(c *node.Config) {
		c.Hosts = []string{"127.0.0.2"}
		c.Secret = "k"
		c.Discovery = true
		c.AnnounceTo = []*net.UDPAddr{}
	})
	port := n.Addr().(*net.TCPAddr).Port
	found, err := discovery.Discover(t.Context(), discovery.ClientConfig{
		Secret: "k", Targets: []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: port}}, Wait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Addr != n.Addr().String() {
		t.Fatalf("found %+v, want the node at %s", found, n.Addr())
	}
}

// TestWarn127011: listening on 127.0.1.1 logs that other machines cannot
// reach the node; 127.0.0.1 does not. (A host name that resolves there is
// tested in a network namespace with its own /etc/hosts: TestNetns127011
// in the root package.)
func TestWarn127011(t *testing.T) {
	for _, tc := range []struct {
		host string
		warn bool
	}{{"127.0.1.1", true}, {"127.0.0.1", false}} {
		var logs syncbuf.Buffer
		n, err := node.New(node.Config{Hosts: []string{tc.host}, Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		cancel()
		<-done
		if got := strings.Contains(logs.String(), "127.0.1.1, which other machines cannot reach"); got != tc.warn {
			t.Errorf("--host %s: warned %v, want %v:\n%s", tc.host, got, tc.warn, logs.String())
		}
	}
}
