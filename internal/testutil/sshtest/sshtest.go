// Package sshtest runs a real OpenSSH sshd for tests.
//
// [Start] writes host keys, a user key, authorized_keys, known_hosts, an
// ssh_config and an sshd_config into t.TempDir(), makes sure the test user
// [User] exists (creating it when running as root), and runs
// `/usr/sbin/sshd -D -e -f cfg` listening on one or several loopback
// addresses (127.0.0.2, 127.0.0.3, …), each on its own free port, so that each
// address looks like a separate host. sshd is killed in t.Cleanup and its
// output is logged only when the test failed.
//
// Tests skip when sshd is missing or the test does not run as root, unless
// the environment variable DROVE_REQUIRE_SSHD=1 is set, in which case they
// fail: CI sets it so that a green run never means "everything skipped".
//
// [StartHostile] runs instead an SSH server inside the test process whose
// SFTP tree the test makes up, to play a hostile server; it needs neither
// sshd nor root.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/drove-dev/drove/internal/testutil/syncbuf"
)

// User is the name of the unprivileged account the harness logs in as. Its
// login shell is /bin/sh so that no rc file slows down or pollutes a session.
const User = "drovetest"

// Home is the test user's home directory when the harness creates the user.
const Home = "/home/drovetest"

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "DROVE_REQUIRE_SSHD"

// Server is a running sshd. All fields are read-only.
type Server struct {
	// Addrs are the listening addresses ("127.0.0.2:40123"), one per host.
	Addrs []string
	// Aliases are the Host aliases defined in SSHConfig, Aliases[i] naming
	// Addrs[i] ("host0", "host1", …).
	Aliases []string
	// DownAddr is a loopback address with a closed port: a host that is down.
	// SSHConfig names it with the alias "down".
	DownAddr string
	// User is the login name ([User]).
	User string
	// KeyPath is the user's private ed25519 key (OpenSSH format, mode 0600).
	KeyPath string
	// Signer is the same key, ready for ssh.PublicKeys.
	Signer ssh.Signer
	// HostKey is the server's ed25519 host key, shared by all addresses.
	HostKey ssh.PublicKey
	// KnownHosts is a known_hosts file listing HostKey for every address.
	KnownHosts string
	// SSHConfig is an ssh_config file with a Host block per alias setting
	// HostName, Port, User, IdentityFile and UserKnownHostsFile, usable both
	// by OpenSSH's ssh/scp/sftp (-F) and by internal/sshconn.
	SSHConfig string
	// Dir is the temporary directory holding all these files.
	Dir string

	cmd     *exec.Cmd
	cfgPath string
	out     *syncbuf.Buffer
}

// Option changes how [Start] configures sshd.
type Option func(*options)

type options struct {
	hosts       int
	maxSessions int
	sftp        string
	extra       []string
}

// WithHosts sets the number of loopback addresses (hosts) sshd listens on.
// The default is 1; at most 200.
func WithHosts(n int) Option { return func(o *options) { o.hosts = n } }

// WithMaxSessions sets sshd's MaxSessions. The default is sshd's own, 10.
func WithMaxSessions(n int) Option { return func(o *options) { o.maxSessions = n } }

// WithSFTPServer sets the sftp Subsystem command. The default is
// /usr/lib/openssh/sftp-server, a separate process per session that tests can
// kill; "internal-sftp" runs the server inside sshd.
func WithSFTPServer(cmd string) Option { return func(o *options) { o.sftp = cmd } }

// WithConfig appends raw lines to sshd_config.
func WithConfig(lines ...string) Option {
	return func(o *options) { o.extra = append(o.extra, lines...) }
}

// Available reports whether the harness can run here, and if not, why.
func Available() (bool, string) {
	if _, err := os.Stat(sshdPath); err != nil {
		return false, "sshd not installed (" + sshdPath + ")"
	}
	if os.Geteuid() != 0 {
		return false, "sshd test harness needs root to log in as " + User
	}
	return true, ""
}

