package parallel

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

func broadcastSSH(s *sshtest.Server) sshconn.Config {
	return sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true, ConnectTimeout: 3 * time.Second}
}

func aliases(names ...string) []hostset.Host {
	hs := make([]hostset.Host, len(names))
	for i, n := range names {
		hs[i] = hostset.Host{Host: n}
	}
	return hs
}

// remoteProcs counts the processes of the test user on host whose command
// line holds marker.
func remoteProcs(t *testing.T, s *sshtest.Server, host, marker string) int {
	t.Helper()
	p, err := sshconn.NewPool(broadcastSSH(s))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out bytes.Buffer
	pat := sshconn.Quote("[" + marker[:1] + "]" + marker[1:])
	if _, err := p.Run(context.Background(), host, &sshconn.Cmd{Command: "pgrep -c -u " + sshtest.User + " -f " + pat + " || true", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("pgrep: %q", out.String())
	}
	return n
}

// TestBroadcastFanout: the commands of a fan-out of N never overlap more
// than N at a time, as the timestamps they print when they start and end
// show.
func TestBroadcastFanout(t *testing.T) { forModes(t, testBroadcastFanout) }

func testBroadcastFanout(t *testing.T, m mode) {
	s := sshtest.Start(t, sshtest.WithHosts(3))
	for _, fanout := range []int{1, 2} {
		t.Run(fmt.Sprint(fanout), func(t *testing.T) {
			results, err := Broadcast(t.Context(), BroadcastConfig{
				Agent:   m.launcher(t),
				Command: "date +%s%N; sleep 0.3; date +%s%N",
				Hosts:   aliases(s.Aliases...),
				SSH:     broadcastSSH(s),
				Fanout:  fanout,
			})
			if err != nil {
				t.Fatal(err)
			}
			type event struct {
				at    int64
				delta int // +1 start, -1 end
			}
			var events []event
			for _, r := range results {
				f := strings.Fields(string(r.Stdout))
				if r.Code != 0 || len(f) != 2 {
					t.Fatalf("%s: code %d %s, stdout %q", r.Name, r.Code, r.Failure, r.Stdout)
				}
				start, _ := strconv.ParseInt(f[0], 10, 64)
				end, _ := strconv.ParseInt(f[1], 10, 64)
				events = append(events, event{start, +1}, event{end, -1})
			}
			// Ends before starts at the same instant: touching is not overlapping.
			slices.SortFunc(events, func(a, b event) int {
				if a.at != b.at {
					return int(a.at - b.at)
				}
				return a.delta - b.delta
			})
			running, most := 0, 0
			for _, e := range events {
				running += e.delta
				most = max(most, running)
			}
			if most > fanout {
				t.Errorf("%d commands ran at once with a fan-out of %d", most, fanout)
			}
		})
	}
}

// TestBroadcastTimeout: the timeout kills the command's whole process
// group on the host, a child that ignores SIGTERM included.
func TestBroadcastTimeout(t *testing.T) { forModes(t, testBroadcastTimeout) }

func testBroadcastTimeout(t *testing.T, m mode) {
	s := sshtest.Start(t)
	marker := fmt.Sprintf("drvbcastto%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	results, err := Broadcast(ctx, BroadcastConfig{
		Agent:   m.launcher(t),
		Command: fmt.Sprintf(`sh -c 'trap "" TERM; sleep 300; : %s' & sleep 301; : %s`, marker, marker),
		Hosts:   aliases("host0"),
		SSH:     broadcastSSH(s),
		Fanout:  1,
		Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Code != 255 || r.Failure != "Timed out, Killed by signal 9" {
		t.Errorf("result %+v", r)
	}
	if n := remoteProcs(t, s, "host0", marker); n != 0 {
		t.Errorf("%d processes left on the host after the timeout", n)
	}
}

// TestBroadcastResults: every way a host can end, with live output
// prefixed by the host's pssh name and kept in the results.
func TestBroadcastResults(t *testing.T) { forModes(t, testBroadcastResults) }

func testBroadcastResults(t *testing.T, m mode) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	var out, errb, calls syncbuf.Buffer
	results, err := Broadcast(t.Context(), BroadcastConfig{
		Agent:   m.launcher(t),
		Command: `echo "$PSSH_HOST"; echo warn >&2; printf part; case "$SSH_CONNECTION" in *" 127.0.0.3 "*) kill -TERM $$;; esac; exit 3`,
		Hosts:   []hostset.Host{{Host: "host0"}, {Host: "down"}, {Host: "host1"}, {Host: "host0"}},
		SSH:     broadcastSSH(s),
		Fanout:  4,
		Live:    true,
		Stdout:  &out,
		Stderr:  &errb,
		OnDone:  func(r HostResult) { fmt.Fprintf(&calls, "%s\n", r.Name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, failure string
		code          int
		stdout        string
	}{
		{"host0", "Exited with error code 3", 3, "host0\npart"},
		{"down", "remote: down (" + s.DownAddr + "): dial tcp " + s.DownAddr + ": connect: connection refused", 255, ""},
		{"host1", "Killed by signal TERM", 255, "host1\npart"},
		{"host0.1", "Exited with error code 3", 3, "host0\npart"},
	}
	for i, w := range want {
		r := results[i]
		if r.Name != w.name || r.Failure != w.failure || r.Code != w.code || string(r.Stdout) != w.stdout {
			t.Errorf("host %d: %+v, want %+v", i, r, w)
		}
		if w.code != 255 || w.stdout != "" {
			if string(r.Stderr) != "warn\n" {
				t.Errorf("%s: stderr %q", r.Name, r.Stderr)
			}
			for _, line := range []string{w.name + ": " + w.stdout[:strings.IndexByte(w.stdout, '\n')] + "\n", w.name + ": part\n"} {
				if !strings.Contains(out.String(), line) {
					t.Errorf("live stdout lacks %q: %q", line, out.String())
				}
			}
			if !strings.Contains(errb.String(), w.name+": warn\n") {
				t.Errorf("live stderr lacks %s's line: %q", w.name, errb.String())
			}
		}
	}
	got := strings.Fields(calls.String())
	slices.Sort(got)
	if !slices.Equal(got, []string{"down", "host0", "host0.1", "host1"}) {
		t.Errorf("OnDone called for %q", got)
	}
}

// TestBroadcastHostLost: a host whose connection breaks under the command
// fails with 255 and the SSH layer's error; the command is not run again,
// and Broadcast ends without waiting for the host to be redialled in vain.
func TestBroadcastHostLost(t *testing.T) { forModes(t, testBroadcastHostLost) }

func testBroadcastHostLost(t *testing.T, m mode) {
	s := sshtest.Start(t)
	marker := fmt.Sprintf("drvbcastlost%d", time.Now().UnixNano())
	var out syncbuf.Buffer
	go func() {
		for !strings.Contains(out.String(), "started") {
			time.Sleep(20 * time.Millisecond)
		}
		s.Stop()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	results, err := Broadcast(ctx, BroadcastConfig{
		Agent:   m.launcher(t),
		Command: "echo started; sleep 30; : " + marker,
		Hosts:   aliases("host0"),
		SSH:     broadcastSSH(s),
		Fanout:  1,
		Live:    true,
		Stdout:  &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.Code != 255 || !strings.HasPrefix(r.Failure, "remote: host0") || strings.Contains(r.Failure, "node lost") {
		t.Errorf("result %+v", r)
	}
	if n := strings.Count(out.String(), "started"); n != 1 {
		t.Errorf("the command started %d times: %q", n, out.String())
	}
	// The fleet would redial the stopped host for about half a minute.
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Broadcast took %v: it waited for the redials", took)
	}
}
