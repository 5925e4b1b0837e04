// Package discovery finds drove nodes on the local network with UDP
// broadcast (or IPv4 multicast): a client looking for nodes sends a ping to
// the nodes' port, and every node that hears it answers with its name and
// address; a node that starts announces itself on the clients' port, so
// running clients pick it up.
//
// Discovery is scoped by the cluster secret: every datagram carries an
// HMAC-SHA256 of its contents under the secret, and datagrams of another
// cluster (another secret) are dropped, so Dev and QA clusters on one LAN
// never join each other (dispy #157). Without a secret anyone on the LAN
// can discover the node, which is what --insecure means anyway.
//
// Broadcast and link-local multicast stay in the local subnet: list nodes
// of other subnets by address.
package discovery

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ports: nodes listen for pings on the node port; clients listen for node
// announcements on the client port (dispy's 9701 and 9700).
const (
	NodePort   = 9701
	ClientPort = 9700
)

// MulticastGroup is the IPv4 group used instead of broadcast with the
// multicast option (dispy's group).
var MulticastGroup = net.IPv4(239, 255, 61, 59)

// MaxDatagram bounds a discovery datagram.
const MaxDatagram = 1400

// ErrMessage is wrapped by every error about a datagram that is not a
// valid discovery message of this cluster.
var ErrMessage = errors.New("drove: invalid discovery message")

// Kinds of message.
const (
	KindPing     = "ping"     // client → nodes
	KindPong     = "pong"     // node → client
	KindAnnounce = "announce" // starting node → clients
)

// Message is a discovery datagram.
type Message struct {
	V     int    `json:"v"`
	Kind  string `json:"kind"`
	Nonce string `json:"nonce"`
	TS    int64  `json:"ts"`
	Name  string `json:"name,omitempty"`
	Addr  string `json:"addr,omitempty"` // announced host (ext-host); "" means the sender's IP
	Port  int    `json:"port,omitempty"` // the node's TCP port
	MAC   string `json:"mac"`
}

func (m *Message) sum(secret string) string {
	h := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(h, "drove-discovery-v1\n%s\n%s\n%d\n%s\n%s\n%d", m.Kind, m.Nonce, m.TS, m.Name, m.Addr, m.Port)
	return hex.EncodeToString(h.Sum(nil))
}

// Encode signs m with secret and encodes it.
func Encode(m *Message, secret string) []byte {
	m.V = 1
	if m.Nonce == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		m.Nonce = hex.EncodeToString(b[:])
	}
	if m.TS == 0 {
		m.TS = time.Now().Unix()
	}
	m.MAC = m.sum(secret)
	b, _ := json.Marshal(m)
	return b
}

// Decode parses and verifies a datagram.
func Decode(b []byte, secret string) (*Message, error) {
	if len(b) > MaxDatagram {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	if m.V != 1 {
		return nil, fmt.Errorf("%w: version %d", ErrMessage, m.V)
	}
	switch m.Kind {
	case KindPing, KindPong, KindAnnounce:
	default:
		return nil, fmt.Errorf("%w: kind %q", ErrMessage, m.Kind)
	}
	if m.Port < 0 || m.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrMessage, m.Port)
	}
	if !hmac.Equal([]byte(m.MAC), []byte(m.sum(secret))) {
		return nil, fmt.Errorf("%w: not of this cluster (another secret)", ErrMessage)
	}
	if d := time.Since(time.Unix(m.TS, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return nil, fmt.Errorf("%w: timestamp off by %v", ErrMessage, d)
	}
	return &m, nil
}

// Found is a node that answered.
type Found struct {
	Name string
	Addr string // host:port of its API
}

// listenUDP binds a UDP socket that shares its port (several clients on one
// machine each get the announcements) and may send broadcasts.
func listenUDP(ctx context.Context, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Targets returns where to send to reach every node of the LAN on port:
// the broadcast address of each IPv4 interface that is up (and
// 255.255.255.255), or the multicast group.
func Targets(port int, multicast bool) []*net.UDPAddr {
	if multicast {
		return []*net.UDPAddr{{IP: MulticastGroup, Port: port}}
	}
	out := []*net.UDPAddr{{IP: net.IPv4bcast, Port: port}}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagBroadcast == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ip4, mask := ipn.IP.To4(), ipn.Mask
			if len(mask) == net.IPv6len {
				mask = mask[12:]
			}
			b := make(net.IP, 4)
			for i := range b {
				b[i] = ip4[i] | ^mask[i]
			}
			out = append(out, &net.UDPAddr{IP: b, Port: port})
		}
	}
	return out
}

// Match reports whether a node's address matches a pattern: "*" matches
// everything, otherwise shell-style globbing on the IP or host
// ("192.168.1.*").
func Match(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	ok, err := path.Match(pattern, host)
	return err == nil && ok
}

// NodeAddr adds the node port to a node address given without one.
func NodeAddr(s string) string { return HostPort(s, NodePort) }

