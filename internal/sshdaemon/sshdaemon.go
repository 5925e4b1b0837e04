// Package sshdaemon starts, finds and stops drove daemons (drove node,
// drove scheduler) on SSH hosts: what drove up and drove down do.
//
// [Up] probes a host and installs drove into its cache
// (internal/sshconn/hostcache), ships the secret or the TLS files with
// mode 0600, starts the daemon detached from the SSH session — with
// `systemd-run --user` where the user's systemd instance outlives the
// session (lingering is on), else with setsid(1), HUP ignored, output to a
// log file — and waits until it answers /healthz. Each daemon is an
// instance with a directory of its own in the host's cache,
// DIR/up/ROLE-ADDRESS-PORT, holding its pid file, log, secret and state
// (--dest-path), so that several daemons on one machine (one per address
// it is reached at, or per port) do not collide and a second Up finds the
// first one running and changes nothing. [Down] stops the instances of a
// host.
//
// The daemon listens on the address the SSH connection reached the host at
// (as the host sees it, from $SSH_CONNECTION) unless told otherwise, so
// that clients reach it the way drove up reached the host; /healthz is
// asked over the SSH connection (a direct-tcpip channel from the host to
// that address), so the check does not depend on the client's network
// path to the daemon.
package sshdaemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/sshconn/sftpengine"
)

// Roles: the daemon to start.
const (
	RoleNode      = "node"
	RoleScheduler = "scheduler"
)

// Launchers: how a daemon is detached from the SSH session.
const (
	// LaunchAuto uses systemd-run --user when the user's systemd instance
	// lingers (it would otherwise stop, with the daemon, when the last
	// session ends), else setsid.
	LaunchAuto = "auto"
	// LaunchSystemd uses systemd-run --user only.
	LaunchSystemd = "systemd"
	// LaunchSetsid uses setsid(1) (or, without it, nohup-style
	// detachment in the background) only.
	LaunchSetsid = "setsid"
)

// BindAll, as Config.Bind, makes the daemon listen on every interface.
const BindAll = "*"

// TLSFiles are the contents of a daemon's TLS files.
type TLSFiles struct {
	Cert, Key, CA []byte
}

// Config says what to start.
type Config struct {
	// Binary is the drove executable to install and run.
	Binary *hostcache.Blob
	// Role is RoleNode (the default) or RoleScheduler.
	Role string
	// Bind is the address the daemon listens on: empty for the address
	// the SSH connection reached the host at, BindAll for every
	// interface.
	Bind string
	// Port is the daemon's TCP port; 0 lets it pick a free one (read back
	// from its log).
	Port int
	// Args are more flags for the daemon ("--cpus", "4", …).
	Args []string
	// Secret, if not empty, is the cluster secret, shipped in a file of
	// mode 0600 and given to the daemon with --secret-file.
	Secret string
	// TLS, if not nil, are the daemon's certificate, key and CA, shipped
	// with mode 0600 and given with --tls-cert, --tls-key and --tls-ca.
	TLS *TLSFiles
	// Launcher is LaunchAuto (the default), LaunchSystemd or LaunchSetsid.
	Launcher string
	// Wait bounds how long Up waits for the daemon to answer /healthz;
	// zero means 30 s.
	Wait time.Duration
	// HealthTLS, if not nil, is the TLS client configuration to ask a TLS
	// daemon's /healthz with (the cluster CA; a client certificate is
	// not needed: a daemon that asks for one has answered).
	HealthTLS *tls.Config
}

// States of a daemon in a [Result].
const (
	StateUp         = "up"
	StateAlreadyUp  = "already up"
	StateFailed     = "failed"
	StateStopped    = "stopped"
	StateNotRunning = "not running"
)

// Result is what Up or Down did on one host (Down: to one instance).
type Result struct {
	Target   string // the host as given
	State    string // one of the State constants
	Role     string
	Addr     string // host:port the daemon listens on, as the host sees it
	PID      int
	Launcher string // how it was started (Up, StateUp): "systemd" or "setsid"
	Uploaded bool   // Up: the binary was sent (the host did not have it)
	Note     string // more to say (a daemon running with other flags)
	Err      error  // why, for StateFailed
}

// instanceName names a daemon's directory: ROLE-ADDRESS-PORT, with "any"
// for every interface.
func instanceName(role, bind string, port int) string {
	if bind == BindAll {
		bind = "any"
	}
	return role + "-" + bind + "-" + strconv.Itoa(port)
}

// parseInstance splits an instance name.
func parseInstance(name string) (role, bind string, port int, ok bool) {
	role, rest, ok := strings.Cut(name, "-")
	if !ok || (role != RoleNode && role != RoleScheduler) {
		return "", "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", "", 0, false
	}
	port, err := strconv.Atoi(rest[i+1:])
	if err != nil {
		return "", "", 0, false
	}
	return role, rest[:i], port, true
}

