package sshexec_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/testutil/schedtest"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestAgentSameAsSession: a command sees the same shell, directory,
// umask, limits, environment and process group through the agent as in a
// session of its own.
func TestAgentSameAsSession(t *testing.T) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	script := `echo "$0"; pwd; umask; ulimit -n; env | LC_ALL=C sort; ` +
		`ps -o pid=,pgid=,sid= -p $$ | awk '{print ($1 == $2 && $2 == $3) ? "leader" : "not leader"}'; ` +
		`[ -t 0 ] && echo tty || cat`
	var outs []string
	for _, m := range []mode{{"agent", true}, {"session", false}} {
		sc := cluster(t, m, s, pool, 1, s.Aliases[0])
		res := schedtest.Run(t, sc, &sched.Task{Input: []byte(script)})
		if schedtest.ExitCode(t, res) != 0 {
			t.Fatalf("%s: %v %s", m.name, res.Err, res.Stderr)
		}
		outs = append(outs, string(res.Stdout))
	}
	if outs[0] != outs[1] {
		t.Errorf("through the agent:\n%s\nin a session:\n%s", outs[0], outs[1])
	}
	if !strings.Contains(outs[0], "\nleader\n") {
		t.Errorf("the command's shell does not lead its process group and session:\n%s", outs[0])
	}
}

// agentProcs counts the test user's processes running this test binary
// from the hosts' cache: agents.
func agentProcs(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pgrep", "-c", "-u", sshtest.User, "-f", fmt.Sprintf("drove/blobs/%x", sha256.Sum256(b))).Output()
	if err != nil && len(out) == 0 {
		return 0
	}
	var n int
	fmt.Sscan(string(out), &n)
	return n
}

// waitGone polls until count() is 0.
func waitGone(t *testing.T, what string, count func() int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := count()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s left", n, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentEndsWithConnection: when the connection ends, under running
// commands or after Close, the agent and every process of its commands
// end too.
func TestAgentEndsWithConnection(t *testing.T) {
	s := sshtest.Start(t)
	for _, how := range []string{"connection killed", "executor closed"} {
		t.Run(how, func(t *testing.T) {
			pool := newPool(t, s)
			check := newPool(t, s)
			sc := sched.New(sched.Config{})
			defer sc.Close(context.Background())
			e, err := sshexec.New(context.Background(), pool, s.Aliases[0], mode{"agent", true}.cfg(t, sshexec.Config{Slots: 2, KillGrace: 300 * time.Millisecond}), sc)
			if err != nil {
				t.Fatal(err)
			}
			if !e.Agent() {
				t.Fatal("no agent")
			}
			sc.AddNode("a", 2, e)
			marker := fmt.Sprintf("drvagentend%d", time.Now().UnixNano())
			// A background child too, and a shell that ignores SIGTERM.
			cmd := fmt.Sprintf("trap '' TERM; sh -c 'sleep 300; : %s' & sleep 301; : %s", marker, marker)
			tasks := []*sched.Task{{Input: []byte(cmd)}, {Input: []byte(cmd)}}
			for _, task := range tasks {
				sc.Submit(context.Background(), task)
			}
			deadline := time.Now().Add(15 * time.Second)
			for remoteCount(t, check, s.Aliases[0], marker) < 4 {
				if time.Now().After(deadline) {
					t.Fatal("commands did not start")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if agentProcs(t) == 0 {
				t.Fatal("no agent process found on the host")
			}
			if how == "connection killed" {
				if n, err := s.KillConnections(); n == 0 || err != nil {
					t.Fatalf("killed %d: %v", n, err)
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := e.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			waitGone(t, "command processes", func() int { return remoteCount(t, check, s.Aliases[0], marker) })
			waitGone(t, "agents", func() int { return agentProcs(t) })
		})
	}
}

// TestAgentFallback: a host of another architecture (a fake uname first
// in its PATH) and one whose cache is on a noexec file system cannot run
// the agent: each is reported once, however often it is dialled, and
// runs its commands in a session each.
func TestAgentFallback(t *testing.T) {
	if runtime.GOARCH == "arm64" {
		t.Skip("the fake uname claims this machine's own architecture")
	}
	fake, err := os.MkdirTemp("", "drove-fakeuname-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fake) })
	os.Chmod(fake, 0o755)
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho 'Linux aarch64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := []string{"Match LocalAddress 127.0.0.2", "  SetEnv PATH=" + fake + ":/usr/bin:/bin"}
	cache, noexec := noexecDir(t)
	if noexec == "" {
		cfg = append(cfg, "Match LocalAddress 127.0.0.3", "  SetEnv XDG_CACHE_HOME="+cache)
	}
	s := sshtest.Start(t, sshtest.WithHosts(2), sshtest.WithConfig(cfg...))
	pool := newPool(t, s)
	var mu sync.Mutex
	warned := map[string][]error{}
	l := &sshagent.Launcher{Warn: func(target string, err error) {
		mu.Lock()
		warned[target] = append(warned[target], err)
		mu.Unlock()
	}}
	hosts := []string{s.Aliases[0]}
	if noexec == "" {
		hosts = append(hosts, s.Aliases[1])
	}
	for _, h := range hosts {
		for range 2 { // dialled twice, as the fleet does after a loss
			sc := sched.New(sched.Config{})
			e, err := sshexec.New(context.Background(), pool, h, sshexec.Config{Slots: 1, Agent: l}, sc)
			if err != nil {
				t.Fatal(err)
			}
			if e.Agent() {
				t.Errorf("%s: an agent started", h)
			}
			sc.AddNode(h, 1, e)
			if res := schedtest.Run(t, sc, &sched.Task{Input: []byte("echo ok")}); string(res.Stdout) != "ok\n" {
				t.Errorf("%s: %q %v", h, res.Stdout, res.Err)
			}
			sc.Close(context.Background())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if errs := warned[s.Aliases[0]]; len(errs) != 1 || !errors.Is(errs[0], hostcache.ErrPlatform) || !strings.Contains(errs[0].Error(), "linux/arm64") {
		t.Errorf("other platform: warned %v, want once with ErrPlatform", errs)
	}
	if noexec != "" {
		t.Logf("noexec case skipped: %s", noexec)
		return
	}
	if errs := warned[s.Aliases[1]]; len(errs) != 1 || !errors.Is(errs[0], hostcache.ErrNotExecutable) || !strings.Contains(errs[0].Error(), "noexec") {
		t.Errorf("noexec cache: warned %v, want once with ErrNotExecutable", errs)
	}
}

// noexecDir mounts a tmpfs with noexec, owned by the test user, and
// returns it, or why it could not.
func noexecDir(t *testing.T) (dir, why string) {
	t.Helper()
	base, err := os.MkdirTemp("", "drove-noexec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	if err := sshtest.EnsureUser(); err != nil {
		return "", err.Error()
	}
	u, err := user.Lookup(sshtest.User)
	if err != nil {
		return "", err.Error()
	}
	dir = filepath.Join(base, "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=512m,uid="+u.Uid+",gid="+u.Gid+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		return "", fmt.Sprintf("cannot mount a noexec tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir, ""
}