// HostPort adds port to an address given without one ("host", "[::1]").
func HostPort(s string, port int) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(port))
}

// IsPattern reports whether a node entry asks for discovery ("*",
// "192.168.1.*") rather than naming one node.
func IsPattern(s string) bool { return strings.Contains(s, "*") }

// Pattern is a node entry that asks for discovery: a shell-style glob on
// the node's host ("*", "192.168.1.*") and, if the entry names one, the
// port its nodes serve on ("*:29701"). Nodes hear pings on their own port,
// so the port is where pings go.
type Pattern struct {
	Host string
	Port int // 0: none named; pings go to NodePort
}

// ParsePattern parses a node pattern: "*", "192.168.1.*", "*:29701"; a
// port "*" is as no port.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{Host: s}
	if h, port, err := net.SplitHostPort(s); err == nil && port == "*" {
		// Any port: as if none were named.
		p.Host = h
	} else if err == nil {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return Pattern{}, fmt.Errorf("drove: node pattern %q: the port must be a number from 1 to 65535", s)
		}
		p = Pattern{Host: h, Port: n}
	}
	if _, err := path.Match(p.Host, ""); err != nil {
		return Pattern{}, fmt.Errorf("drove: node pattern %q: %w", s, err)
	}
	return p, nil
}

// PingPort is the port pings for p's nodes go to.
func (p Pattern) PingPort() int {
	if p.Port == 0 {
		return NodePort
	}
	return p.Port
}

// String is the pattern as written.
func (p Pattern) String() string {
	if p.Port == 0 {
		return p.Host
	}
	return net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// Match reports whether a node's address (host:port) matches p: its host
// matches the glob and, if p names a port, the port is that one. A
// pattern without a port takes a node that announces itself on any port.
func (p Pattern) Match(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	if p.Port != 0 && port != strconv.Itoa(p.Port) {
		return false
	}
	return Match(p.Host, host)
}

// ClientConfig configures Discover and Watch.
type ClientConfig struct {
	Secret string
	// Targets are where pings go; default Targets(port, Multicast) for
	// each of Ports.
	Targets []*net.UDPAddr
	// Ports are the ports pings go to without Targets; default NodePort.
	Ports     []int
	Multicast bool
	// Wait is how long Discover collects answers; default 1s.
	Wait time.Duration
	// ListenAddr is where Watch listens; default ":9700".
	ListenAddr string
	Logger     *slog.Logger
}

func pongAddr(m *Message, from *net.UDPAddr) string {
	host := m.Addr
	if host == "" {
		host = from.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(m.Port))
}

// PingTargets returns where Discover sends its pings.
func (cfg ClientConfig) PingTargets() []*net.UDPAddr {
	if len(cfg.Targets) > 0 {
		return cfg.Targets
	}
	ports := cfg.Ports
	if len(ports) == 0 {
		ports = []int{NodePort}
	}
	var out []*net.UDPAddr
	for _, p := range ports {
		out = append(out, Targets(p, cfg.Multicast)...)
	}
	return out
}

// WatchAddr returns where Watch listens.
func (cfg ClientConfig) WatchAddr() string {
	if cfg.ListenAddr == "" {
		return ":" + strconv.Itoa(ClientPort)
	}
	return cfg.ListenAddr
}

// Discover pings the nodes of the LAN and returns those that answered
// within cfg.Wait (or until ctx ends).
func Discover(ctx context.Context, cfg ClientConfig) ([]Found, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = time.Second
	}
	targets := cfg.PingTargets()
	conn, err := listenUDP(ctx, ":0")
	if err != nil {
		return nil, fmt.Errorf("drove: discovery: %w", err)
	}
	defer conn.Close()
	ping := &Message{Kind: KindPing}
	b := Encode(ping, cfg.Secret)
	sent := 0
	var lastErr error
	for _, t := range targets {
		if _, err := conn.WriteToUDP(b, t); err != nil {
			lastErr = err
			continue
		}
		sent++
	}
	if sent == 0 {
		return nil, fmt.Errorf("drove: discovery: no usable network interface to broadcast on (list nodes by address instead): %w", lastErr)
	}
	deadline := time.Now().Add(cfg.Wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	seen := map[string]bool{}
	var found []Found
	buf := make([]byte, MaxDatagram+1)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return found, nil
			}
			return found, err
		}
		m, err := Decode(buf[:n], cfg.Secret)
		if err != nil || m.Kind != KindPong || m.Nonce != ping.Nonce {
			continue
		}
		addr := pongAddr(m, from)
		if !seen[addr] {
			seen[addr] = true
			found = append(found, Found{Name: m.Name, Addr: addr})
		}
	}
}

