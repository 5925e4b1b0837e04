package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove"
)

const recoverSecret = "cmd-recover-secret"

// gated is a job that says it runs (a file named after its input in dir)
// and ends once the file "go" appears there: it is surely still running
// when its client is killed.
var gated = drove.Func("cmdtest.gated", func(ctx context.Context, in string) (DemoResult, error) {
	dir, name, _ := strings.Cut(in, "|")
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
		return DemoResult{}, err
	}
	fmt.Println("out", name)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			return DemoResult{Host: name, N: len(name)}, nil
		}
		select {
		case <-ctx.Done():
			return DemoResult{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
})

// gatedClientMain runs two gated jobs on the node at addr with a recover
// file at path, and waits to be killed.
func gatedClientMain(path, addr, dir string) int {
	ctx := context.Background()
	c, err := drove.NewCluster(ctx, gated, drove.WithNodes(addr), drove.WithRecoverFile(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, name := range []string{"j1", "j2"} {
		if _, err := c.Submit(ctx, dir+"|"+name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	select {}
}

// waitFiles waits for the files to appear (jobs saying they run), or
// fails the test after a minute.
func waitFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, name := range names {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				n++
			}
		}
		if n == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs %v did not start", names)
		}
	}
}

// killedClient starts cmd, waits until the jobs say they run, kills it with
// SIGKILL and lets the jobs end.
func killedClient(t *testing.T, cmd *exec.Cmd, dir string, jobs ...string) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	waitFiles(t, dir, jobs...)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("client output before SIGKILL:\n%s", out.String())
}

// A drove submit killed with SIGKILL while its jobs run: drove recover
// prints each job's exit status and output from its recover file, or one
// JSON document with --json; the results are collected once.
func TestRecoverSubmit(t *testing.T) {
	bin := buildDrove(t)
	// Where the jobs go: a drove node, or a drove scheduler over two nodes
	// (whose recover file names the scheduler, which keeps the killed
	// client's results as a node does).
	targets := []struct {
		name  string
		start func(t *testing.T) (flag, addr string)
	}{
		{"node", func(t *testing.T) (string, string) {
			return "--nodes", startNodeProc(t, bin, []string{"DROVE_SECRET=" + recoverSecret}, "--cpus", "3").addr
		}},
		{"scheduler", func(t *testing.T) (string, string) {
			env := []string{"DROVE_SECRET=" + schedNodeSecret}
			a := startNodeProc(t, bin, env, "--name", "nodeA", "--cpus", "2")
			b := startNodeProc(t, bin, env, "--name", "nodeB", "--cpus", "2")
			s := startSchedProc(t, bin, []string{"DROVE_SECRET=" + recoverSecret}, "--nodes", a.addr+","+b.addr)
			waitNodes(t, s, 1, "nodeA", "nodeB")
			return "--scheduler", s.Addr
		}},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			flag, addr := tg.start(t)
			testRecoverSubmit(t, bin, flag, addr)
		})
	}
}

func testRecoverSubmit(t *testing.T, bin, flag, addr string) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(recoverSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), "prog.sh")
	// $1: the directory, $2: the job's name, $3: its exit code.
	script := "#!/bin/sh\ntouch \"$1/$2\"\nwhile [ ! -e \"$1/go\" ]; do sleep 0.01; done\necho \"out $2\"\nprintf 'err \\377\\n' >&2\nexit $3\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// submit runs a killed drove submit of three jobs and returns its
	// recover file.
	submit := func(t *testing.T) string {
		dir := t.TempDir()
		path := filepath.Join(dir, "submit.recover")
		cmd := exec.Command(bin, "submit", flag, addr, "--secret-file", secretFile, "--recover-file", path,
			"-a", dir+" a 0", "-a", dir+" b 3", "-a", dir+" c 0", prog)
		killedClient(t, cmd, dir, "a", "b", "c")
		return path
	}

	t.Run("text", func(t *testing.T) {
		path := submit(t)
		code, out, errs := runCmd(t, "", "recover", "--secret-file", secretFile, path)
		if code != 1 {
			t.Errorf("exit %d, want 1 (one job exited non-zero); stderr %s", code, errs)
		}
		for _, w := range []string{
			"job 1 on " + addr + ": exit status 0\n--- stdout ---\nout a\n--- stderr ---\nerr \xff\n",
			"job 2 on " + addr + ": exit status 3\n--- stdout ---\nout b\n--- stderr ---\nerr \xff\n",
			"job 3 on " + addr + ": exit status 0\n--- stdout ---\nout c\n",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		// Collected: nothing is left.
		code, out, errs = runCmd(t, "", "recover", "--secret-file", secretFile, path)
		if code != 0 || out != "" || !strings.Contains(errs, "hold no jobs") {
			t.Errorf("second recover: exit %d, %q, %q", code, out, errs)
		}
	})

	t.Run("json", func(t *testing.T) {
		path := submit(t)
		code, out, errs := runCmd(t, "", "recover", "--json", "--secret-file", secretFile, path)
		if code != 1 {
			t.Errorf("exit %d, want 1 (one job exited non-zero); stderr %s", code, errs)
		}
		var doc jsonRecover
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		abs, _ := filepath.Abs(prog)
		if doc.ClientID == "" || doc.Computation.Kind != "program" || doc.Computation.Name != abs || doc.Computation.Result != "int" || !doc.Collected || doc.Errors != nil {
			t.Errorf("document %+v", doc)
		}
		if len(doc.Jobs) != 3 {
			t.Fatalf("%d jobs, want 3:\n%s", len(doc.Jobs), out)
		}
		errB64 := base64.StdEncoding.EncodeToString([]byte("err \xff\n"))
		for i, j := range doc.Jobs {
			name, want := string(rune('a'+i)), []int{0, 3, 0}[i]
			if j.ID != int64(i+1) || j.Node != addr || j.Status != "Finished" || j.ExitCode == nil || *j.ExitCode != want || j.Error != "" {
				t.Errorf("job %d: %+v, want Finished on %s with exit code %d", i+1, j, addr, want)
			}
			if j.Stdout != "out "+name+"\n" || j.StdoutBase64 != "" || j.Stderr != "" || j.StderrBase64 != errB64 {
				t.Errorf("job %d output: %+v", i+1, j)
			}
			start, err1 := time.Parse(time.RFC3339Nano, j.Start)
			end, err2 := time.Parse(time.RFC3339Nano, j.End)
			if err1 != nil || err2 != nil || end.Before(start) {
				t.Errorf("job %d times %q %q", i+1, j.Start, j.End)
			}
		}
	})
}

