package drove_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// sshNodes starts sshd on n loopback addresses and returns the options of
// a cluster whose nodes are those SSH hosts.
func sshNodes(t *testing.T, n int, opts ...sshtest.Option) (*sshtest.Server, []drove.Option) {
	t.Helper()
	srv := sshtest.Start(t, append([]sshtest.Option{sshtest.WithHosts(n)}, opts...)...)
	var nodes []string
	for _, a := range srv.Aliases {
		nodes = append(nodes, "ssh://"+a)
	}
	return srv, []drove.Option{drove.WithSSH(drove.SSHConfig{ConfigFile: srv.SSHConfig}), drove.WithNodes(nodes...)}
}

// servingProcs lists the test user's processes serving the node protocol
// (this test binary, installed in the user's cache) or working for one
// (their workers run a copy staged in the serving directory), with their
// command lines.
func servingProcs(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	pattern := fmt.Sprintf("drove/(blobs/%x|serve/node-)", sha256.Sum256(b))
	out, err := exec.Command("pgrep", "-a", "-u", sshtest.User, "-f", pattern).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return nil // none
		}
		t.Fatalf("pgrep: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// waitNoServing fails the test unless the test user's serving processes
// (and their workers, the same executable) are all gone within a while.
func waitNoServing(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs := servingProcs(t)
		if len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left on the SSH hosts: %q", procs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestFuncOnSSHNodes(t *testing.T) {
	srv, opts := sshNodes(t, 2)
	_ = srv
	c := newCluster(t, square, opts...)
	var jobs []*drove.Job[int]
	for i := range 40 {
		jobs = append(jobs, submit(t, c, i))
	}
	nodes := map[string]bool{}
	for i, j := range jobs {
		got, err := result(t, j)
		if err != nil || got != i*i {
			t.Fatalf("square(%d) = %d, %v", i, got, err)
		}
		nodes[j.Node()] = true
	}
	if len(nodes) != 2 {
		t.Errorf("jobs ran on %v, want both SSH hosts", nodes)
	}
	if len(servingProcs(t)) == 0 {
		t.Error("no serving process found on the hosts while the cluster is open")
	}
	// Output, provisional results and files come back as from drove nodes.
	tc := newCluster(t, talk, opts...)
	j := submit(t, tc, "hi")
	if out, err := result(t, j); err != nil || out != "hi" || !strings.Contains(string(j.Stdout()), "hi") {
		t.Errorf("talk: %q, %v, stdout %q", out, err, j.Stdout())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitNoServing(t)
}

func TestProgramOnSSHNodes(t *testing.T) {
	_, opts := sshNodes(t, 2)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("line1\nline2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := script(t, `echo "$(whoami) $1 $(wc -l < data.txt)"`)
	c := newCluster(t, drove.Program(prog), append(opts, drove.WithDepends(data))...)
	nodes := map[string]bool{}
	var jobs []*drove.Job[int]
	for i := range 8 {
		jobs = append(jobs, submit(t, c, []string{strings.Repeat("x", i+1)}))
	}
	for i, j := range jobs {
		code, err := result(t, j)
		want := sshtest.User + " " + strings.Repeat("x", i+1) + " 2\n"
		if err != nil || code != 0 || string(j.Stdout()) != want {
			t.Errorf("job %d: exit %d, %v, stdout %q, stderr %q; want %q", i, code, err, j.Stdout(), j.Stderr(), want)
		}
		nodes[j.Node()] = true
	}
	if len(nodes) != 2 {
		t.Errorf("jobs ran on %v, want both SSH hosts", nodes)
	}
}

// TestSSHNodeOtherPlatform: a host whose uname says another architecture
// is refused with both platforms named, for good (no redial hides it).
func TestSSHNodeOtherPlatform(t *testing.T) {
	fake, err := os.MkdirTemp("", "drove-fakeuname-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fake) })
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho 'Linux aarch64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, opts := sshNodes(t, 1, sshtest.WithConfig("Match LocalAddress 127.0.0.2", "  SetEnv PATH="+fake+":/usr/bin:/bin"))
	want := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		t.Skip("the fake uname claims this machine's own architecture")
	}
	_, err = drove.NewCluster(t.Context(), square, append(opts, drove.WithDestDir(t.TempDir()))...)
	if err == nil {
		t.Fatal("NewCluster on a host of another platform succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("error %q does not name both %s and %s/%s", msg, want, runtime.GOOS, runtime.GOARCH)
	}
}

// TestSSHNodeLostAndBack mixes a drove node and an SSH host in one
// cluster, cuts the host's sshd while jobs run there (reentrant jobs move
// to the drove node, the others end Abandoned, nothing is left running on
// the host), then starts sshd again: the host is used again.
func TestSSHNodeLostAndBack(t *testing.T) {
	srv, opts := sshNodes(t, 1)
	local, _ := nodetest.Start(t, func(c *node.Config) { c.Name = "local"; c.PingInterval = 500 * time.Millisecond })
	hb := drove.WithHeartbeat(500*time.Millisecond, 4)
	re := newCluster(t, sleep, append(opts, drove.WithNodes(local.Addr().String()), drove.WithReentrant(true), hb)...)
	once := newCluster(t, sleep, append(opts, hb)...)

	var jobs []*drove.Job[time.Duration]
	for range 4 {
		jobs = append(jobs, submit(t, re, 4*time.Second))
	}
	gone := submit(t, once, time.Minute)
	// Wait until both nodes run some of them, and the other cluster's job
	// runs on the host.
	deadline := time.Now().Add(60 * time.Second)
	sshName := ""
	for {
		running := map[string]int{}
		for _, j := range jobs {
			if j.Status() == drove.Running {
				running[j.Node()]++
			}
		}
		for n := range running {
			if n != "local" {
				sshName = n
			}
		}
		if running["local"] > 0 && sshName != "" && gone.Status() == drove.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not running on both nodes: %v; other job %s", running, gone.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Stop()
	for i, j := range jobs {
		if _, err := result(t, j); err != nil || j.Node() != "local" {
			t.Errorf("reentrant job %d: %v on %s, want finished on the drove node", i, err, j.Node())
		}
	}
	if _, err := result(t, gone); gone.Status() != drove.Abandoned {
		t.Errorf("job on the lost host: %s, %v; want Abandoned", gone.Status(), err)
	}
	waitNoServing(t)

	srv.Restart(t)
	var onSSH atomic.Bool
	deadline = time.Now().Add(60 * time.Second)
	for !onSSH.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the SSH host was not used again after sshd restarted")
		}
		var batch []*drove.Job[time.Duration]
		for range 8 {
			batch = append(batch, submit(t, re, 100*time.Millisecond))
		}
		for _, j := range batch {
			if _, err := result(t, j); err != nil {
				t.Fatal(err)
			}
			if j.Node() == sshName {
				onSSH.Store(true)
			}
		}
	}
}

// TestSSHNodeEvents: provisional results, files sent back and cancel work
// on an SSH host as on a drove node.
func TestSSHNodeEvents(t *testing.T) {
	_, opts := sshNodes(t, 1)
	var mu sync.Mutex
	var events []string
	pc := newCluster(t, provisional, append(opts, drove.OnJobStatus(func(e drove.JobEvent[int]) {
		mu.Lock()
		events = append(events, e.Status.String()+":"+strconv.Itoa(e.Result))
		mu.Unlock()
	}))...)
	if got, err := result(t, submit(t, pc, 4)); err != nil || got != 4 {
		t.Fatal(got, err)
	}
	_ = pc.Close(t.Context()) // drains callbacks
	mu.Lock()
	if got, want := strings.Join(events, " "), "Running:0 ProvisionalResult:1 ProvisionalResult:2 ProvisionalResult:3 Finished:4"; got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
	mu.Unlock()

	dest := t.TempDir()
	fc := newCluster(t, sendFile, append(opts, drove.WithDestDir(dest))...)
	n, err := result(t, submit(t, fc, "result.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "result.txt")); err != nil || string(b) != "payload of result.txt" || len(b) != n {
		t.Errorf("received %q, %v", b, err)
	}

	sc := newCluster(t, sleep, opts...)
	j := submit(t, sc, time.Hour)
	deadline := time.Now().Add(60 * time.Second)
	for j.Status() != drove.Running {
		if time.Now().After(deadline) {
			t.Fatalf("job not running: %s", j.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sc.Cancel(j); err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, j); j.Status() != drove.Cancelled {
		t.Errorf("cancelled job: %s, %v", j.Status(), err)
	}
}

// TestSSHNodeNoexecCache: a host whose cache is on a noexec file system
// is refused, saying why, for good.
func TestSSHNodeNoexecCache(t *testing.T) {
	dir, err := os.MkdirTemp("", "drove-noexec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sshtest.EnsureUser(); err != nil {
		t.Skip(err)
	}
	u, err := user.Lookup(sshtest.User)
	if err != nil {
		t.Skip(err)
	}
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=512m,uid="+u.Uid+",gid="+u.Gid+",mode=0755", "tmpfs", cache).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a noexec tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cache).Run() })
	_, opts := sshNodes(t, 1, sshtest.WithConfig("Match LocalAddress 127.0.0.2", "  SetEnv XDG_CACHE_HOME="+cache))
	_, err = drove.NewCluster(t.Context(), square, append(opts, drove.WithDestDir(t.TempDir()))...)
	if err == nil || !strings.Contains(err.Error(), "noexec") {
		t.Fatalf("NewCluster with a noexec cache: %v; want an error saying noexec", err)
	}
}