// Watch listens for nodes announcing themselves as they start and calls fn
// for each, until ctx ends.
func Watch(ctx context.Context, cfg ClientConfig, fn func(Found)) error {
	conn, err := listenUDP(ctx, cfg.WatchAddr())
	if err != nil {
		return fmt.Errorf("drove: discovery: %w", err)
	}
	if cfg.Multicast {
		joinGroup(conn)
	}
	defer conn.Close()
	// Closing the socket ends the read below when ctx ends; nothing waits
	// for ctx once Watch returns.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	buf := make([]byte, MaxDatagram+1)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		m, err := Decode(buf[:n], cfg.Secret)
		if err != nil || m.Kind != KindAnnounce {
			continue
		}
		fn(Found{Name: m.Name, Addr: pongAddr(m, from)})
	}
}

// joinGroup joins the multicast group on every multicast interface.
func joinGroup(conn *net.UDPConn) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		mreq := &syscall.IPMreq{}
		copy(mreq.Multiaddr[:], MulticastGroup.To4())
		_ = syscall.SetsockoptIPMreq(int(fd), syscall.IPPROTO_IP, syscall.IP_ADD_MEMBERSHIP, mreq)
	})
}

// Responder is the node side: it answers pings and announces the node.
type Responder struct {
	conn   *net.UDPConn
	secret string
	name   string
	host   string
	hosts  []net.IP
	port   int
	log    *slog.Logger
}

// NodeConfig configures a Responder.
type NodeConfig struct {
	// ListenAddr is where pings are heard; default ":<Port>".
	ListenAddr string
	Secret     string
	Name       string
	// Host is the address announced (--ext-host); "" lets clients use the
	// address the answer came from, or one of Hosts.
	Host string
	// Hosts are the addresses the node's TCP listeners are bound to; none
	// means every interface. The UDP socket still listens on every
	// interface (a socket bound to one address hears no broadcast), so
	// answers and announcements name the listening address on the
	// peer's subnet rather than whatever source address the kernel picks.
	Hosts     []net.IP
	Port      int // the node's TCP port
	Multicast bool
	Logger    *slog.Logger
}

// Listen binds the node's discovery socket.
func Listen(ctx context.Context, cfg NodeConfig) (*Responder, error) {
	addr := cfg.ListenAddr
	if addr == "" {
		addr = ":" + strconv.Itoa(cfg.Port)
	}
	conn, err := listenUDP(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("drove: discovery: %w", err)
	}
	if cfg.Multicast {
		joinGroup(conn)
	}
	r := &Responder{conn: conn, secret: cfg.Secret, name: cfg.Name, host: cfg.Host, hosts: cfg.Hosts, port: cfg.Port, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Addr is the socket's address.
func (r *Responder) Addr() net.Addr { return r.conn.LocalAddr() }

// Announce tells clients listening on targets that the node is up.
func (r *Responder) Announce(targets []*net.UDPAddr) {
	for _, t := range targets {
		b := Encode(&Message{Kind: KindAnnounce, Name: r.name, Addr: r.addrFor(t.IP), Port: r.port}, r.secret)
		if _, err := r.conn.WriteToUDP(b, t); err != nil {
			r.log.Debug("announcing", "to", t, "err", err)
		}
	}
}

// addrFor returns the address to announce to peer: the --ext-host if set;
// else, for a node bound to some addresses, the one on peer's subnet (or
// the first); else "" (every interface: the datagram's source will do).
func (r *Responder) addrFor(peer net.IP) string {
	if r.host != "" {
		return r.host
	}
	if len(r.hosts) == 0 {
		return ""
	}
	if h := sameSubnet(r.hosts, peer, interfaceNets()); h != nil {
		return h.String()
	}
	return r.hosts[0].String()
}

// sameSubnet returns the first of hosts that sits in one of nets together
// with peer, or nil.
func sameSubnet(hosts []net.IP, peer net.IP, nets []*net.IPNet) net.IP {
	for _, h := range hosts {
		for _, n := range nets {
			if n.Contains(h) && n.Contains(peer) {
				return h
			}
		}
	}
	return nil
}

// interfaceNets lists the subnets of this machine's interface addresses.
func interfaceNets() []*net.IPNet {
	addrs, _ := net.InterfaceAddrs()
	var out []*net.IPNet
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n)
		}
	}
	return out
}

// Close closes the socket; Serve, if running, returns.
func (r *Responder) Close() error { return r.conn.Close() }

// Serve answers pings until ctx ends.
func (r *Responder) Serve(ctx context.Context) error {
	// Closing the socket ends the read below when ctx ends; nothing waits
	// for ctx once Serve returns.
	defer context.AfterFunc(ctx, func() { r.conn.Close() })()
	buf := make([]byte, MaxDatagram+1)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		m, err := Decode(buf[:n], r.secret)
		if err != nil {
			r.log.Debug("discovery datagram dropped", "from", from, "err", err)
			continue
		}
		if m.Kind != KindPing {
			continue
		}
		pong := Encode(&Message{Kind: KindPong, Nonce: m.Nonce, Name: r.name, Addr: r.addrFor(from.IP), Port: r.port}, r.secret)
		if _, err := r.conn.WriteToUDP(pong, from); err != nil {
			r.log.Debug("answering ping", "to", from, "err", err)
		}
	}
}