// A Go function's client killed with SIGKILL: drove recover shows the jobs'
// statuses and leaves the results, which the program's RecoverFromFile
// then collects.
func TestRecoverFunc(t *testing.T) {
	bin := buildDrove(t)
	node := startNodeProc(t, bin, []string{"DROVE_SECRET=" + recoverSecret}, "--cpus", "2")
	dir := t.TempDir()
	path := filepath.Join(dir, "gated.recover")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "DROVE_TEST_RECOVER_FILE="+path, "DROVE_TEST_RECOVER_NODE="+node.addr, "DROVE_TEST_RECOVER_DIR="+dir,
		"DROVE_SECRET="+recoverSecret, "GORACE=atexit_sleep_ms=0")
	killedClient(t, cmd, dir, "j1", "j2")
	t.Setenv("DROVE_SECRET", recoverSecret)

	code, out, errs := runCmd(t, "", "recover", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"job 1 on " + node.addr + ": Finished\n--- stdout ---\nout j1\n", "job 2 on " + node.addr + ": Finished\n--- stdout ---\nout j2\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errs, "Go function cmdtest.gated (main.DemoResult) are left on the nodes") || !strings.Contains(errs, "RecoverFromFile") {
		t.Errorf("stderr does not say where the results are: %q", errs)
	}

	code, out, errs = runCmd(t, "", "recover", "--json", path)
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errs)
	}
	var doc jsonRecover
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if doc.Collected || doc.Computation.Kind != "func" || doc.Computation.Name != "cmdtest.gated" || len(doc.Jobs) != 2 {
		t.Fatalf("document %+v", doc)
	}
	for i, j := range doc.Jobs {
		if j.ID != int64(i+1) || j.Status != "Finished" || j.ExitCode != nil || j.Stdout != fmt.Sprintf("out j%d\n", i+1) {
			t.Errorf("job %d: %+v", i+1, j)
		}
	}

	// The results were left for the program.
	got, err := drove.RecoverFromFile(t.Context(), gated, path)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b drove.RecoveredJob[DemoResult]) int { return int(a.ID - b.ID) })
	if len(got) != 2 || got[0].Result != (DemoResult{Host: "j1", N: 2}) || got[1].Result != (DemoResult{Host: "j2", N: 2}) {
		t.Errorf("RecoverFromFile after drove recover: %+v", got)
	}
}

func TestRecoverErrors(t *testing.T) {
	dir := t.TempDir()
	garbled := filepath.Join(dir, "garbled")
	if err := os.WriteFile(garbled, []byte("{\"version\":1,\"cli"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"garbled", []string{"recover", garbled}, "recover file " + garbled + ": not a usable drove recover file"},
		{"missing", []string{"recover", filepath.Join(dir, "missing")}, "closes cleanly"},
		{"no file", []string{"recover"}, "accepts 1 arg"},
		{"submit embedded", []string{"submit", "--recover-file", filepath.Join(dir, "f"), "true"}, "--recover-file needs --nodes"},
		{"demo embedded", []string{"demo", "--recover-file", filepath.Join(dir, "f")}, "--recover-file needs --nodes"},
		{"missing secret file", []string{"recover", "--secret-file", filepath.Join(dir, "nosecret"), garbled}, "--secret-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runCmd(t, "", tt.args...)
			if code != 1 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errs, tt.want)
			}
		})
	}
}

func TestRecoverHelp(t *testing.T) {
	code, out, _ := runCmd(t, "", "recover", "--help")
	for _, w := range []string{"--json", "--secret-file", "--tls-ca", "recover_jobs", "RecoverFromFile", "closed its cluster cleanly"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("help (exit %d) lacks %q", code, w)
		}
	}
	_, out, _ = runCmd(t, "", "submit", "--help")
	if !strings.Contains(out, "--recover-file") || !strings.Contains(out, "drove recover FILE") {
		t.Errorf("submit --help does not explain --recover-file:\n%s", out)
	}
}
