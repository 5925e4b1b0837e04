package drove_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
	"github.com/drove-dev/drove/internal/recoverfile"
	"github.com/drove-dev/drove/internal/testutil/nodetest"
)

const recoverFileSecret = "recover-file-secret"

// recoverFileClientMain starts a cluster on the first of nodes (a comma
// separated list) with a recover file at path, adds the second node later
// (as discovery would), submits six jobs, says "running" on stdout once four
// run (two on each node, the rest queued there), and waits to be killed.
func recoverFileClientMain(path, nodes string) int {
	ctx := context.Background()
	addrs := strings.Split(nodes, ",")
	c, err := drove.NewCluster(ctx, sleep, drove.WithNodes(addrs[0]), drove.WithRecoverFile(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := c.DiscoverNodes(ctx, addrs[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var jobs []*drove.Job[time.Duration]
	for i := range 6 {
		j, err := c.Submit(ctx, time.Duration(1500+i)*time.Millisecond, drove.JobID(int64(200+i)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		jobs = append(jobs, j)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		running := 0
		for _, j := range jobs {
			if j.Status() == drove.Running {
				running++
			}
		}
		if running == 4 {
			fmt.Println("running")
			select {} // until SIGKILL
		}
	}
	fmt.Fprintln(os.Stderr, "jobs did not start")
	return 3
}

// A client killed with SIGKILL while its jobs run left a recover file
// naming its nodes, the late one too; RecoverFromFile collects every job's
// result from them, and refuses another computation.
func TestRecoverFromFileAfterKill(t *testing.T) {
	bin := nodetest.Build(t)
	env := []string{"DROVE_SECRET=" + recoverFileSecret}
	a := nodetest.StartProcess(t, bin, env, "--cpus", "2").Addr
	b := nodetest.StartProcess(t, bin, env, "--cpus", "2").Addr
	path := filepath.Join(t.TempDir(), "client.recover")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "DROVE_TEST_RECOVER_FILE="+path, "DROVE_TEST_RECOVER_NODES="+a+","+b, "GORACE=atexit_sleep_ms=0", env[0])
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "running\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("client said %q: %s", line, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), recoverFileSecret) {
		t.Errorf("the recover file holds the secret:\n%s", raw)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("recover file mode %v, want 0600", st.Mode().Perm())
	}
	f, err := recoverfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (recoverfile.Computation{Kind: "func", Name: "test.sleep", Result: "time.Duration"}); f.Computation != want || f.ClientID == "" || f.Version != 1 {
		t.Errorf("recover file %+v, want computation %+v and a client id", f, want)
	}
	if nodes := slices.Sorted(slices.Values(f.Nodes)); !slices.Equal(nodes, slices.Sorted(slices.Values([]string{a, b}))) {
		t.Errorf("recover file names nodes %q, want %s and %s", f.Nodes, a, b)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Another computation is refused, naming both, before any node is asked.
	for _, tt := range []struct {
		name string
		try  func() error
		want []string
	}{
		{"function", func() error { _, err := drove.RecoverFromFile(ctx, square, path); return err }, []string{"func test.sleep (results time.Duration)", "func test.square (results int)", path}},
		{"program", func() error { _, err := drove.RecoverFromFile(ctx, drove.Program("/bin/true"), path); return err }, []string{"func test.sleep", "program /bin/true (results int)"}},
	} {
		err := tt.try()
		if !errors.Is(err, drove.ErrRecoverMismatch) {
			t.Errorf("%s: %v, want ErrRecoverMismatch", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.name, err, w)
			}
		}
	}

	got, err := drove.RecoverFromFile(ctx, sleep, path, drove.WithSecret(recoverFileSecret))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if len(got) != 6 {
		t.Fatalf("recovered %d jobs, want 6: %+v", len(got), got)
	}
	onNode := map[string]int{}
	for i, j := range got {
		want := time.Duration(1500+i) * time.Millisecond
		if j.ID != int64(200+i) || j.Status != drove.Finished || j.Result != want || j.Err != nil {
			t.Errorf("job %d: %+v, want Finished with %v", 200+i, j, want)
		}
		onNode[j.Node]++
	}
	if onNode[a] == 0 || onNode[b] == 0 {
		t.Errorf("jobs by node %v: want some on %s and on the late %s", onNode, a, b)
	}
	// Collected once; the file stays, and finds nothing more.
	again, err := drove.RecoverFromFile(ctx, sleep, path, drove.WithSecret(recoverFileSecret))
	if err != nil || len(again) != 0 {
		t.Errorf("second recovery: %d jobs, %v", len(again), err)
	}
}

// The recover file exists while the cluster runs and goes when it closes
// (or fails to start); one that cannot be used is a clear error.
func TestRecoverFileLifecycle(t *testing.T) {
	n, _ := nodetest.Start(t, nil)
	addr := n.Addr().String()
	dir := t.TempDir()
	ctx := t.Context()

	path := filepath.Join(dir, "square.recover")
	c := newCluster(t, square, drove.WithNodes(addr), drove.WithClientID("lifecycle-client"), drove.WithRecoverFile(path))
	f, err := recoverfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.ClientID != "lifecycle-client" || !slices.Equal(f.Nodes, []string{addr}) || f.Computation.Name != "test.square" {
		t.Errorf("recover file %+v", f)
	}
	if got, err := result(t, submit(t, c, 4)); err != nil || got != 16 {
		t.Fatalf("job: %d %v", got, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("recover file left after Close: %v", err)
	}
	_, err = drove.RecoverFromFile(ctx, square, path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "closes cleanly") {
		t.Errorf("recovering after a clean close: %v", err)
	}

	// A cluster that does not start leaves no file.
	failed := filepath.Join(dir, "failed.recover")
	if _, err := drove.NewCluster(ctx, square, drove.WithNodes("127.0.0.1:1"), drove.WithRecoverFile(failed), drove.WithConnectTimeout(time.Second)); err == nil {
		t.Fatal("cluster of an unreachable node started")
	}
	if _, err := os.Stat(failed); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("recover file left by a failed NewCluster: %v", err)
	}
	// An embedded cluster's jobs cannot be recovered.
	if _, err := drove.NewCluster(ctx, square, drove.WithRecoverFile(failed)); err == nil || !strings.Contains(err.Error(), "WithNodes") {
		t.Errorf("embedded cluster with a recover file: %v", err)
	}
	// A directory that does not exist is an error of NewCluster.
	if _, err := drove.NewCluster(ctx, square, drove.WithNodes(addr), drove.WithRecoverFile(filepath.Join(dir, "no", "such"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("recover file in a missing directory: %v", err)
	}

	garbled := filepath.Join(dir, "garbled")
	if err := os.WriteFile(garbled, []byte(`{"version":1,"client_id":"x","comput`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := drove.RecoverFromFile(ctx, square, garbled); !errors.Is(err, drove.ErrRecoverFile) || !strings.Contains(err.Error(), garbled) {
		t.Errorf("garbled file: %v", err)
	}
}
