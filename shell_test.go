package drove_test

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

func TestShellOnSSHHosts(t *testing.T) { forShellModes(t, testShellOnSSHHosts) }

func testShellOnSSHHosts(t *testing.T, m shellMode) {
	srv := sshtest.Start(t, sshtest.WithHosts(2))
	ssh := drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig})
	c := newCluster(t, drove.Shell(), ssh, m.opt, drove.WithNodes("ssh://"+srv.Aliases[0], "ssh://"+srv.Aliases[1]))
	tests := []struct {
		cmd    string
		code   int
		stdout string
	}{
		{"echo hello", 0, "hello\n"},
		{"exit 3", 3, ""},
		{`printf '%s|' "a b" '$(x)' "it's"`, 0, "a b|$(x)|it's|"},
		{"whoami", 0, srv.User + "\n"},
	}
	for _, tt := range tests {
		j := submit(t, c, tt.cmd)
		code, err := result(t, j)
		if err != nil || code != tt.code || string(j.Stdout()) != tt.stdout {
			t.Errorf("%q: exit %d, %v, stdout %q; want %d, %q", tt.cmd, code, err, j.Stdout(), tt.code, tt.stdout)
		}
	}
	// Many at once spread over both hosts (least loaded first).
	var jobs []*drove.Job[int]
	for range 8 {
		jobs = append(jobs, submit(t, c, "sleep 0.2"))
	}
	nodes := map[string]bool{}
	for _, j := range jobs {
		if code, err := result(t, j); err != nil || code != 0 {
			t.Errorf("sleep: %d %v", code, err)
		}
		nodes[j.Node()] = true
	}
	if len(nodes) != 2 {
		t.Errorf("jobs ran on %v, want both hosts", nodes)
	}
	st := c.Stats()
	if len(st.Nodes) != 2 || st.Nodes[0].CPUs < 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestShellErrors(t *testing.T) { forShellModes(t, testShellErrors) }

func testShellErrors(t *testing.T, m shellMode) {
	srv := sshtest.Start(t)
	_, err := drove.NewCluster(t.Context(), drove.Shell(),
		drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig}), m.opt, drove.WithNodes("ssh://down"))
	var ce *drove.SSHConnError
	if !errors.As(err, &ce) {
		t.Errorf("down host: %v, want an SSHConnError", err)
	}
	// known_hosts that does not list the host: refused, naming it.
	_, err = drove.NewCluster(t.Context(), drove.Shell(), drove.WithSSH(drove.SSHConfig{
		ConfigFile: "none", KnownHosts: []string{t.TempDir() + "/known_hosts"}, IdentityFiles: []string{srv.KeyPath},
	}), drove.WithNodes("ssh://"+srv.User+"@"+srv.Addrs[0]))
	var he *drove.SSHHostKeyError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), strings.Split(srv.Addrs[0], ":")[0]) {
		t.Errorf("unknown host key: %v, want an SSHHostKeyError naming the host", err)
	}
	if _, err := drove.NewCluster(t.Context(), drove.Shell(), drove.WithNodes("host-without-scheme")); err == nil {
		t.Error("a node without ssh:// was accepted")
	}
}

func TestShellLocal(t *testing.T) {
	c := newCluster(t, drove.Shell())
	j := submit(t, c, "echo local; exit 5")
	if code, err := result(t, j); err != nil || code != 5 || string(j.Stdout()) != "local\n" {
		t.Errorf("exit %d, %v, %q", code, err, j.Stdout())
	}
}

// TestShellSomeHostsDown: an unreachable host is reported through
// OnNodeStatus and left out; the others carry on.
func TestShellSomeHostsDown(t *testing.T) { forShellModes(t, testShellSomeHostsDown) }

