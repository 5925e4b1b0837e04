package discovery

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestPingPong(t *testing.T) {
	ctx := t.Context()
	r, err := Listen(ctx, NodeConfig{ListenAddr: "127.0.0.1:0", Secret: "s", Name: "n1", Port: 9999})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(ctx)
	target := []*net.UDPAddr{r.Addr().(*net.UDPAddr)}
	found, err := Discover(ctx, ClientConfig{Secret: "s", Targets: target, Wait: 300 * time.Millisecond})
	if err != nil || len(found) != 1 || found[0].Name != "n1" || found[0].Addr != "127.0.0.1:9999" {
		t.Fatalf("%v %v", found, err)
	}
	// Another cluster's client finds nothing: the node drops its ping.
	found, err = Discover(ctx, ClientConfig{Secret: "other", Targets: target, Wait: 200 * time.Millisecond})
	if err != nil || len(found) != 0 {
		t.Fatalf("other cluster found %v %v", found, err)
	}
}

func TestAnnounce(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan Found, 4)
	l, err := listenUDP(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	go Watch(ctx, ClientConfig{Secret: "s", ListenAddr: addr}, func(f Found) { got <- f })
	time.Sleep(50 * time.Millisecond)
	r, err := Listen(ctx, NodeConfig{ListenAddr: "127.0.0.1:0", Secret: "s", Name: "n2", Host: "10.9.8.7", Port: 9701})
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := net.ResolveUDPAddr("udp4", addr)
	r.Announce([]*net.UDPAddr{ua})
	select {
	case f := <-got:
		if f.Name != "n2" || f.Addr != "10.9.8.7:9701" {
			t.Errorf("announced %+v", f)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no announcement")
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, h string
		ok   bool
	}{{"*", "10.0.0.1", true}, {"192.168.1.*", "192.168.1.20", true}, {"192.168.1.*", "192.168.2.20", false}, {"[", "x", false}} {
		if Match(c.p, c.h) != c.ok {
			t.Errorf("Match(%q, %q) != %v", c.p, c.h, c.ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(&Message{Kind: KindPing}, "s"))
	f.Add(Encode(&Message{Kind: KindPong, Name: "n", Port: 1}, "s"))
	f.Add([]byte(`{"v":1,"kind":"pong","port":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b, "s")
		if err != nil {
			if !errors.Is(err, ErrMessage) {
				t.Fatalf("error not wrapping ErrMessage: %v", err)
			}
			return
		}
		if m.Port < 0 || m.Port > 65535 {
			t.Fatalf("accepted port %d", m.Port)
		}
	})
}

// TestAddrFor: a node bound to some addresses names the one on the
// peer's subnet, not the source address the kernel picked for the answer.
func TestAddrFor(t *testing.T) {
	_, lan, _ := net.ParseCIDR("192.168.1.0/24")
	_, lab, _ := net.ParseCIDR("10.0.0.0/8")
	nets := []*net.IPNet{lan, lab}
	hosts := []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("192.168.1.7")}
	for _, tc := range []struct {
		peer string
		want string
	}{
		{"192.168.1.200", "192.168.1.7"},
		{"10.9.9.9", "10.0.0.5"},
		{"172.16.0.1", ""},
		{"192.168.1.255", "192.168.1.7"}, // the subnet's broadcast address
	} {
		got := sameSubnet(hosts, net.ParseIP(tc.peer), nets)
		if (got == nil && tc.want != "") || (got != nil && got.String() != tc.want) {
			t.Errorf("peer %s: %v, want %q", tc.peer, got, tc.want)
		}
	}
	for _, tc := range []struct {
		r    Responder
		want string
	}{
		{Responder{host: "nat.example", hosts: hosts}, "nat.example"},
		{Responder{}, ""},
		{Responder{hosts: []net.IP{net.ParseIP("127.0.0.2")}}, "127.0.0.2"},
		{Responder{hosts: []net.IP{net.ParseIP("203.0.113.9")}}, "203.0.113.9"}, // no subnet: the first
	} {
		if got := tc.r.addrFor(net.ParseIP("127.0.0.1")); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestServeLeavesNoGoroutine: Serve ended by Close, with its context still
// live, leaves nothing behind waiting for that context.
func TestServeLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background() // never ends
	r, err := Listen(ctx, NodeConfig{ListenAddr: "127.0.0.1:0", Secret: "s", Name: "n", Port: 9999})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx) }()
	r.Close()
	if err := <-served; err == nil {
		t.Error("Serve on a closed socket returned no error")
	}
	goleak.VerifyNone(t)
}
