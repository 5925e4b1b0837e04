package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// A node with neither a cluster secret nor mutual TLS serves only clients
// of its own user on its own machine: loopback alone is no boundary
// between the users of a machine. The user of a loopback TCP client is
// the owner of the client's socket, which the kernel lists in
// /proc/net/tcp and /proc/net/tcp6. That needs nothing from the client
// (unlike a per-node secret file it would have to find and read), cannot
// be forged by it, and keeps the one TCP port (SO_PEERCRED would need a
// Unix socket). Where /proc/net is missing (other systems), the client's
// user cannot be told and such a node refuses every client: give it a
// secret, or --insecure.

// errUnknownPeer is wrapped when no socket matches the connection.
var errUnknownPeer = errors.New("no such connection in /proc/net/tcp")

// connPeerKey keys a connection's *connPeer in its context.
type connPeerKey struct{}

// connPeer caches the user of a connection's client: the socket's owner
// cannot change while the connection lasts.
type connPeer struct {
	once sync.Once
	uid  int
	err  error
}

// connContext gives each connection its connPeer (http.Server.ConnContext).
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connPeerKey{}, &connPeer{})
}

// peerUID returns the uid of the local user whose socket sent r.
func peerUID(r *http.Request) (int, error) {
	p, ok := r.Context().Value(connPeerKey{}).(*connPeer)
	if !ok {
		p = &connPeer{}
	}
	p.once.Do(func() {
		local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
		client, err := netip.ParseAddrPort(r.RemoteAddr)
		if !ok || err != nil {
			p.err = fmt.Errorf("not a TCP connection: %s", r.RemoteAddr)
			return
		}
		p.uid, p.err = socketUID("/proc/net", client, local.AddrPort())
	})
	return p.uid, p.err
}

// socketUID returns the owner of the TCP socket bound to client and
// connected to server, from the kernel's tables in procNet.
func socketUID(procNet string, client, server netip.AddrPort) (int, error) {
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(filepath.Join(procNet, f))
		if errors.Is(err, os.ErrNotExist) && f == "tcp6" {
			continue // a kernel without IPv6
		}
		if err != nil {
			return 0, err
		}
		uid, err := findSocketUID(fh, client, server)
		fh.Close()
		if !errors.Is(err, errUnknownPeer) {
			return uid, err
		}
	}
	return 0, fmt.Errorf("%w: %s to %s", errUnknownPeer, client, server)
}

// findSocketUID scans one table of /proc/net/tcp's format for the socket
// bound to local and connected to remote and returns its uid column.
func findSocketUID(r io.Reader, local, remote netip.AddrPort) (int, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	sc := bufio.NewScanner(r)
	sc.Scan() // the header line
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		l, err1 := parseProcAddr(f[1])
		rem, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil || l != local || rem != remote {
			continue
		}
		uid, err := strconv.Atoi(f[7])
		if err != nil {
			return 0, fmt.Errorf("uid %q in /proc/net/tcp: %w", f[7], err)
		}
		return uid, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errUnknownPeer
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP as 32-bit
// words in hex, each in the machine's byte order, a colon, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// describeUID names a user for error messages: "uid 0 (root)".
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}
