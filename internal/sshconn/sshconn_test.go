package sshconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hostile are strings that must reach the remote side byte for byte.
var hostile = []string{
	"plain",
	"with space",
	"new\nline",
	`single'quote`,
	`double"quote`,
	"$(touch /tmp/pwned)",
	"`id`",
	"a;b&&c|d",
	"-rf",
	"--",
	"\xff\xfe not utf-8 \x80",
	"back\\slash",
	"*glob?[x]",
	"~root",
	"",
	"'",
	"tab\tand\rcr",
	"$HOME ${PATH}",
	"!bang",
}

func newPool(t *testing.T, s *sshtest.Server, mut ...func(*sshconn.Config)) *sshconn.Pool {
	t.Helper()
	cfg := sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range mut {
		f(&cfg)
	}
	p, err := sshconn.NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func run(t *testing.T, p *sshconn.Pool, target string, c *sshconn.Cmd) (string, sshconn.ExitStatus) {
	t.Helper()
	var out bytes.Buffer
	c.Stdout = &out
	st, err := p.Run(t.Context(), target, c)
	if err != nil {
		t.Fatalf("Run(%q): %v", c.Command, err)
	}
	return out.String(), st
}

func TestQuoteRoundTrip(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	for _, h := range hostile {
		t.Run(fmt.Sprintf("%q", h), func(t *testing.T) {
			out, st := run(t, p, "host0", &sshconn.Cmd{Command: sshconn.Join("printf", "%s", h)})
			if st.Code != 0 || out != h {
				t.Errorf("got %q (exit %d), want %q", out, st.Code, h)
			}
		})
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("command substitution ran")
	}
}

func TestQuoteNoShell(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"/a/b.c", "/a/b.c"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"-x", "'-x'"},
	} {
		if got := sshconn.Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if sshconn.CheckArg("a\x00b") == nil {
		t.Error("CheckArg accepted NUL")
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in         string
		user, host string
		port       int
		bad        bool
	}{
		{in: "host", host: "host"},
		{in: "u@host", user: "u", host: "host"},
		{in: "u@host:2222", user: "u", host: "host", port: 2222},
		{in: "ssh://u@10.0.0.1:22", user: "u", host: "10.0.0.1", port: 22},
		{in: "[::1]:2200", host: "::1", port: 2200},
		{in: "u@[::1]", user: "u", host: "::1"},
		{in: "host:0", bad: true},
		{in: "u@", bad: true},
	} {
		u, h, port, err := sshconn.ParseTarget(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || u != tc.user || h != tc.host || port != tc.port {
			t.Errorf("%q: got %q %q %d %v", tc.in, u, h, port, err)
		}
	}
}

func TestResolveSSHConfig(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	p := newPool(t, s)
	ep, err := p.Resolve("host1")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr() != s.Addrs[1] || ep.User != sshtest.User || ep.IdentityFiles[0] != s.KeyPath || ep.KnownHostsFiles[0] != s.KnownHosts {
		t.Fatalf("resolved %+v", ep)
	}
	ep, err = p.Resolve("other@host1:99")
	if err != nil || ep.User != "other" || ep.Port != 99 {
		t.Fatalf("explicit parts must win: %+v %v", ep, err)
	}
}

func TestRunCommand(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	dir := "/tmp/drove sshconn 'dir'"
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	out, st := run(t, p, "host0", &sshconn.Cmd{
		Command: `pwd; echo "$A|$B"; cat; echo err >&2; exit 3`,
		Dir:     dir,
		Env:     []string{"A=x y", "B=$(id) 'q'\nz"},
		Stdin:   strings.NewReader("input\n"),
		Stderr:  &stderr,
	})
	want := dir + "\nx y|$(id) 'q'\nz\ninput\n"
	if out != want || st.Code != 3 || stderr.String() != "err\n" {
		t.Fatalf("out %q stderr %q status %+v", out, stderr.String(), st)
	}
	if _, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "true", Env: []string{"1BAD=x"}}); err == nil {
		t.Fatal("bad env name accepted")
	}
}

