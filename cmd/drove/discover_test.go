package main

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// freePort returns a port that is free on every interface for both TCP
// (a node's API) and UDP (where it hears discovery pings).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		u, err := net.ListenPacket("udp4", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = u.Close()
		return port
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// TestDemoDiscoverPort: a node serving on another port than 9701 is found
// by a pattern naming that port ("*:PORT"), by broadcast.
func TestDemoDiscoverPort(t *testing.T) {
	bin := buildDrove(t)
	port := strconv.Itoa(freePort(t))
	startNodeProc(t, bin, nil, "--port", port, "--no-discovery=false", "--name", "portnode", "--cpus", "2", "--secret", "disc-port")
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "3", "--nodes", "*:"+port, "--secret", "disc-port", "--discover-timeout", "60s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !regexp.MustCompile(`(?m)^\s+portnode \|\s+2 \|\s+3 \|`).MatchString(out) {
		t.Errorf("no stats line with the 3 jobs on portnode in\n%s", out)
	}
}

// TestDemoDiscoverNothing: discovery that finds no node fails after
// --discover-timeout, saying what it tried (the pattern, the port pinged).
func TestDemoDiscoverNothing(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	begin := time.Now()
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "1", "--nodes", "*:"+port, "--secret", "disc-nothing", "--discover-timeout", "2s")
	took := time.Since(begin)
	if code == 0 {
		t.Fatalf("exit 0 with no node\n%s\n%s", out, errs)
	}
	for _, want := range []string{"no drove node found within 2s", `"*:` + port + `"`, "255.255.255.255:" + port, "*:PORT"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	t.Logf("stderr:\n%s", errs)
	if took < 2*time.Second || took > time.Minute {
		t.Errorf("failed after %v, want about --discover-timeout 2s", took)
	}
}

// TestDemoUnreachableNode: a listed node that cannot be reached is warned
// about on stderr and has a row marked lost in the stats, while the jobs
// run on the others; long node names are printed whole, so that two
// nodes never look alike.
func TestDemoUnreachableNode(t *testing.T) {
	bin := buildDrove(t)
	const long = "a-node-with-a-rather-long-name-number-"
	a := startNodeProc(t, bin, nil, "--name", long+"1", "--cpus", "1")
	b := startNodeProc(t, bin, nil, "--name", long+"2", "--cpus", "1")
	// Nothing listens on port 1 of loopback.
	const dead = "127.0.0.1:1"
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "6", "--nodes", a.addr+","+b.addr+","+dead)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, dead) || !strings.Contains(errs, "WARN") {
		t.Errorf("no warning naming %s on stderr:\n%s", dead, errs)
	}
	t.Logf("stderr:\n%s\nstdout:\n%s", errs, out)
	for _, row := range []string{long + "1 |", long + "2 |", dead + " (lost) |"} {
		if !strings.Contains(out, " "+row) {
			t.Errorf("no stats row %q in\n%s", row, out)
		}
	}
}

// TestSchedulerDiscoverPort: drove scheduler --nodes '*:PORT' finds a node
// serving on PORT; one whose pattern finds nothing warns what it tried.
func TestSchedulerDiscoverPort(t *testing.T) {
	bin := buildDrove(t)
	env := []string{"DROVE_SECRET=sched-disc-port"}
	port := strconv.Itoa(freePort(t))
	startNodeProc(t, bin, env, "--port", port, "--no-discovery=false", "--name", "portnode", "--cpus", "1")
	p := nodetest.StartSchedulerProcess(t, bin, env, "--nodes", "*:"+port)
	waitNodes(t, p, 1, "portnode")

	empty := strconv.Itoa(freePort(t))
	q := nodetest.StartSchedulerProcess(t, bin, env, "--nodes", "*:"+empty)
	waitFor(t, 60*time.Second, func() bool {
		return strings.Contains(q.Stderr.String(), "no drove node found yet") && strings.Contains(q.Stderr.String(), ":"+empty)
	}, "a warning naming port %s", empty)
}
