package drove_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove"
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
// (this test binary, installed in the user's cache), with their command
// lines.
func servingProcs(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("pgrep", "-a", "-u", sshtest.User, "-f", "/.cache/drove/blobs/").Output()
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
