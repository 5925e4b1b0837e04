package process_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/testutil/schedtest"
	"github.com/drove-dev/drove/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type spec struct{ j *process.Job }

func (s spec) ShellJob() *process.Job { return s.j }

// cluster is a scheduler with one process executor as node ":".
func cluster(t *testing.T, cfg process.Config) *sched.Scheduler {
	t.Helper()
	sc := sched.New(sched.Config{})
	e := process.New(cfg, sc)
	if err := sc.AddNode(":", e.Slots(), e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sc.Close(ctx)
	})
	return sc
}

func pgrep(marker string) string {
	out, _ := exec.Command("pgrep", "-f", marker).Output()
	return strings.TrimSpace(string(out))
}

// Shell commands (drove run's ":" login), moved from sshexec.Local.
func TestShell(t *testing.T) {
	sc := cluster(t, process.Config{Slots: 2, Grace: 200 * time.Millisecond})
	res := schedtest.Run(t, sc, &sched.Task{Input: []byte("echo a; echo b >&2; exit 4")})
	if schedtest.ExitCode(t, res) != 4 || string(res.Stdout) != "a\n" || string(res.Stderr) != "b\n" {
		t.Errorf("result %+v", res)
	}
	var xe *proc.ExitError
	if !errors.As(res.Err, &xe) || xe.Code != 4 || string(xe.Stderr) != "b\n" {
		t.Errorf("err %v, want an ExitError with code 4 and the stderr", res.Err)
	}
	var out bytes.Buffer
	res = schedtest.Run(t, sc, &sched.Task{Ref: spec{&process.Job{Command: "cat; echo $X; pwd", Stdin: []byte("in\n"), Env: []string{"X=y"}, Dir: t.TempDir(), Stdout: &out}}})
	if !strings.HasPrefix(out.String(), "in\ny\n/") || res.Stdout != nil {
		t.Errorf("streamed %q collected %q", out.String(), res.Stdout)
	}
	marker := fmt.Sprintf("drovelocal%d", time.Now().UnixNano())
	task := &sched.Task{Timeout: 300 * time.Millisecond, Input: []byte("trap '' TERM; sh -c 'sleep 300; : " + marker + "' & sleep 301")}
	res = schedtest.Run(t, sc, task)
	if !errors.Is(res.Err, sched.ErrTimeout) {
		t.Errorf("err %v", res.Err)
	}
	if out := pgrep(marker); out != "" {
		t.Errorf("left running: %s", out)
	}
}

// A shell command that exits with a status of its own once stopped is
// still reported stopped: an interrupted drove run job is not logged as
// having run.
func TestShellStoppedIsKilled(t *testing.T) {
	sc := cluster(t, process.Config{Slots: 1, NonZeroIsResult: true, Grace: 5 * time.Second})
	task := &sched.Task{Input: []byte("trap 'exit 0' INT; sleep 300 & wait")}
	ctx := t.Context()
	if err := sc.Submit(ctx, task); err != nil {
		t.Fatal(err)
	}
	waitState(t, task, sched.Running)
	time.Sleep(100 * time.Millisecond) // let the trap be set
	sc.Cancel(task)
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if task.State() != sched.Cancelled || !errors.Is(task.Result().Err, sched.ErrCancelled) {
		t.Errorf("state %v err %v, want Cancelled", task.State(), task.Result().Err)
	}
}

func waitState(t *testing.T, task *sched.Task, s sched.State) {
	t.Helper()
	for i := 0; task.State() != s; i++ {
		if i > 3000 {
			t.Fatalf("task %v, want %v", task.State(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for i := 0; ; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if i > 3000 {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Programs (drove.Program), moved from executor/local: the exit code is
// the result, a signal fails, a stop is SIGINT first, and a program that
// exits by itself after SIGINT has its status as the result.
func TestProgram(t *testing.T) {
	const grace = 300 * time.Millisecond
	for _, tc := range []struct {
		name    string
		body    string
		cancel  bool
		state   sched.State
		code    int  // for Finished
		signal  bool // Err is an ExitError with a signal
		minTime time.Duration
	}{
		{name: "exit code is the result", body: `echo out; echo err >&2; exit 3`, state: sched.Finished, code: 3},
		{name: "a signal fails", body: `kill -KILL $$`, state: sched.Terminated, signal: true},
		{name: "SIGINT ends it", body: `READY; exec sleep 60`, cancel: true, state: sched.Cancelled},
		{name: "best result after SIGINT", body: `trap 'echo best; exit 0' INT; READY; sleep 60 & wait`, cancel: true, state: sched.Finished},
		{name: "stubborn is killed after two graces", body: `trap '' INT TERM; READY; sleep 60 & wait; sleep 60`, cancel: true, state: sched.Cancelled, minTime: 2 * grace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// READY marks where the script has set its traps: the test
			// cancels only after that.
			ready := filepath.Join(t.TempDir(), "ready")
			body := strings.ReplaceAll(tc.body, "READY", "touch '"+ready+"'")
			sc := cluster(t, process.Config{Slots: 1, Program: script(t, body), Dir: t.TempDir(), Grace: grace})
			task := &sched.Task{Input: wire.AppendStrings(nil, nil)}
			if err := sc.Submit(t.Context(), task); err != nil {
				t.Fatal(err)
			}
			var start time.Time
			if tc.cancel {
				waitState(t, task, sched.Running)
				waitFile(t, ready)
				start = time.Now()
				sc.Cancel(task)
			}
			if err := task.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			res := task.Result()
			if task.State() != tc.state {
				t.Fatalf("state %v, want %v (err %v)", task.State(), tc.state, res.Err)
			}
			if tc.state == sched.Finished && schedtest.ExitCode(t, res) != tc.code {
				t.Errorf("exit code %d, want %d", schedtest.ExitCode(t, res), tc.code)
			}
			var xe *proc.ExitError
			if tc.signal && (!errors.As(res.Err, &xe) || xe.Signal != syscall.SIGKILL) {
				t.Errorf("err %v, want an ExitError with SIGKILL", res.Err)
			}
			if d := time.Since(start); tc.cancel && d < tc.minTime {
				t.Errorf("stopped after %v, before SIGKILL was due", d)
			}
		})
	}
}

// Programs and shells run a process per job: nothing is queued ahead.
func TestNotAPrefetcher(t *testing.T) {
	var e sched.Executor = process.New(process.Config{Program: "/bin/true"}, sched.New(sched.Config{}))
	if _, ok := e.(sched.Prefetcher); ok {
		t.Error("the process executor queues runs ahead")
	}
}