// upDir is the directory of the instances under a host's cache.
func upDir(h *hostcache.Host) string { return path.Join(h.Dir, "up") }

// aliveFunc is shell code defining alive(): whether $pid is the daemon of
// the instance directory $d (the pid file may name a process that died and
// whose pid was reused: the daemon's command line names $d).
const aliveFunc = `alive() { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || ps -p "$pid" -o args= 2>/dev/null; } | grep -qF -- "$d/"; }
`

// statusScript prints "running PID" or "stopped" for the instance in dir.
func statusScript(dir string) string {
	return "d=" + sshconn.Quote(dir) + "\npid=$(cat \"$d/pid\" 2>/dev/null)\n" + aliveFunc +
		`if alive; then echo "running $pid"; else echo stopped; fi`
}

// stopScript stops the instance in dir (SIGTERM, then SIGKILL after 30 s)
// and prints "stopped PID", "killed PID" or "none".
func stopScript(dir string) string {
	return "d=" + sshconn.Quote(dir) + "\npid=$(cat \"$d/pid\" 2>/dev/null)\n" + aliveFunc + `
if ! alive; then rm -f "$d/pid"; echo none; exit 0; fi
kill -TERM "$pid"
i=0
while alive; do
	i=$((i+1))
	if [ $i -gt 60 ]; then kill -KILL "$pid"; rm -f "$d/pid"; echo "killed $pid"; exit 0; fi
	sleep 0.5 2>/dev/null || sleep 1
done
rm -f "$d/pid"
echo "stopped $pid"`
}