const sshdPath = "/usr/sbin/sshd"

// Start starts sshd for t and returns once every address accepts
// connections. It skips t when sshd cannot run here, unless DROVE_REQUIRE_SSHD=1.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{hosts: 1, sftp: "/usr/lib/openssh/sftp-server"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.hosts < 1 || o.hosts > 200 {
		t.Fatalf("sshtest: WithHosts(%d) out of range 1..200", o.hosts)
	}
	if ok, why := Available(); !ok {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("sshtest: %s and %s=1", why, RequireEnv)
		}
		t.Skip("sshtest: " + why)
	}
	if err := EnsureUser(); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshtest: privilege separation dir: %v", err)
	}

	dir := t.TempDir()
	// sshd reads authorized_keys as the test user, which must be able to
	// traverse t.TempDir() and its parent (both created 0700 by testing).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("sshtest: %v", err)
		}
	}
	s := &Server{User: User, Dir: dir, out: &syncbuf.Buffer{}}

	hostSigner, hostPEM := newKey(t, "drove test host")
	userSigner, userPEM := newKey(t, "drovetest@sshtest")
	s.HostKey = hostSigner.PublicKey()
	s.Signer = userSigner
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	s.KeyPath = filepath.Join(dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	s.SSHConfig = filepath.Join(dir, "ssh_config")
	writeFile(t, hostKeyPath, hostPEM, 0o600)
	writeFile(t, s.KeyPath, userPEM, 0o600)
	writeFile(t, s.KeyPath+".pub", ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o644)
	writeFile(t, authKeys, ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o644)

	var listen, known, sshcfg strings.Builder
	for i := 0; i < o.hosts; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		port := freePort(t, ip)
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		s.Addrs = append(s.Addrs, addr)
		alias := fmt.Sprintf("host%d", i)
		s.Aliases = append(s.Aliases, alias)
		fmt.Fprintf(&listen, "ListenAddress %s\n", addr)
		fmt.Fprintf(&known, "[%s]:%d %s", ip, port, ssh.MarshalAuthorizedKey(s.HostKey))
		fmt.Fprintf(&sshcfg, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n\n",
			alias, ip, port, User, s.KeyPath, s.KnownHosts)
	}
	downPort := freePort(t, "127.0.0.1")
	s.DownAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(downPort))
	fmt.Fprintf(&sshcfg, "Host down\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  ConnectTimeout 2\n  BatchMode yes\n",
		downPort, User, s.KeyPath, s.KnownHosts)
	writeFile(t, s.KnownHosts, []byte(known.String()), 0o644)
	writeFile(t, s.SSHConfig, []byte(sshcfg.String()), 0o644)

	var cfg strings.Builder
	cfg.WriteString(listen.String())
	fmt.Fprintf(&cfg, `HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers %s
PermitRootLogin no
PrintMotd no
LogLevel INFO
MaxStartups 100:30:200
Subsystem sftp %s
`, hostKeyPath, authKeys, User, o.sftp)
	if o.maxSessions > 0 {
		fmt.Fprintf(&cfg, "MaxSessions %d\n", o.maxSessions)
	}
	for _, l := range o.extra {
		cfg.WriteString(l + "\n")
	}
	cfgPath := filepath.Join(dir, "sshd_config")
	writeFile(t, cfgPath, []byte(cfg.String()), 0o644)

	s.cfgPath = cfgPath
	s.launch(t)
	return s
}

// launch starts sshd and waits until every address accepts connections.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", s.cfgPath)
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start sshd: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if s.cmd == cmd {
			// Connections still open (a client the test closes later) keep
			// sshd's output pipe, and so Wait, busy: end them too.
			s.Stop()
		}
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshtest: sshd output:\n%s", s.out.String())
		}
	})
	if err := s.waitReady(exited, 10*time.Second); err != nil {
		t.Fatalf("sshtest: %v\nsshd output:\n%s", err, s.out.String())
	}
}

