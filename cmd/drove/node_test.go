package main

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

// builtDrove is the drove binary the package's tests share: built by the
// first test that needs it, into dir, which TestMain makes and removes.
var builtDrove struct {
	dir  string
	once sync.Once
	path string
	err  error
}

// buildDrove returns the drove binary for tests that need real processes.
func buildDrove(t *testing.T) string {
	t.Helper()
	builtDrove.once.Do(func() {
		builtDrove.path, builtDrove.err = nodetest.BuildInto(builtDrove.dir)
	})
	if builtDrove.err != nil {
		t.Fatal(builtDrove.err)
	}
	return builtDrove.path
}

type nodeProc struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// startNodeProc runs "drove node" on a loopback port and waits until it
// serves.
func startNodeProc(t *testing.T, bin string, env []string, args ...string) *nodeProc {
	t.Helper()
	p := nodetest.StartProcess(t, bin, env, args...)
	return &nodeProc{cmd: p.Cmd, addr: p.Addr, done: p.Done}
}

func demoComputation(t *testing.T) *nodeexec.Computation {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := nodeexec.HashFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return &nodeexec.Computation{Func: "drove.demo", Fingerprint: registry.Fingerprint(), Executable: f, Grace: 200 * time.Millisecond}
}

func addNode(t *testing.T, s *sched.Scheduler, cfg nodeexec.Config) {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	cfg.ClientID = "cmdtest"
	ex, err := nodeexec.Dial(t.Context(), cfg, demoComputation(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddNode(ex.Name(), ex.Slots(), ex); err != nil {
		t.Fatal(err)
	}
}

func demoInput(t *testing.T, n int) []byte {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(DemoArgs{N: n, Unit: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestNodeProcesses runs the demo computation on two real drove node
// processes, then kills one with SIGKILL during 1,000 reentrant jobs: all
// finish, each exactly once, on the survivor.
func TestNodeProcesses(t *testing.T) {
	bin := buildDrove(t)
	env := []string{"DROVE_SECRET=cmd-test"}
	a := startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "2")
	b := startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "2")

	var mu sync.Mutex
	finals := map[int64]int{}
	s := sched.New(sched.Config{Reentrant: true, OnTask: func(ev sched.TaskEvent) {
		if ev.State.Final() {
			mu.Lock()
			finals[ev.Task.ID]++
			mu.Unlock()
		}
	}})
	addNode(t, s, nodeexec.Config{Addr: a.addr, Secret: "cmd-test"})
	addNode(t, s, nodeexec.Config{Addr: b.addr, Secret: "cmd-test"})

	ctx := t.Context()
	hosts := map[string]int{}
	var first []*sched.Task
	for i := range 20 {
		tk := &sched.Task{ID: int64(i + 1), Input: demoInput(t, 1+i%3)}
		if err := s.Submit(ctx, tk); err != nil {
			t.Fatal(err)
		}
		first = append(first, tk)
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tk := range first {
		var r DemoResult
		if tk.State() != sched.Finished {
			t.Fatalf("job %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
		if err := gob.NewDecoder(bytes.NewReader(tk.Result().Output)).Decode(&r); err != nil {
			t.Fatal(err)
		}
		hosts[tk.NodeName()]++
	}
	if hosts["nodeA"] == 0 || hosts["nodeB"] == 0 {
		t.Errorf("jobs per node %v: want both nodes used", hosts)
	}

	var ts []*sched.Task
	for i := range 1000 {
		tk := &sched.Task{ID: int64(1000 + i), Input: demoInput(t, 1)}
		if err := s.Submit(ctx, tk); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tk)
	}
	time.Sleep(150 * time.Millisecond)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.Wait(wctx); err != nil {
		t.Fatalf("%v: %+v", err, s.Stats())
	}
	for _, tk := range ts {
		if tk.State() != sched.Finished {
			t.Fatalf("job %d: %v %v", tk.ID, tk.State(), tk.Result().Err)
		}
	}
	st := s.Stats()
	for _, n := range st.Nodes {
		if n.Name == "nodeA" && !n.Down {
			t.Errorf("killed node not reported down: %+v", n)
		}
	}
	// Close delivers the last events.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range finals {
		if n != 1 {
			t.Errorf("job %d ended %d times", id, n)
		}
	}
	if len(finals) != 1020 {
		t.Errorf("%d jobs ended, want 1020", len(finals))
	}
}

// TestNodeSecretRefused: a client with the wrong secret gets a clear error
// and the node goes on serving the right one.
func TestNodeSecretRefused(t *testing.T) {
	bin := buildDrove(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("right\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startNodeProc(t, bin, nil, "--secret-file", secret, "--serve", "1")
	s := sched.New(sched.Config{})
	_, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: p.addr, Secret: "wrong", ClientID: "x"}, demoComputation(t), s)
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("wrong secret: %v", err)
	}
	addNode(t, s, nodeexec.Config{Addr: p.addr, Secret: "right"})
	tk := &sched.Task{ID: 1, Input: demoInput(t, 1)}
	if err := s.Submit(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if tk.State() != sched.Finished {
		t.Fatal(tk.Result().Err)
	}
	// --serve 1: the node exits by itself after its one computation.
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("node exit: %v", err)
		}
		p.done <- err
	case <-time.After(10 * time.Second):
		t.Error("node with --serve 1 still running after its computation closed")
	}
}

// TestNodeTLS sets up mutual TLS with drove cert and runs a job through it.
func TestNodeTLS(t *testing.T) {
	bin := buildDrove(t)
	dir := t.TempDir()
	for _, args := range [][]string{{"ca"}, {"node", "n1", "127.0.0.1"}, {"client", "c1"}} {
		cmd := newCertCmd()
		cmd.SetArgs(append(args, "--dir", dir))
		cmd.SetOut(io.Discard)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("cert %v: %v", args, err)
		}
	}
	cmd := newCertCmd()
	cmd.SetArgs([]string{"ca", "--dir", dir})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil {
		t.Error("drove cert ca overwrote the CA")
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	p := startNodeProc(t, bin, nil, "--tls-cert", f("n1.pem"), "--tls-key", f("n1-key.pem"), "--tls-ca", f("ca.pem"))
	tlsCfg, err := nodeauth.ClientTLS(f("c1.pem"), f("c1-key.pem"), f("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s := sched.New(sched.Config{})
	noCert, _ := nodeauth.ClientTLS("", "", f("ca.pem"))
	if _, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: p.addr, TLS: noCert, ClientID: "x"}, demoComputation(t), s); err == nil {
		t.Error("client without a certificate accepted")
	}
	addNode(t, s, nodeexec.Config{Addr: p.addr, TLS: tlsCfg})
	tk := &sched.Task{ID: 1, Input: demoInput(t, 1)}
	if err := s.Submit(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if tk.State() != sched.Finished {
		t.Fatal(tk.Result().Err)
	}
}

func TestNodeFlags(t *testing.T) {
	run := func(args ...string) error {
		cmd := newNodeCmd()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetContext(t.Context())
		return cmd.Execute()
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--zombie-interval", "0s"}, "--zombie-interval"},
		{[]string{"--max-file-size", "10x"}, "--max-file-size"},
		{[]string{"--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"}, "TLS certificate"},
		{[]string{"--secret-file", "/nonexistent"}, "--secret-file"},
		{[]string{"--config", "/nonexistent"}, "--config"},
		{[]string{"--port", "70000"}, "port"},
		{[]string{"--max-conns", "-1"}, "--max-conns"},
		{[]string{"--max-conns-per-host", "0"}, "--max-conns-per-host"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout"},
		{[]string{"--unauth-timeout", "-1s"}, "--unauth-timeout"},
		{[]string{"--policy", "lifo"}, "--policy"},
	} {
		err := run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %s", tc.args, err, tc.want)
		}
	}
	cfgFile := filepath.Join(t.TempDir(), "node.conf")
	if err := os.WriteFile(cfgFile, []byte("[DEFAULT]\n# comment\nmax_file_size = 12q\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run("--config", cfgFile); err == nil || !strings.Contains(err.Error(), "--max-file-size") {
		t.Errorf("config value not applied: %v", err)
	}
	if err := os.WriteFile(cfgFile, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run("--config", cfgFile); err == nil || !strings.Contains(err.Error(), "unknown option") {
		t.Errorf("unknown config option: %v", err)
	}
	var help bytes.Buffer
	cmd := newNodeCmd()
	cmd.SetArgs([]string{"--help"})
	cmd.SetOut(&help)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"--cpus", "--host", "--ext-host", "--port", "--name", "--dest-path", "--secret", "--secret-file", "--tls-cert", "--tls-key", "--tls-ca", "--max-file-size", "--serve", "--zombie-interval", "--ping-interval", "--scheduler-host", "--clean", "--config", "--insecure", "--max-conns", "--max-conns-per-host", "--idle-timeout", "--unauth-timeout", "--policy"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("--help does not explain %s", f)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "4k": 4096, "2M": 2 << 20, "1g": 1 << 30, "1t": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1", "k", "1x", "99999999999t"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "4k", "1t", "-1", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}

// TestNodePingInterval: a client that sets no heartbeat interval uses the
// "drove node --ping-interval" of the node process; one that sets its own
// keeps it.
func TestNodePingInterval(t *testing.T) {
	bin := buildDrove(t)
	p := startNodeProc(t, bin, nil, "--ping-interval", "250ms")
	for _, tc := range []struct{ ask, want time.Duration }{{0, 250 * time.Millisecond}, {70 * time.Millisecond, 70 * time.Millisecond}} {
		s := sched.New(sched.Config{})
		ex, err := nodeexec.Dial(t.Context(), nodeexec.Config{Addr: p.addr, ClientID: "ping", Heartbeat: tc.ask}, demoComputation(t), s)
		if err != nil {
			t.Fatal(err)
		}
		if got := ex.Heartbeat(); got != tc.want {
			t.Errorf("client asking for %v: heartbeat %v, want %v", tc.ask, got, tc.want)
		}
		if err := ex.Close(t.Context()); err != nil {
			t.Error(err)
		}
		_ = s.Close(t.Context())
	}
}

// TestNodeSchedulerHost: "drove node --scheduler-host" (with LAN discovery
// off) announces itself by unicast to that host: a client listening there
// learns the node's address.
func TestNodeSchedulerHost(t *testing.T) {
	bin := buildDrove(t)
	sched, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Close()
	p := startNodeProc(t, bin, []string{"DROVE_SECRET=sh"}, "--scheduler-host", sched.LocalAddr().String())
	buf := make([]byte, discovery.MaxDatagram)
	_ = sched.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := sched.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no announcement: %v", err)
	}
	m, err := discovery.Decode(buf[:n], "sh")
	if err != nil {
		t.Fatal(err)
	}
	if got := net.JoinHostPort(m.Addr, fmt.Sprint(m.Port)); m.Kind != discovery.KindAnnounce || got != p.addr {
		t.Errorf("announcement %+v (%s), want one for %s", m, got, p.addr)
	}
}

// TestDemoNodes runs "drove demo --nodes" against two drove node
// processes: the seed example on a real two-node cluster.
func TestDemoNodes(t *testing.T) {
	bin := buildDrove(t)
	a := startNodeProc(t, bin, nil, "--name", "nodeA", "--cpus", "2")
	b := startNodeProc(t, bin, nil, "--name", "nodeB", "--cpus", "2")
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "12", "--nodes", a.addr+","+b.addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	line := regexp.MustCompile(`(?m)^\S+ executed job \d+ at .* with ([1-9]|10)$`)
	if got := len(line.FindAllString(out, -1)); got != 12 {
		t.Errorf("%d job lines in\n%s", got, out)
	}
	for _, n := range []string{"nodeA", "nodeB"} {
		if !regexp.MustCompile(`(?m)^\s+` + n + ` \|\s+2 \|\s+[1-9]\d* \|`).MatchString(out) {
			t.Errorf("no stats line with jobs for %s in\n%s", n, out)
		}
	}
}

// TestDemoSecretFile: drove demo takes the secret as drove node does
// (--secret-file here), and a wrong one is refused with an error that
// says so.
func TestDemoSecretFile(t *testing.T) {
	bin := buildDrove(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("demo-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startNodeProc(t, bin, nil, "--secret-file", secret, "--cpus", "2")
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "3", "--nodes", p.addr, "--secret-file", secret)
	if code != 0 || strings.Count(out, " executed job ") != 3 {
		t.Fatalf("right secret: exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "1", "--nodes", p.addr, "--secret", "wrong")
	if code == 0 || !strings.Contains(errs, "secret") {
		t.Fatalf("wrong secret: exit %d, stderr %q", code, errs)
	}
	t.Logf("wrong secret: %s", errs)
}

// TestSubmitNodes runs "drove submit --nodes" against a drove node
// process: the program and its depends are shipped, stdout, stderr and
// exit codes come back. The secret comes from $DROVE_SECRET on both sides.
func TestSubmitNodes(t *testing.T) {
	bin := buildDrove(t)
	t.Setenv("DROVE_SECRET", "submit-secret")
	p := startNodeProc(t, bin, nil, "--name", "subnode")
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"[$1]\"; cat data.txt >&2; exit $2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("staged"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", "submit", "--nodes", p.addr, "-f", data, "-a", "a 0", "-a", "b 3", prog)
	if code != 1 {
		t.Errorf("exit %d, want 1 (one job exited non-zero); stderr %s", code, errs)
	}
	for _, want := range []string{"job 1 [a 0] on subnode: exit status 0\n--- stdout ---\n[a]\n--- stderr ---\nstaged\n", "job 2 [b 3] on subnode: exit status 3\n--- stdout ---\n[b]\n--- stderr ---\nstaged\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

// TestNodeServesOnlyItsUser runs "drove submit" as another local user
// (nobody) against a node started by root with neither secret nor TLS:
// loopback is no boundary between users, so the node refuses, and says
// why, while root's own client is served.
func TestNodeServesOnlyItsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DROVE_REQUIRE_NETNS") == "1" || os.Getenv("DROVE_REQUIRE_SSHD") == "1" {
			t.Fatal("running a client as another user needs root, and DROVE_REQUIRE_NETNS or DROVE_REQUIRE_SSHD requires this test to run")
		}
		t.Skip("running a client as another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, _ := strconv.ParseUint(nobody.Gid, 10, 32)
	// Where nobody can run the binary from: the test's own temporary
	// directories are root's alone.
	dir, err := os.MkdirTemp("", "drove-otheruser")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "drove")
	exe, err := os.ReadFile(buildDrove(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startNodeProc(t, bin, nil, "--name", "rootnode")
	for _, tc := range []struct {
		name    string
		cred    *syscall.Credential // nil: root, as the node
		wantOK  bool
		want    string // in stdout if wantOK, else in stderr
		wantNot string // in neither
	}{
		{"another user", &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, false,
			"this node runs as uid 0 (root) and, without a cluster secret or mutual TLS, serves only that user's clients on this machine; you are uid " + nobody.Uid + " (nobody): start the node with --secret",
			"uid=0(root)"},
		{"the node's user", nil, true, "job 1 [] on rootnode: exit status 0\n--- stdout ---\nuid=0(root)", "permission"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, "submit", "--nodes", p.addr, "/usr/bin/id")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "DROVE_SECRET=")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tc.cred}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			out, errs := stdout.String(), stderr.String()
			if (err == nil) != tc.wantOK {
				t.Fatalf("drove submit: %v, want success %v\nstdout: %s\nstderr: %s", err, tc.wantOK, out, errs)
			}
			if got := map[bool]string{true: out, false: errs}[tc.wantOK]; !strings.Contains(got, tc.want) {
				t.Errorf("want %q in\n%s", tc.want, got)
			}
			if strings.Contains(out+errs, tc.wantNot) {
				t.Errorf("%q in\nstdout: %s\nstderr: %s", tc.wantNot, out, errs)
			}
		})
	}
}

// nodeMetric reads one metric of a node's /metrics, or -1 if the node does
// not answer or lacks it.
func nodeMetric(addr, name string) float64 {
	return metricWith(&http.Client{Timeout: 2 * time.Second}, addr, name)
}

// metricWith reads one metric of a node's /metrics with c (one that signs
// its requests, for a node that is not on loopback), or -1.
func metricWith(c *http.Client, addr, name string) float64 {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}

// freeze stops a process with SIGSTOP; it is resumed at the end of the
// test, before the cleanups that stop it.
func freeze(t *testing.T, p *os.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
}

// TestAbandonedJobsFailCommand: a job whose node is lost while it runs
// ends Abandoned, and drove demo and drove submit then exit non-zero,
// as for a job that failed.
func TestAbandonedJobsFailCommand(t *testing.T) {
	bin := buildDrove(t)
	tests := []struct {
		name string
		args []string
		want string // in stdout or stderr
	}{
		{"demo", []string{"demo", "--unit", "1h", "--jobs", "1"}, "job 1: drove: node lost"},
		{"submit", []string{"submit", "-a", "3600", "/bin/sleep"}, "job 1 [3600] on lostnode: Abandoned: drove: node lost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startNodeProc(t, bin, nil, "--name", "lostnode", "--cpus", "1")
			type outcome struct {
				code     int
				out, err string
			}
			done := make(chan outcome, 1)
			go func() {
				code, out, errs := runCmd(t, "", append(tc.args, "--nodes", p.addr)...)
				done <- outcome{code, out, errs}
			}()
			// Once the job runs on the node and the client knows it (it
			// acknowledged every event, the job's start among them), the
			// node freezes: the client loses it after its missed
			// heartbeats. Frozen before the client heard of the start,
			// the job would rightly go back to the queue, to wait for a
			// node.
			for nodeMetric(p.addr, "drove_node_jobs_started_total") < 1 || nodeMetric(p.addr, "drove_node_unacked_events") != 0 {
				select {
				case o := <-done:
					t.Fatalf("command ended before its job started: exit %d\n%s%s", o.code, o.out, o.err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			freeze(t, p.cmd.Process)
			var o outcome
			select {
			case o = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("the command still waits 2 minutes after its node froze")
			}
			if o.code == 0 {
				t.Errorf("exit 0 with an Abandoned job:\n%s%s", o.out, o.err)
			}
			if !strings.Contains(o.out+o.err, tc.want) {
				t.Errorf("output lacks %q:\n%s%s", tc.want, o.out, o.err)
			}
		})
	}
}

// TestDemoFrozenNode: with one of two nodes frozen (SIGSTOP) before it
// starts, drove demo runs its jobs on the other one and exits 0, instead
// of waiting for the frozen node's answer.
func TestDemoFrozenNode(t *testing.T) {
	bin := buildDrove(t)
	a := startNodeProc(t, bin, nil, "--name", "nodeA", "--cpus", "2")
	b := startNodeProc(t, bin, nil, "--name", "nodeB", "--cpus", "2")
	freeze(t, b.cmd.Process)
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "6", "--nodes", a.addr+","+b.addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got := len(regexp.MustCompile(`(?m)^\S+ executed job \d+ at .* with ([1-9]|10)$`).FindAllString(out, -1)); got != 6 {
		t.Errorf("%d job lines in\n%s", got, out)
	}
	if !regexp.MustCompile(`(?m)^\s+nodeA \|\s+2 \|\s+6 \|`).MatchString(out) {
		t.Errorf("nodeA did not run the 6 jobs:\n%s", out)
	}
}