// runScript runs script on target through the login shell and returns its
// stdout; a non-zero exit is an error carrying its stderr.
func runScript(ctx context.Context, pool *sshconn.Pool, target, script string) (string, error) {
	var out, errb bytes.Buffer
	st, err := pool.RunLeader(ctx, target, &sshconn.Cmd{Command: script, Stdout: &out, Stderr: &errb})
	if err != nil {
		return "", err
	}
	if st.Code != 0 {
		return "", fmt.Errorf("exit %d: %s", st.Code, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// lastLine returns the last non-empty line of s, which comes after
// whatever the login shell printed first.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// status returns the pid of the instance in dir, 0 if it is not running.
func status(ctx context.Context, pool *sshconn.Pool, target, dir string) (int, error) {
	out, err := runScript(ctx, pool, target, statusScript(dir))
	if err != nil {
		return 0, err
	}
	if pid, ok := strings.CutPrefix(lastLine(out), "running "); ok {
		return strconv.Atoi(pid)
	}
	return 0, nil
}

// Up starts the daemon cfg describes on target, unless it runs there
// already. It never returns an error: what went wrong is the Result's.
func Up(ctx context.Context, pool *sshconn.Pool, target string, cfg Config) Result {
	r := Result{Target: target, Role: cfg.Role}
	if r.Role == "" {
		r.Role = RoleNode
	}
	if err := up(ctx, pool, target, cfg, &r); err != nil {
		r.State, r.Err = StateFailed, err
	}
	return r
}

func up(ctx context.Context, pool *sshconn.Pool, target string, cfg Config, r *Result) error {
	h, err := hostcache.Probe(ctx, pool, target)
	if err != nil {
		return err
	}
	bind := cfg.Bind
	if bind == "" {
		if bind = h.Addr; bind == "" {
			return errors.New("sshd did not say which address it was reached at ($SSH_CONNECTION): give --bind")
		}
	}
	// Where /healthz is asked from the host, and what clients are told.
	reach := bind
	if bind == BindAll {
		if reach = h.Addr; reach == "" {
			reach = "127.0.0.1"
		}
	}
	dir := path.Join(upDir(h), instanceName(r.Role, bind, cfg.Port))
	wait := cfg.Wait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	args := daemonArgs(r.Role, bind, cfg, dir)
	cmdline := cfg.Binary.Sum + " " + strings.Join(args, " ") + "\n"

	pid, err := status(ctx, pool, target, dir)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if pid > 0 {
		r.PID = pid
		if err := awaitHealthy(ctx, h, dir, reach, cfg, pid, wait, r); err != nil {
			return err
		}
		r.State = StateAlreadyUp
		if old, err := readFile(ctx, h, path.Join(dir, "cmdline")); err == nil && string(old) != cmdline {
			r.Note = "running with another binary or other flags: drove down first to apply them"
		}
		return nil
	}

	in, err := h.InstallExecutable(ctx, cfg.Binary, "version")
	if err != nil {
		return err
	}
	r.Uploaded = in.Uploaded
	if err := h.MkdirPrivate(ctx, path.Join(dir, "dest")); err != nil {
		return err
	}
	if err := h.MkdirPrivate(ctx, dir); err != nil {
		return err
	}
	files := map[string][]byte{"cmdline": []byte(cmdline)}
	if cfg.Secret != "" {
		files["secret"] = []byte(cfg.Secret + "\n")
	}
	if cfg.TLS != nil {
		files["tls-cert.pem"], files["tls-key.pem"], files["tls-ca.pem"] = cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA
	}
	s, err := h.SFTP(ctx)
	if err != nil {
		return err
	}
	for name, data := range files {
		if err := sftpengine.WriteFile(ctx, s, path.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	out, err := runScript(ctx, pool, target, launchScript(cfg.Launcher, dir, in.Path, args, r.Role, cfg.Port, bind))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	launched, ok := strings.CutPrefix(lastLine(out), "launched ")
	if !ok {
		return fmt.Errorf("start: unexpected answer %q", out)
	}
	r.Launcher = launched
	if err := awaitHealthy(ctx, h, dir, reach, cfg, 0, wait, r); err != nil {
		return err
	}
	r.State = StateUp
	return nil
}

// daemonArgs returns the daemon's command line after the executable.
func daemonArgs(role, bind string, cfg Config, dir string) []string {
	args := []string{role, "--port", strconv.Itoa(cfg.Port), "--dest-path", path.Join(dir, "dest")}
	if bind != BindAll {
		args = append(args, "--host", bind)
	}
	if cfg.Secret != "" {
		args = append(args, "--secret-file", path.Join(dir, "secret"))
	}
	if cfg.TLS != nil {
		args = append(args, "--tls-cert", path.Join(dir, "tls-cert.pem"), "--tls-key", path.Join(dir, "tls-key.pem"), "--tls-ca", path.Join(dir, "tls-ca.pem"))
	}
	return append(args, cfg.Args...)
}

// launchScript starts bin with args detached from the session, its pid
// in dir/pid and its output in dir/log, and prints "launched systemd" or
// "launched setsid".
func launchScript(launcher, dir, bin string, args []string, role string, port int, bind string) string {
	d := sshconn.Quote(dir)
	words := []string{sshconn.Quote(bin)}
	for _, a := range args {
		words = append(words, sshconn.Quote(a))
	}
	// HUP is ignored as nohup does (an ignored signal stays ignored across
	// exec, and Go leaves it so); the daemon stops on INT and TERM.
	inner := "trap '' HUP; echo $$ >" + d + "/pid; exec " + strings.Join(words, " ") + " >>" + d + "/log 2>&1 </dev/null"
	unit := "drove-" + strings.NewReplacer(":", "_", "*", "any").Replace(instanceName(role, bind, port))
	systemd := "systemd-run --user --quiet --collect --unit=" + sshconn.Quote(unit) + " /bin/sh -c " + sshconn.Quote(inner) + " </dev/null >/dev/null"
	setsid := "if command -v setsid >/dev/null 2>&1; then setsid /bin/sh -c " + sshconn.Quote(inner) + " </dev/null >/dev/null 2>&1 &\n" +
		"else /bin/sh -c " + sshconn.Quote(inner) + " </dev/null >/dev/null 2>&1 & fi\necho launched setsid"
	prep := "d=" + d + "\nrm -f \"$d/pid\"\n[ -f \"$d/log\" ] && mv -f \"$d/log\" \"$d/log.1\"\n"
	switch launcher {
	case LaunchSystemd:
		// Its complaint (no user bus, say) is the error's text.
		return prep + systemd + " || exit 4\necho launched systemd"
	case LaunchSetsid:
		return prep + setsid
	}
	// A user manager without lingering stops, with its units, when the
	// user's last session ends: the daemon would die with this session.
	return prep + `if [ "$(loginctl show-user "$(id -un)" -p Linger --value 2>/dev/null)" = yes ] && ` + systemd + " 2>/dev/null; then echo launched systemd; else\n" + setsid + "\nfi"
}

// listening matches the line a daemon prints when it serves: "drove node
// NAME serving N CPUs on ADDR" or "drove scheduler NAME on ADDR for …".
var listening = regexp.MustCompile(`(?m)^drove (?:node|scheduler) .*? on (\S+)`)

// awaitHealthy waits until the instance in dir answers /healthz, and sets
// r.Addr and r.PID. pid is the daemon's pid if known.
func awaitHealthy(ctx context.Context, h *hostcache.Host, dir, reach string, cfg Config, pid int, wait time.Duration, r *Result) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	addr := ""
	if cfg.Port != 0 {
		addr = net.JoinHostPort(reach, strconv.Itoa(cfg.Port))
	}
	var lastErr error
	for {
		if pid == 0 {
			if b, err := readFile(ctx, h, path.Join(dir, "pid")); err == nil {
				pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
		}
		if addr == "" {
			if b, err := readFile(ctx, h, path.Join(dir, "log")); err == nil {
				if m := listening.FindSubmatch(b); m != nil {
					if _, port, err := net.SplitHostPort(string(m[1])); err == nil {
						addr = net.JoinHostPort(reach, port)
					}
				}
			}
		}
		if addr != "" {
			if lastErr = healthz(ctx, h, addr, cfg.HealthTLS); lastErr == nil {
				r.Addr, r.PID = addr, pid
				return nil
			}
		}
		if pid > 0 {
			// Died? Say why, from its log.
			if p, err := status(ctx, h.Pool, h.Target, dir); err == nil && p == 0 {
				return fmt.Errorf("the daemon exited: %s", logTail(ctx, h, dir))
			}
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("it printed no address")
			}
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return fmt.Errorf("no answer on /healthz after %v (%v); log: %s", wait, lastErr, logTail(context.WithoutCancel(ctx), h, dir))
			}
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// healthz asks the daemon at addr for /healthz through a direct-tcpip
// channel of h's SSH connection.
func healthz(ctx context.Context, h *hostcache.Host, addr string, tc *tls.Config) error {
	lease, err := h.Pool.Acquire(ctx, h.Target)
	if err != nil {
		return err
	}
	defer lease.Release()
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return lease.Client().DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   tc,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if tc != nil && strings.Contains(err.Error(), "certificate required") {
			// A mutual-TLS daemon whose certificate the CA signed
			// answered; it wants a client certificate to say more.
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// readFile reads a small file of the host over SFTP.
func readFile(ctx context.Context, h *hostcache.Host, p string) ([]byte, error) {
	s, err := h.SFTP(ctx)
	if err != nil {
		return nil, err
	}
	f, err := s.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// logTail returns the last lines of the instance's log, for an error.
func logTail(ctx context.Context, h *hostcache.Host, dir string) string {
	b, err := readFile(ctx, h, path.Join(dir, "log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// DownFilter picks the instances Down stops; its zero value picks every
// instance at the address the host was reached at.
type DownFilter struct {
	Role string // RoleNode or RoleScheduler; empty for both
	Port int    // 0 for any
	// Bind is the address the instances listen on: empty for the address
	// the host was reached at (and those on every interface), BindAll
	// for those on every interface only.
	Bind string
}

// Down stops the daemons drove up started on target that f picks, and
// returns a Result per instance found: StateStopped, or StateNotRunning
// for an instance whose daemon had ended; one StateNotRunning Result
// without Role when there is none.
func Down(ctx context.Context, pool *sshconn.Pool, target string, f DownFilter) []Result {
	fail := func(err error) []Result { return []Result{{Target: target, State: StateFailed, Err: err}} }
	h, err := hostcache.Probe(ctx, pool, target)
	if err != nil {
		return fail(err)
	}
	s, err := h.SFTP(ctx)
	if err != nil {
		return fail(err)
	}
	entries, err := sftpengine.ReadDir(ctx, s, upDir(h))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	var names []string
	for _, e := range entries {
		role, bind, port, ok := parseInstance(e.Name())
		if !ok || !e.IsDir() || (f.Role != "" && role != f.Role) || (f.Port != 0 && port != f.Port) {
			continue
		}
		switch f.Bind {
		case "":
			if bind != h.Addr && bind != "any" {
				continue
			}
		case BindAll:
			if bind != "any" {
				continue
			}
		default:
			if bind != f.Bind {
				continue
			}
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var out []Result
	for _, name := range names {
		role, bind, port, _ := parseInstance(name)
		if bind == "any" {
			bind = h.Addr
		}
		r := Result{Target: target, Role: role, Addr: net.JoinHostPort(bind, strconv.Itoa(port))}
		if port == 0 {
			r.Addr = ""
			if b, err := readFile(ctx, h, path.Join(upDir(h), name, "log")); err == nil {
				if m := listening.FindSubmatch(b); m != nil {
					if _, p, err := net.SplitHostPort(string(m[1])); err == nil {
						r.Addr = net.JoinHostPort(bind, p)
					}
				}
			}
		}
		said, err := runScript(ctx, pool, target, stopScript(path.Join(upDir(h), name)))
		switch word, pid, _ := strings.Cut(lastLine(said), " "); {
		case err != nil:
			r.State, r.Err = StateFailed, fmt.Errorf("stop: %w", err)
		case word == "none":
			r.State = StateNotRunning
		default:
			r.State = StateStopped
			r.PID, _ = strconv.Atoi(pid)
			if word == "killed" {
				r.Note = "did not stop on SIGTERM within 30s: killed"
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return []Result{{Target: target, State: StateNotRunning}}
	}
	return out
}
