package node

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// TestSocketUID finds the owner of real loopback connections, as the node
// sees them (its accepted side), over IPv4, IPv6 and IPv4 on a dual-stack
// listener (where the node's address is IPv4-mapped).
func TestSocketUID(t *testing.T) {
	for _, tc := range []struct{ name, listen, dial string }{
		{"IPv4", "127.0.0.1:0", "127.0.0.1"},
		{"IPv6", "[::1]:0", "::1"},
		{"IPv4 on dual stack", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("no %s here: %v", tc.name, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			client := s.RemoteAddr().(*net.TCPAddr).AddrPort()
			server := s.LocalAddr().(*net.TCPAddr).AddrPort()
			uid, err := socketUID("/proc/net", client, server)
			if err != nil || uid != os.Getuid() {
				t.Fatalf("socketUID(%s, %s) = %d, %v; want %d", client, server, uid, err, os.Getuid())
			}
			// A connection that does not exist has no owner.
			if _, err := socketUID("/proc/net", client, netip.AddrPortFrom(server.Addr(), 1)); err == nil {
				t.Error("found a socket connected to port 1")
			}
		})
	}
}
