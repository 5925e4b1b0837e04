package discovery

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

func TestParsePattern(t *testing.T) {
	for _, c := range []struct {
		in       string
		want     Pattern
		ping     int
		bad      bool
		matches  []string
		excludes []string
	}{
		{in: "*", want: Pattern{Host: "*"}, ping: NodePort, matches: []string{"10.0.0.1:9701", "10.0.0.1:29701"}},
		{in: "*:29701", want: Pattern{Host: "*", Port: 29701}, ping: 29701, matches: []string{"10.0.0.1:29701"}, excludes: []string{"10.0.0.1:9701"}},
		{in: "192.168.1.*:*", want: Pattern{Host: "192.168.1.*"}, ping: NodePort, matches: []string{"192.168.1.5:1"}, excludes: []string{"192.168.2.5:1"}},
		{in: "192.168.1.*", want: Pattern{Host: "192.168.1.*"}, ping: NodePort, excludes: []string{"192.168.2.5:9701"}},
		{in: "*:0", bad: true},
		{in: "*:70000", bad: true},
		{in: "*:x", bad: true},
		{in: "[*", bad: true},
	} {
		p, err := ParsePattern(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParsePattern(%q) = %+v, want an error", c.in, p)
			}
			continue
		}
		if err != nil || p != c.want || p.PingPort() != c.ping || p.String() != c.in && c.in != "192.168.1.*:*" {
			t.Errorf("ParsePattern(%q) = %+v (ping %d, %q), %v; want %+v, ping %d", c.in, p, p.PingPort(), p.String(), err, c.want, c.ping)
		}
		for _, a := range c.matches {
			if !p.Match(a) {
				t.Errorf("%q does not match %s", c.in, a)
			}
		}
		for _, a := range c.excludes {
			if p.Match(a) {
				t.Errorf("%q matches %s", c.in, a)
			}
		}
	}
}

// TestSearchPort: a search pings the port its pattern names, adds the
// node that answers there, and stops pinging once the caller has a node.
func TestSearchPort(t *testing.T) {
	r, err := Listen(t.Context(), NodeConfig{ListenAddr: "127.0.0.1:0", Secret: "s", Name: "n1", Port: 29999})
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(t.Context())
	port := r.Addr().(*net.UDPAddr).Port
	var mu sync.Mutex
	var added []string
	s, err := NewSearch(ClientConfig{Secret: "s", Wait: 300 * time.Millisecond, ListenAddr: "127.0.0.1:0"}, []string{"*:29999"}, func(_ context.Context, addrs []string) {
		mu.Lock()
		added = append(added, addrs...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Config.Ports, []int{29999}) {
		t.Fatalf("ports %v, want [29999]", s.Config.Ports)
	}
	// The node hears pings on its own port: here, one picked for the test.
	s.Config.Targets = []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	if err := s.Round(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(added) != 1 || !strings.HasSuffix(added[0], ":29999") {
		t.Errorf("added %v, want the node's address on port 29999", added)
	}
}

// TestSearchWarns: a search that finds nothing keeps pinging and says,
// once, what it tried.
func TestSearchWarns(t *testing.T) {
	var logs syncbuf.Buffer
	s, err := NewSearch(ClientConfig{Secret: "s", Wait: 50 * time.Millisecond, ListenAddr: "127.0.0.1:0",
		Targets: []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1), Port: 9}}}, []string{"*:9"}, func(context.Context, []string) {
		t.Error("nothing should be added")
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Retry, s.WarnAfter = 100*time.Millisecond, 200*time.Millisecond
	s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "no drove node found yet") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning in 30s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if got := logs.String(); strings.Count(got, "no drove node found yet") != 1 || !strings.Contains(got, "127.0.0.1:"+strconv.Itoa(9)) || !strings.Contains(got, `\"*:9\"`) {
		t.Errorf("want one warning naming the pattern and the address pinged:\n%s", got)
	}
}