// TestTimeoutKillsProcessGroup checks that nothing the command started
// survives a timeout, including background children.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	st, err := p.Run(ctx, "host0", &sshconn.Cmd{
		Command: `sleep 3917 & (trap '' TERM; sleep 3918) & sleep 3919; wait`,
	})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !st.Killed {
		t.Fatalf("Run: %+v %v", st, err)
	}
	// The escalation takes about 1 s + 2 graces; the sleeps would take an
	// hour. A bound far from both holds on a loaded machine.
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v: the process group was not killed", d)
	}
	out, st2 := run(t, p, "host0", &sshconn.Cmd{Command: `pgrep -u drovetest -f 'sleep 391[789]'`})
	if st2.Code != 1 {
		ps, _ := run(t, p, "host0", &sshconn.Cmd{Command: "ps -u drovetest -o pid,ppid,pgid,sid,args"})
		t.Fatalf("processes left behind (pgrep exit %d):\n%s\n%s", st2.Code, out, ps)
	}
}

func TestMultiplexAndMoreConns(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 25)
	for range 25 {
		wg.Go(func() {
			var out bytes.Buffer
			st, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "sleep 0.5; echo $PPID", Stdout: &out})
			if err == nil && st.Code != 0 {
				err = fmt.Errorf("exit %d", st.Code)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := p.NumConns("host0"); n < 3 || n > 4 {
		t.Errorf("connections = %d, want 3 (25 sessions, 10 per connection)", n)
	}
}

// TestServerLowerMaxSessions: a server that allows fewer sessions than the
// pool's cap makes the pool lower that connection's cap and open more
// connections, and every command still runs.
func TestServerLowerMaxSessions(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithMaxSessions(2))
	var logs syncbuf.Buffer
	p := newPool(t, s, func(c *sshconn.Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range 8 {
		wg.Go(func() {
			if _, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "sleep 0.3"}); err != nil {
				failed.Store(i, err)
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("run %v: %v", k, v); return true })
	if !strings.Contains(logs.String(), "lowering cap") {
		t.Error("the session cap was never lowered")
	}
	// 8 sessions at once, 2 per connection: more than the one connection
	// the default cap of 10 would have used.
	if n := p.NumConns("host0"); n < 2 {
		t.Errorf("%d connections: the pool kept queueing on one", n)
	}
}

func TestUnknownHostKey(t *testing.T) {
	s := sshtest.Start(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	p := newPool(t, s, func(c *sshconn.Config) { c.KnownHosts = []string{empty} })
	_, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "true"})
	var hke *sshconn.HostKeyError
	if !errors.As(err, &hke) || hke.Changed || hke.Host != "host0" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "host0") || !strings.Contains(err.Error(), "unknown host key") {
		t.Errorf("message does not name the host: %v", err)
	}
}

func TestChangedHostKey(t *testing.T) {
	s := sshtest.Start(t)
	other := sshtest.Start(t) // a different host key
	// other's known_hosts lists other's addresses; write s's address with
	// other's key.
	kh := filepath.Join(t.TempDir(), "kh")
	line, _ := os.ReadFile(other.KnownHosts)
	_, port, _ := strings.Cut(s.Addrs[0], ":")
	f := strings.Fields(string(line))
	os.WriteFile(kh, []byte("[127.0.0.2]:"+port+" "+f[1]+" "+f[2]+"\n"), 0o600)
	p := newPool(t, s, func(c *sshconn.Config) { c.KnownHosts = []string{kh} })
	_, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "true"})
	var hke *sshconn.HostKeyError
	if !errors.As(err, &hke) || !hke.Changed {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "CHANGED") {
		t.Errorf("message: %v", err)
	}
}

