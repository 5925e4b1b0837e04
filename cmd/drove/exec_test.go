package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

func dexec(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runSub(t.Context(), t, newExecCmd, stdin, args...)
}

func TestExec(t *testing.T) { forModes(t, testExec) }

func testExec(t *testing.T, m cliMode) {
	s := sshtest.Start(t, sshtest.WithHosts(3))
	ssh := sshArgs(s)
	with := func(args ...string) []string { return append(append([]string{}, ssh...), args...) }
	hostsFile := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hostsFile, []byte(fmt.Sprintf("# pssh hosts\nhost0\n%s   # by address\nhost2 %s\n", s.Target(1), s.User)), 0o644)

	tests := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		outRE    string // must match stdout
		errRE    string // must match stderr
		notOutRE string
	}{
		{name: "node set, prefixed lines", args: with("-w", "host[0-2]", "echo hi; echo oops >&2"),
			outRE: `(?s)^(host[0-2]: hi\n){3}$`, errRE: `(?s)(host[0-2]: oops\n){3}`},
		{name: "hosts file", args: with("-h", hostsFile, "echo", "x"),
			outRE: `host0: x\n`, errRE: `^$`},
		{name: "exit status is the largest", args: with("-w", "host0,host1,host2", `case "$SSH_CONNECTION" in *" 127.0.0.2 "*) exit 3;; *" 127.0.0.3 "*) exit 5;; esac`),
			code: 5, errRE: `host0: Exited with error code 3`},
		{name: "down host is 255", args: with("-w", "host0,down", "true"), code: 255, errRE: `down: .*connect`},
		{name: "inline", args: with("-i", "-w", "host0", "echo out; echo err >&2; exit 2"), code: 2,
			outRE: `^\[1\] \d\d:\d\d:\d\d \[FAILURE\] host0 Exited with error code 2\nout\nStderr: err\n$`},
		{name: "inline success", args: with("-i", "-w", "host1", "echo fine"),
			outRE: `^\[1\] \d\d:\d\d:\d\d \[SUCCESS\] host1\nfine\n$`},
		{name: "gather", args: with("-b", "-w", "host[0-2]", `case "$SSH_CONNECTION" in *" 127.0.0.4 "*) echo other;; *) echo same;; esac`),
			outRE: `^---------------\nhost\[0-1\] \(2\)\n---------------\nsame\n---------------\nhost2 \(1\)\n---------------\nother\n$`},
		{name: "gather stderr separately", args: with("-b", "-w", "host[0-2]", `echo same; case "$SSH_CONNECTION" in *" 127.0.0.4 "*) echo bad >&2;; *) echo warn >&2;; esac`),
			outRE: `^---------------\nhost\[0-2\] \(3\)\n---------------\nsame\n$`,
			errRE: `^---------------\nhost\[0-1\] \(2\)\n---------------\nwarn\n---------------\nhost2 \(1\)\n---------------\nbad\n$`},
		{name: "send input", stdin: "line one\nline two\n", args: with("-I", "-w", "host0,host1", "wc -l"),
			outRE: `(?s)^(host[01]: 2\n){2}$`},
		{name: "hostile command", args: with("-w", "host0", "printf", `'[%s]'`, `"$(echo a;b)"`, `';\n'`),
			outRE: `^host0: \[a\]\[;\\n\]\n$`},
		{name: "timeout", args: with("-t", "0.5", "-w", "host0", "sleep 30"), code: 255, errRE: `host0: Timed out`},
		{name: "no hosts", args: with("true"), code: 1, errRE: `no hosts`},
		{name: "fan-out 1 serialises", args: with("-p", "1", "-w", "host[0-2]", "date +%s.%N; sleep 0.2"), outRE: `(?s)^(host[0-2]: \d+\.\d+\n){3}$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := m.dexec(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout %q\nstderr %q", code, tt.code, out, errs)
			}
			if tt.outRE != "" && !regexp.MustCompile(tt.outRE).MatchString(out) {
				t.Errorf("stdout %q does not match %s", out, tt.outRE)
			}
			if tt.errRE != "" && !regexp.MustCompile(tt.errRE).MatchString(errs) {
				t.Errorf("stderr %q does not match %s", errs, tt.errRE)
			}
		})
	}

	t.Run("outdir and errdir named as pssh names them", func(t *testing.T) {
		dir := t.TempDir()
		od, ed := filepath.Join(dir, "out"), filepath.Join(dir, "err")
		code, _, errs := m.dexec(t, "", with("-o", od, "-e", ed, "-h", hostsFile, "-w", "host0", "echo o; echo e >&2")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, name := range []string{"host0", s.Target(1), s.User + "@host2", "host0.1"} {
			o, _ := os.ReadFile(filepath.Join(od, name))
			e, _ := os.ReadFile(filepath.Join(ed, name))
			if string(o) != "o\n" || string(e) != "e\n" {
				t.Errorf("%s: out %q err %q", name, o, e)
			}
		}
	})
	t.Run("fan-out limits concurrency", func(t *testing.T) {
		start := time.Now()
		code, _, _ := m.dexec(t, "", with("-p", "1", "-w", "host[0-2]", "sleep 0.3")...)
		if code != 0 || time.Since(start) < 900*time.Millisecond {
			t.Errorf("exit %d after %v: hosts ran at once", code, time.Since(start))
		}
	})
	t.Run("interrupt kills every host's command", func(t *testing.T) {
		marker := fmt.Sprintf("drvexec%d", time.Now().UnixNano())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan int)
		go func() {
			code, _, _ := runSub(ctx, t, newExecCmd, "", with("-w", "host[0-2]", "sleep 60; : "+marker)...)
			done <- code
		}()
		p := testPool(t, s)
		waitRemoteJobs(t, p, "host0", marker, 3, new(strings.Builder))
		cancel()
		if code := <-done; code != 255 {
			t.Errorf("exit %d, want 255", code)
		}
		if n := remoteJobs(t, p, "host0", marker); n != 0 {
			t.Errorf("%d remote jobs left", n)
		}
	})
	t.Run("timeout kills the remote process group", func(t *testing.T) {
		marker := fmt.Sprintf("drvexecto%d", time.Now().UnixNano())
		code, _, errs := m.dexec(t, "", with("-t", "0.5", "-w", "host[0-1]",
			fmt.Sprintf(`sh -c 'trap "" TERM; sleep 300; : %s' & sleep 301; : %s`, marker, marker))...)
		if code != 255 || strings.Count(errs, "Timed out") != 2 {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
		if n := remoteJobs(t, testPool(t, s), "host0", marker); n != 0 {
			t.Errorf("%d remote jobs left after -t", n)
		}
	})
	t.Run("help", func(t *testing.T) {
		code, out, _ := m.dexec(t, "", "--help")
		for _, f := range []string{"-w, --nodes", "-h, --hosts", "-p, --par", "-t, --timeout", "-o, --outdir", "-e, --errdir", "-i, --inline", "-b, --gather", "-I, --send-input", "-x, --exclude", "-c, --copy", "--rcopy", "--dest"} {
			if !strings.Contains(out, f) {
				t.Errorf("--help lacks %s", f)
			}
		}
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	})
}

func TestExecUnknownHostKey(t *testing.T) { forModes(t, testExecUnknownHostKey) }

func testExecUnknownHostKey(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o644)
	code, out, errs := m.dexec(t, "", "-F", "none", "--known-hosts", empty, "--identity", s.KeyPath, "-w", s.Target(0), "echo no")
	if code != 255 || out != "" || !strings.Contains(errs, "unknown host key") {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
}

// TestExecConnectTimeoutFlagWins: --connect-timeout, when given, beats
// ssh_config's ConnectTimeout for a host that accepts TCP and then hangs.
func TestExecConnectTimeoutFlagWins(t *testing.T) { forModes(t, testExecConnectTimeoutFlagWins) }

func testExecConnectTimeoutFlagWins(t *testing.T, m cliMode) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	host, port, _ := net.SplitHostPort(l.Addr().String())
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(cfg, []byte("Host hang\n  HostName "+host+"\n  Port "+port+"\n  ConnectTimeout 60\n"), 0o644)
	start := time.Now()
	code, _, errs := m.dexec(t, "", "-F", cfg, "--connect-timeout", "1s", "-w", "hang", "true")
	if took := time.Since(start); code != 255 || took > 5*time.Second {
		t.Errorf("exit %d after %v (ssh_config's 60 s won?): %s", code, took, errs)
	}
}
