package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// upRow is a line of drove up's or drove down's table.
type upRow struct {
	state, addr, detail string
	pid                 int
}

var upLine = regexp.MustCompile(`^(\S+)\s+(up|already up|failed|stopped|not running)\s+(\S+)\s*(.*)$`)

// upTable parses the table; drove down may list a host more than once
// (one line per daemon), hence the slices.
func upTable(t *testing.T, out string) map[string][]upRow {
	t.Helper()
	rows := map[string][]upRow{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "HOST") {
		t.Fatalf("no table in\n%s", out)
	}
	for _, l := range lines[1:] {
		m := upLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad table line %q in\n%s", l, out)
		}
		r := upRow{state: m[2], addr: m[3], detail: m[4]}
		if p := regexp.MustCompile(`pid (\d+)`).FindStringSubmatch(r.detail); p != nil {
			r.pid, _ = strconv.Atoi(p[1])
		}
		rows[m[1]] = append(rows[m[1]], r)
	}
	return rows
}

// running reports whether pid is a live process of the test user (not a
// zombie waiting for a parent that does not reap).
func running(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(st[i+1:])), "Z")
}

// upHosts starts sshd on n loopback addresses, each host with a cache of
// its own (XDG_CACHE_HOME) owned by the test user; the hosts in arm64 get
// a fake uname that says linux/arm64.
// It returns the server and each host's cache directory (drove's, under
// XDG_CACHE_HOME).
func upHosts(t *testing.T, n int, arm64 ...int) (*sshtest.Server, []string) {
	t.Helper()
	if ok, why := sshtest.Available(); !ok && os.Getenv(sshtest.RequireEnv) != "1" {
		t.Skip(why)
	}
	if err := sshtest.EnsureUser(); err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(sshtest.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	base := t.TempDir()
	fake := filepath.Join(base, "fakebin")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho 'Linux aarch64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg, caches []string
	for i := range n {
		c := filepath.Join(base, fmt.Sprintf("cache%d", i))
		if err := os.Mkdir(c, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(c, uid, gid); err != nil {
			t.Fatal(err)
		}
		caches = append(caches, filepath.Join(c, "drove"))
		// sshd takes the first SetEnv that applies: one line per host.
		env := "  SetEnv XDG_CACHE_HOME=" + c
		for _, a := range arm64 {
			if a == i {
				env += " PATH=" + fake + ":/usr/bin:/bin"
			}
		}
		cfg = append(cfg, fmt.Sprintf("Match LocalAddress 127.0.0.%d", i+2), env)
	}
	srv := sshtest.Start(t, sshtest.WithHosts(n), sshtest.WithConfig(cfg...))
	// Made 0755 by Start, so that the test user reaches the caches.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return srv, caches
}

func TestUpDown(t *testing.T) {
	srv, caches := upHosts(t, 3, 2)
	bin := buildDrove(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("up-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-F", srv.SSHConfig, "--binary", bin, "--secret-file", secret, "--wait", "90s"}
	var pids []int
	t.Cleanup(func() {
		// Whatever the test did, no daemon outlives it.
		runCmd(t, "", "down", "-F", srv.SSHConfig, "host0", "host1")
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// host2 says it is linux/arm64: it fails, the others come up, each on
	// a free port of its own address.
	code, out, errs := runCmd(t, "", append([]string{"up", "--port", "0", "host0", "host1", "host2"}, common...)...)
	rows := upTable(t, out)
	for _, rs := range rows {
		if rs[0].pid > 0 {
			pids = append(pids, rs[0].pid)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1 (host2 failed); stderr %s", code, errs)
	}
	for i, h := range []string{"host0", "host1"} {
		r := rows[h]
		if len(r) != 1 || r[0].state != "up" || !strings.HasPrefix(r[0].addr, fmt.Sprintf("127.0.0.%d:", i+2)) || r[0].pid == 0 ||
			!strings.Contains(r[0].detail, "binary sent") || !strings.Contains(r[0].detail, "started with setsid") {
			t.Fatalf("%s: %+v\n%s", h, r, out)
		}
		if !running(r[0].pid) {
			t.Errorf("%s: pid %d not running", h, r[0].pid)
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r[0].pid))
		if !strings.Contains(string(cmdline), "\x00node\x00") {
			t.Errorf("%s: pid %d runs %q", h, r[0].pid, cmdline)
		}
	}
	if r := rows["host2"]; len(r) != 1 || r[0].state != "failed" || !strings.Contains(r[0].detail, "linux/arm64") || !strings.Contains(r[0].detail, "linux/amd64") {
		t.Errorf("host2: %+v\n%s", r, out)
	}
	node0, node1 := rows["host0"][0], rows["host1"][0]
	if b, err := os.ReadFile(filepath.Join(caches[0], "up", "node-127.0.0.2-0", "secret")); err != nil || string(b) != "up-test-secret\n" {
		t.Errorf("secret on host0: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(caches[0], "up", "node-127.0.0.2-0", "secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret on host0: mode %v, %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(caches[2], "blobs")); !os.IsNotExist(err) {
		t.Errorf("something was sent to host2, of another platform: %v", err)
	}

	// Again: nothing changes.
	code, out2, errs := runCmd(t, "", append([]string{"up", "--port", "0", "host0", "host1"}, common...)...)
	if code != 0 {
		t.Errorf("second up: exit %d: %s\n%s", code, errs, out2)
	}
	rows2 := upTable(t, out2)
	for h, was := range map[string]upRow{"host0": node0, "host1": node1} {
		r := rows2[h]
		if len(r) != 1 || r[0].state != "already up" || r[0].pid != was.pid || r[0].addr != was.addr || strings.Contains(r[0].detail, "binary sent") || r[0].detail != fmt.Sprintf("pid %d", was.pid) {
			t.Errorf("second up, %s: %+v, was %+v\n%s", h, r, was, out2)
		}
	}

	// Other flags: still nothing changes, but drove up says so.
	code, out2b, errs := runCmd(t, "", append([]string{"up", "--port", "0", "--cpus", "1", "host0"}, common...)...)
	if r := upTable(t, out2b)["host0"]; code != 0 || len(r) != 1 || r[0].state != "already up" || r[0].pid != node0.pid || !strings.Contains(r[0].detail, "other flags") {
		t.Errorf("up with other flags: exit %d: %s\n%s", code, errs, out2b)
	}

	// A cluster of the nodes drove up started.
	t.Setenv(secretEnv, "up-test-secret")
	code, out3, errs := runCmd(t, "", "demo", "--nodes", node0.addr+","+node1.addr, "--jobs", "6", "--unit", "1ms")
	if code != 0 || strings.Count(out3, " executed job ") != 6 {
		t.Fatalf("demo on the nodes: exit %d\n%s\n%s", code, out3, errs)
	}

	// A scheduler on host0 over both nodes, beside host0's node.
	code, out4, errs := runCmd(t, "", append([]string{"up", "--scheduler", "--nodes", node0.addr + "," + node1.addr, "--port", "0", "host0"}, common...)...)
	srows := upTable(t, out4)
	if code != 0 || len(srows["host0"]) != 1 || srows["host0"][0].state != "up" || !strings.Contains(srows["host0"][0].detail, "scheduler") {
		t.Fatalf("up --scheduler: exit %d: %s\n%s", code, errs, out4)
	}
	sched := srows["host0"][0]
	pids = append(pids, sched.pid)
	if sched.addr == node0.addr {
		t.Fatalf("scheduler and node on one address: %s", sched.addr)
	}
	code, out5, errs := runCmd(t, "", "demo", "--scheduler", sched.addr, "--jobs", "4", "--unit", "1ms")
	if code != 0 || strings.Count(out5, " executed job ") != 4 {
		t.Fatalf("demo through the scheduler: exit %d\n%s\n%s", code, out5, errs)
	}

	// A node that died is started again (the binary is there already).
	if err := syscall.Kill(node1.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); running(node1.pid) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	code, out4b, errs := runCmd(t, "", append([]string{"up", "--port", "0", "host1"}, common...)...)
	r := upTable(t, out4b)["host1"]
	if code != 0 || len(r) != 1 || r[0].state != "up" || r[0].pid == node1.pid || r[0].pid == 0 || strings.Contains(r[0].detail, "binary sent") {
		t.Fatalf("up after the node died: exit %d: %s\n%s", code, errs, out4b)
	}
	node1 = r[0]
	pids = append(pids, node1.pid)

	// Down: host0's node and scheduler, host1's node.
	code, out6, errs := runCmd(t, "", "down", "-F", srv.SSHConfig, "-w", "host[0-1]")
	if code != 0 {
		t.Errorf("down: exit %d: %s\n%s", code, errs, out6)
	}
	drows := upTable(t, out6)
	want := map[string][]upRow{
		"host0": {{state: "stopped", addr: node0.addr, pid: node0.pid}, {state: "stopped", addr: sched.addr, pid: sched.pid}},
		"host1": {{state: "stopped", addr: node1.addr, pid: node1.pid}},
	}
	for h, ws := range want {
		got := drows[h]
		if len(got) != len(ws) {
			t.Fatalf("down, %s: %+v\n%s", h, got, out6)
		}
		for i, w := range ws {
			if got[i].state != w.state || got[i].addr != w.addr || got[i].pid != w.pid {
				t.Errorf("down, %s: %+v, want %+v\n%s", h, got[i], w, out6)
			}
			deadline := time.Now().Add(30 * time.Second)
			for running(w.pid) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if running(w.pid) {
				t.Errorf("%s: pid %d still running after down", h, w.pid)
			}
		}
	}

	// Down again: nothing runs; a host that cannot be reached fails
	// alone.
	code, out7, _ := runCmd(t, "", "down", "-F", srv.SSHConfig, "host0", "host1", "down")
	rows7 := upTable(t, out7)
	for h, n := range map[string]int{"host0": 2, "host1": 1} {
		r := rows7[h]
		if len(r) != n {
			t.Errorf("second down, %s: %+v\n%s", h, r, out7)
		}
		for _, x := range r {
			if x.state != "not running" || x.pid != 0 {
				t.Errorf("second down, %s: %+v\n%s", h, x, out7)
			}
		}
	}
	if r := rows7["down"]; len(r) != 1 || r[0].state != "failed" {
		t.Errorf("second down, unreachable host: %+v\n%s", r, out7)
	}
	if code != 1 {
		t.Errorf("second down: exit %d, want 1", code)
	}
}

func TestUpFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no hosts", []string{"up", "--insecure"}, "", "no hosts"},
		{"no secret", []string{"up", "h1"}, "", "no secret"},
		{"managed flag", []string{"up", "--insecure", "h1", "--", "--port=9"}, "", "--port is set by drove up itself"},
		{"dest-path", []string{"up", "--insecure", "h1", "--", "--dest-path", "/x"}, "", "--dest-path is set by drove up itself"},
		{"nodes without scheduler", []string{"up", "--insecure", "--nodes", "a", "h1"}, "", "--nodes is for --scheduler"},
		{"scheduler without nodes", []string{"up", "--insecure", "--scheduler", "h1"}, "", "--scheduler needs --nodes"},
		{"partial TLS", []string{"up", "--tls-cert", "c.pem", "h1"}, "", "TLS needs --tls-cert, --tls-key and --tls-ca"},
		{"launcher", []string{"up", "--insecure", "--launcher", "cron", "h1"}, "", "--launcher must be"},
		{"bad node set", []string{"down", "h[1-"}, "", "h[1-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(secretEnv, tt.env)
			code, _, errs := runCmd(t, "", tt.args...)
			if code == 0 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want an error with %q", code, errs, tt.want)
			}
		})
	}
}

// TestUpTLS starts a node with mutual TLS (a certificate per host, %h in
// the file names) and runs a program on it.
func TestUpTLS(t *testing.T) {
	srv, caches := upHosts(t, 1)
	bin := buildDrove(t)
	dir := t.TempDir()
	for _, args := range [][]string{{"ca"}, {"node", "host0", "127.0.0.2"}, {"client", "c1"}} {
		if code, _, errs := runCmd(t, "", append(append([]string{"cert"}, args...), "--dir", dir)...); code != 0 {
			t.Fatalf("cert %v: %s", args, errs)
		}
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	t.Setenv(secretEnv, "")
	t.Cleanup(func() { runCmd(t, "", "down", "-F", srv.SSHConfig, "host0") })
	code, out, errs := runCmd(t, "", "up", "-F", srv.SSHConfig, "--binary", bin, "--port", "0", "--wait", "90s",
		"--tls-cert", f("%h.pem"), "--tls-key", f("%h-key.pem"), "--tls-ca", f("ca.pem"), "host0")
	r := upTable(t, out)["host0"]
	if code != 0 || len(r) != 1 || r[0].state != "up" {
		t.Fatalf("up: exit %d: %s\n%s", code, errs, out)
	}
	// The key went over with mode 0600; the node reads it from there.
	for _, name := range []string{"tls-cert.pem", "tls-key.pem", "tls-ca.pem"} {
		if fi, err := os.Stat(filepath.Join(caches[0], "up", "node-127.0.0.2-0", name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s on the host: %v", name, err)
		}
	}
	code, out2, errs := runCmd(t, "", "submit", "--nodes", r[0].addr, "--tls-cert", f("c1.pem"), "--tls-key", f("c1-key.pem"), "--tls-ca", f("ca.pem"), "-a", "tls-ok", "/bin/echo")
	if code != 0 || !strings.Contains(out2, "tls-ok") {
		t.Fatalf("submit over TLS: exit %d: %s\n%s", code, errs, out2)
	}
	code, out3, errs := runCmd(t, "", "down", "-F", srv.SSHConfig, "host0")
	if d := upTable(t, out3)["host0"]; code != 0 || len(d) != 1 || d[0].state != "stopped" || d[0].pid != r[0].pid {
		t.Errorf("down: exit %d: %s\n%s", code, errs, out3)
	}
}