func TestAcceptNew(t *testing.T) {
	s := sshtest.Start(t)
	kh := filepath.Join(t.TempDir(), "sub", "known_hosts")
	p := newPool(t, s, func(c *sshconn.Config) {
		c.KnownHosts = []string{kh}
		c.AcceptNew = true
	})
	if _, st := run(t, p, "host0", &sshconn.Cmd{Command: "true"}); st.Code != 0 {
		t.Fatal(st)
	}
	data, err := os.ReadFile(kh)
	if err != nil || !strings.Contains(string(data), "[127.0.0.2]:") {
		t.Fatalf("known_hosts after accept-new: %q %v", data, err)
	}
	// A fresh strict pool now trusts the recorded key.
	p2 := newPool(t, s, func(c *sshconn.Config) { c.KnownHosts = []string{kh} })
	if _, st := run(t, p2, "host0", &sshconn.Cmd{Command: "true"}); st.Code != 0 {
		t.Fatal(st)
	}
}

func TestHostDown(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	start := time.Now()
	_, err := p.Run(t.Context(), "down", &sshconn.Cmd{Command: "true"})
	var ce *sshconn.ConnError
	if !errors.As(err, &ce) || ce.Host != "down" {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

func TestReconnectAfterLostConnection(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s, func(c *sshconn.Config) { c.KeepaliveInterval = 100 * time.Millisecond })
	// The command's parent is setsid -w, whose parent is sshd's
	// per-connection process: killing that drops the connection.
	_, err := p.Run(t.Context(), "host0", &sshconn.Cmd{Command: "kill -9 $(ps -o ppid= -p $PPID); sleep 5"})
	var ce *sshconn.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *ConnError", err)
	}
	if _, st := run(t, p, "host0", &sshconn.Cmd{Command: "true"}); st.Code != 0 {
		t.Fatal(st)
	}
}

func TestProxyJump(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	cfg, _ := os.ReadFile(s.SSHConfig)
	_, port, _ := strings.Cut(s.Addrs[1], ":")
	extra := fmt.Sprintf("\nHost jumped\n  HostName 127.0.0.3\n  Port %s\n  User drovetest\n  IdentityFile %s\n  UserKnownHostsFile %s\n  ProxyJump host0\n",
		port, s.KeyPath, s.KnownHosts)
	file := filepath.Join(t.TempDir(), "config")
	os.WriteFile(file, append([]byte(extra), cfg...), 0o600)
	p := newPool(t, s, func(c *sshconn.Config) { c.ConfigFile = file })
	out, st := run(t, p, "jumped", &sshconn.Cmd{Command: `echo "$SSH_CONNECTION"`})
	// The connection to 127.0.0.3 comes from the jump host's sshd, which
	// connects from a loopback address too; what matters is the target.
	if st.Code != 0 || !strings.Contains(out, " 127.0.0.3 ") {
		t.Fatalf("out %q status %+v", out, st)
	}
}