// Restart starts sshd again after [Server.Stop], on the same addresses
// with the same keys, and returns once every address accepts connections:
// a host that comes back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.launch(t)
}

// Output returns what sshd has logged so far.
func (s *Server) Output() string { return s.out.String() }

// Target returns "drovetest@ADDR" for host i, a target that needs no
// ssh_config.
func (s *Server) Target(i int) string { return s.User + "@" + s.Addrs[i] }

// ClientConfig returns an x/crypto/ssh client config that authenticates with
// the user key and pins the host key.
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         5 * time.Second,
	}
}

// waitReady polls every address until it sends an SSH banner.
func (s *Server) waitReady(exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, addr := range s.Addrs {
		for {
			select {
			case <-exited:
				return fmt.Errorf("sshd exited early")
			default:
			}
			if bannerOK(addr) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("sshd not accepting on %s after %v", addr, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func bannerOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	n, _ := c.Read(buf)
	return n == 4 && string(buf) == "SSH-"
}

var userMu sync.Mutex

// EnsureUser creates the test user if it does not exist: login shell /bin/sh,
// home [Home], an unlocked account without a password ("*", which sshd with
// UsePAM no accepts for key logins, unlike the locked "!"). It is idempotent
// and tolerates other test processes doing the same at the same time.
func EnsureUser() error {
	userMu.Lock()
	defer userMu.Unlock()
	var lastErr error
	for try := 0; try < 50; try++ {
		if u, err := user.Lookup(User); err == nil {
			return unlock(u)
		}
		out, err := exec.Command("useradd", "--create-home", "--home-dir", Home,
			"--shell", "/bin/sh", "--password", "*", User).CombinedOutput()
		if err == nil {
			continue // look it up again
		}
		// Exit 9: the user appeared meanwhile; others (10: cannot lock
		// /etc/passwd) mean another process is editing it: retry.
		lastErr = fmt.Errorf("useradd %s: %v: %s", User, err, bytes.TrimSpace(out))
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

func unlock(u *user.User) error {
	if u.HomeDir != "" {
		if err := os.MkdirAll(u.HomeDir, 0o755); err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(u.HomeDir, uid, gid)
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return nil // no shadow file: nothing is locked
	}
	for _, line := range strings.Split(string(shadow), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[0] == User && strings.HasPrefix(f[1], "!") {
			if out, err := exec.Command("usermod", "--password", "*", User).CombinedOutput(); err != nil {
				return fmt.Errorf("usermod %s: %v: %s", User, err, bytes.TrimSpace(out))
			}
		}
	}
	return nil
}

func newKey(t testing.TB, comment string) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

func writeFile(t testing.TB, name string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, data, perm); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.Chmod(name, perm); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// freePort asks the kernel for a free TCP port on ip. The port is released
// before sshd binds it; a collision in between is unlikely and shows up as
// sshd failing to start.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// KillConnections kills (SIGKILL) the sshd processes serving the current
// connections, leaving the listener running: every client connection breaks
// at once, as when a host's network drops, and new connections are accepted
// as before. It returns how many processes it killed.
func (s *Server) KillConnections() (int, error) {
	children, err := descendants(s.cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("sshtest: %w", err)
	}
	n := 0
	for _, pid := range children {
		// Only sshd's own per-connection processes: the user's commands
		// are left to end as they do when a connection drops.
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "sshd") {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		}
	}
	return n, nil
}

// descendants returns the pids of every process below pid, from /proc.
func descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may contain spaces: the fields
		// after the last ")" are "state ppid …".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// Stop kills sshd and the processes serving its connections: the hosts go
// down (their ports refuse connections) until the test ends or
// [Server.Restart].
func (s *Server) Stop() {
	// The listener goes first, stopped so that it forks no new connection
	// while its children are found: killing the connections first would
	// let a client that redials at once get in again.
	_ = s.cmd.Process.Signal(syscall.SIGSTOP)
	_, _ = s.KillConnections()
	_ = s.cmd.Process.Kill()
}