func testShellSomeHostsDown(t *testing.T, m shellMode) {
	srv := sshtest.Start(t)
	var mu sync.Mutex
	var events []drove.NodeEvent
	c := newCluster(t, drove.Shell(), drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig}), m.opt,
		drove.WithNodes("ssh://down", "ssh://"+srv.Aliases[0]),
		drove.OnNodeStatus(func(ev drove.NodeEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}))
	j := submit(t, c, "echo up")
	if code, err := result(t, j); err != nil || code != 0 || j.Node() != srv.Aliases[0] {
		t.Errorf("exit %d, %v on %q", code, err, j.Node())
	}
	mu.Lock()
	defer mu.Unlock()
	var lost, up bool
	for _, ev := range events {
		var ce *drove.SSHConnError
		switch {
		case ev.Node == "down" && ev.Status == drove.NodeLost && errors.As(ev.Err, &ce):
			lost = true
		case ev.Node == srv.Aliases[0] && ev.Status == drove.NodeInitialized:
			up = true
		}
	}
	if !lost || !up {
		t.Errorf("node events %+v: want down lost (with an SSHConnError) and %s initialized", events, srv.Aliases[0])
	}
}

// TestShellCPUs: WithCPUs sets the slots of every SSH host.
func TestShellCPUs(t *testing.T) { forShellModes(t, testShellCPUs) }

func testShellCPUs(t *testing.T, m shellMode) {
	srv := sshtest.Start(t, sshtest.WithHosts(2))
	nproc := runtime.NumCPU()
	for _, tc := range []struct{ cpus, want int }{{3, 3}, {-1, max(1, nproc-1)}, {0, nproc}} {
		c := newCluster(t, drove.Shell(), drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig}), m.opt,
			drove.WithNodes("ssh://"+srv.Aliases[0], "ssh://"+srv.Aliases[1]), drove.WithCPUs(tc.cpus))
		st := c.Stats()
		if len(st.Nodes) != 2 {
			t.Fatalf("WithCPUs(%d): stats %+v", tc.cpus, st)
		}
		for _, n := range st.Nodes {
			if n.CPUs != tc.want {
				t.Errorf("WithCPUs(%d): %s has %d slots, want %d", tc.cpus, n.Name, n.CPUs, tc.want)
			}
		}
	}
}

// shellMode is how a Shell cluster's commands reach SSH hosts in a test:
// through agents (the default; its option changes nothing) or a session
// each (WithoutAgent).
type shellMode struct {
	name string
	opt  drove.Option
}

// forShellModes runs test once with agents and once WithoutAgent.
func forShellModes(t *testing.T, test func(t *testing.T, m shellMode)) {
	for _, m := range []shellMode{{"agent", drove.WithLogger(nil)}, {"session", drove.WithoutAgent()}} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// TestShellHostLostAndBack stops a host's sshd under a running command:
// the job ends Abandoned, nothing of it (nor the agent) is left running
// on the host; once sshd is back the host is dialled again and used.
func TestShellHostLostAndBack(t *testing.T) { forShellModes(t, testShellHostLostAndBack) }

func testShellHostLostAndBack(t *testing.T, m shellMode) {
	srv := sshtest.Start(t)
	c := newCluster(t, drove.Shell(), drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig}), m.opt,
		drove.WithNodes("ssh://"+srv.Aliases[0]))
	marker := fmt.Sprintf("drvshelllost%d", time.Now().UnixNano())
	j := submit(t, c, "sleep 300; : "+marker)
	deadline := time.Now().Add(30 * time.Second)
	for j.Status() != drove.Running || userProcs(t, marker) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job not running: %s", j.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Stop()
	if _, err := result(t, j); j.Status() != drove.Abandoned {
		t.Errorf("job on the lost host: %s, %v; want Abandoned", j.Status(), err)
	}
	waitNoUserProcs(t, marker)
	waitNoServing(t) // the agent, this test binary in the host's cache
	srv.Restart(t)
	back := submit(t, c, "echo back")
	if code, err := result(t, back); err != nil || code != 0 || string(back.Stdout()) != "back\n" || back.Node() != srv.Aliases[0] {
		t.Errorf("after sshd came back: exit %d, %v, stdout %q on %q", code, err, back.Stdout(), back.Node())
	}
}

// userProcs counts the test user's processes whose command line contains
// marker.
func userProcs(t *testing.T, marker string) int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-c", "-u", sshtest.User, "-f", marker).Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// waitNoUserProcs fails t unless the test user's processes with marker
// are all gone within a while.
func waitNoUserProcs(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for userProcs(t, marker) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the command left on the host", userProcs(t, marker))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