func TestAgentAuth(t *testing.T) {
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("no ssh-agent")
	}
	s := sshtest.Start(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("agent socket never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", s.KeyPath)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	p, err := sshconn.NewPool(sshconn.Config{
		ConfigFile:    "none",
		KnownHosts:    []string{s.KnownHosts},
		IdentityFiles: []string{filepath.Join(t.TempDir(), "no-such-key")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, st := run(t, p, s.Target(0), &sshconn.Cmd{Command: "true"}); st.Code != 0 {
		t.Fatal(st)
	}
	// Without the agent the same pool configuration has no key.
	p2, _ := sshconn.NewPool(sshconn.Config{ConfigFile: "none", NoAgent: true,
		KnownHosts: []string{s.KnownHosts}, IdentityFiles: []string{filepath.Join(t.TempDir(), "no-such-key")}})
	defer p2.Close()
	var ce *sshconn.ConnError
	if _, err := p2.Run(t.Context(), s.Target(0), &sshconn.Cmd{Command: "true"}); !errors.As(err, &ce) {
		t.Fatalf("without agent: %v", err)
	}
}

// TestKeepaliveDetectsHungServer freezes the server side of the connection
// while a command runs: unanswered keepalives must close the connection, so
// the command fails with a *ConnError instead of hanging, and the next
// command reconnects.
func TestKeepaliveDetectsHungServer(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s, func(c *sshconn.Config) {
		c.KeepaliveInterval = 100 * time.Millisecond
		c.KeepaliveCountMax = 3
	})
	out, _ := run(t, p, "host0", &sshconn.Cmd{Command: "ps -o ppid= -p $PPID"})
	var pid int
	if _, err := fmt.Sscan(out, &pid); err != nil || pid <= 1 {
		t.Fatalf("sshd pid %q: %v", out, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), "host0", &sshconn.Cmd{Command: "sleep 2"})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// Freeze this connection's sshd child (the harness runs sshd as root,
	// as the test is).
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	start := time.Now()
	err := <-errc
	var ce *sshconn.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *ConnError", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("detection took %v", d)
	}
	if _, st := run(t, p, "host0", &sshconn.Cmd{Command: "true"}); st.Code != 0 {
		t.Fatal(st)
	}
}

// TestNoisyLoginShell runs commands for a login that prints lines before
// the command runs (as a .bashrc that echoes does; here a ForceCommand): the
// noise comes through as output and the process group is still found, so a
// timeout kills everything the command started.
func TestNoisyLoginShell(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithConfig(`ForceCommand echo "welcome to the test host"; echo 12345; printf "no newline "; eval "$SSH_ORIGINAL_COMMAND"`))
	p := newPool(t, s)
	for _, runner := range []struct {
		name string
		run  func(context.Context, string, *sshconn.Cmd) (sshconn.ExitStatus, error)
	}{{"Run", p.Run}, {"RunLeader", p.RunLeader}} {
		t.Run(runner.name, func(t *testing.T) {
			var out bytes.Buffer
			st, err := runner.run(t.Context(), "host0", &sshconn.Cmd{Command: "echo hello", Stdout: &out})
			if err != nil || st.Code != 0 {
				t.Fatalf("%+v %v", st, err)
			}
			want := "welcome to the test host\n12345\nno newline hello\n"
			if out.String() != want {
				t.Errorf("output %q, want %q", out.String(), want)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			st, err = runner.run(ctx, "host0", &sshconn.Cmd{Command: `sleep 3927 & sleep 3928; wait`})
			if err == nil || !st.Killed {
				t.Fatalf("Run: %+v %v", st, err)
			}
			var left bytes.Buffer
			st2, err := p.RunLeader(t.Context(), "host0", &sshconn.Cmd{Command: `pgrep -u drovetest -f 'sleep 392[78]'`, Stdout: &left})
			if err != nil || st2.Code != 1 {
				t.Fatalf("processes left behind (pgrep exit %d, %v):\n%s", st2.Code, err, left.String())
			}
		})
	}
}

// silentListener accepts TCP connections on loopback and never answers: a
// host that is up but hangs before the SSH banner.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// TestConnectTimeout: a host that accepts TCP but never speaks SSH counts
// as down after ssh_config's ConnectTimeout, unless the pool's timeout is
// explicit (a command-line flag), which wins.
func TestConnectTimeout(t *testing.T) {
	addr := silentListener(t)
	host, port, _ := net.SplitHostPort(addr)
	cfgFile := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(cfgFile, []byte("Host hang\n  HostName "+host+"\n  Port "+port+"\n  ConnectTimeout 1\nHost slow\n  HostName "+host+"\n  Port "+port+"\n  ConnectTimeout 30\n"), 0o644)
	for _, tc := range []struct {
		name     string
		target   string
		timeout  time.Duration
		override bool
		want     time.Duration
	}{
		{"ssh_config wins over the default", "hang", 20 * time.Second, false, time.Second},
		{"explicit flag wins over ssh_config", "slow", 500 * time.Millisecond, true, 500 * time.Millisecond},
		{"default when ssh_config is silent", host + ":" + port, 700 * time.Millisecond, false, 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := sshconn.NewPool(sshconn.Config{ConfigFile: cfgFile, NoAgent: true, ConnectTimeout: tc.timeout, OverrideConnectTimeout: tc.override})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ep, err := p.Resolve(tc.target)
			if err != nil || ep.ConnectTimeout != tc.want {
				t.Fatalf("Resolve: timeout %v, %v; want %v", ep.ConnectTimeout, err, tc.want)
			}
			start := time.Now()
			_, err = p.Run(t.Context(), tc.target, &sshconn.Cmd{Command: "true"})
			took := time.Since(start)
			var ce *sshconn.ConnError
			if !errors.As(err, &ce) {
				t.Fatalf("Run: %v, want a *ConnError", err)
			}
			if took < tc.want-50*time.Millisecond || took > tc.want+2*time.Second {
				t.Errorf("gave up after %v, want about %v", took, tc.want)
			}
		})
	}
}

// countProcs returns how many of the test user's processes have marker in
// their command line.
func countProcs(t *testing.T, p *sshconn.Pool, marker string) int {
	t.Helper()
	var out bytes.Buffer
	pat := "[" + marker[:1] + "]" + marker[1:] // not pgrep's own shell
	if _, err := p.RunLeader(t.Context(), "host0", &sshconn.Cmd{Command: "pgrep -c -u drovetest -f " + pat + " || true", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("pgrep: %q", out.String())
	}
	return n
}

// TestSessionEndKillsGroup: when the client's connection goes away under a
// running command (the client died), the command's process group ends
// too, SIGKILL following SIGTERM for a process that ignores it; with or
// without Stdin (which the command may be reading), with either runner. A
// command that does not get Stdin still sees EOF at once.
func TestSessionEndKillsGroup(t *testing.T) {
	s := sshtest.Start(t)
	p := newPool(t, s)
	runners := []struct {
		name string
		run  func(*sshconn.Pool, context.Context, string, *sshconn.Cmd) (sshconn.ExitStatus, error)
	}{{"Run", (*sshconn.Pool).Run}, {"RunLeader", (*sshconn.Pool).RunLeader}}
	for _, r := range runners {
		for _, withStdin := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stdin=%v", r.name, withStdin), func(t *testing.T) {
				var out bytes.Buffer
				c := &sshconn.Cmd{Command: "cat; echo done", Stdout: &out}
				if withStdin {
					c.Stdin = strings.NewReader("in\n")
				}
				if st, err := r.run(p, t.Context(), "host0", c); err != nil || st.Code != 0 || out.String() != map[bool]string{false: "done\n", true: "in\ndone\n"}[withStdin] {
					t.Fatalf("stdin: %+v %v %q", st, err, out.String())
				}

				marker := fmt.Sprintf("drvgone%d", time.Now().UnixNano())
				client := newPool(t, s)
				c = &sshconn.Cmd{
					Command:   `sh -c "trap '' TERM; sleep 300; : ` + marker + `" & sh -c "sleep 301; : ` + marker + `"; wait`,
					KillGrace: 300 * time.Millisecond,
				}
				if withStdin {
					pr, pw := io.Pipe() // never ends: the command may read on
					defer pw.Close()
					c.Command = "cat >/dev/null & " + c.Command
					c.Stdin = pr
				}
				done := make(chan error, 1)
				go func() {
					_, err := r.run(client, context.Background(), "host0", c)
					done <- err
				}()
				deadline := time.Now().Add(10 * time.Second)
				for countProcs(t, p, marker) < 2 {
					if time.Now().After(deadline) {
						t.Fatal("command never started")
					}
					time.Sleep(50 * time.Millisecond)
				}
				client.Close() // what the client's death does to the connection
				var ce *sshconn.ConnError
				if err := <-done; !errors.As(err, &ce) {
					t.Errorf("Run after the connection closed: %v, want a *ConnError", err)
				}
				deadline = time.Now().Add(10 * time.Second)
				for n := countProcs(t, p, marker); n != 0; n = countProcs(t, p, marker) {
					if time.Now().After(deadline) {
						var ps bytes.Buffer
						p.RunLeader(t.Context(), "host0", &sshconn.Cmd{Command: "ps -u drovetest -o pid,ppid,pgid,sid,args", Stdout: &ps})
						t.Fatalf("%d processes left 10 s after the connection closed:\n%s", n, ps.String())
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
	}
}
