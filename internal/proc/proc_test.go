package proc_test

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
)

func TestClassify(t *testing.T) {
	lost := errors.New("connection lost")
	bad := errors.New("bad command")
	for _, tc := range []struct {
		name    string
		end     proc.End
		rules   proc.Rules
		want    sched.Outcome
		code    int  // exit code in Output, if output
		output  bool // Output holds an exit code
		exitErr bool // Err is an *ExitError
		errIs   error
	}{
		{name: "exit 0", end: proc.End{Exited: true}, want: sched.OK, output: true},
		{name: "exit 3", end: proc.End{Code: 3, Exited: true}, want: sched.Failed, code: 3, output: true, exitErr: true},
		{name: "exit 3 as result", end: proc.End{Code: 3, Exited: true}, rules: proc.Rules{NonZeroIsResult: true}, want: sched.OK, code: 3, output: true},
		{name: "signal", end: proc.End{Code: 0, Signal: syscall.SIGSEGV, Exited: true}, want: sched.Failed, code: -1, output: true, exitErr: true},
		{name: "signal is never a result", end: proc.End{Signal: syscall.SIGKILL, Exited: true}, rules: proc.Rules{NonZeroIsResult: true}, want: sched.Failed, code: -1, output: true, exitErr: true},
		{name: "stopped, status unknown", end: proc.End{Stopped: sched.ErrTimeout}, want: sched.Killed, errIs: sched.ErrTimeout},
		{name: "stopped, died of the signal", end: proc.End{Signal: syscall.SIGINT, Exited: true, Stopped: sched.ErrCancelled}, rules: proc.Rules{StatusAfterStop: true}, want: sched.Killed, code: -1, output: true, errIs: sched.ErrCancelled},
		{name: "stopped, exited by itself, shell", end: proc.End{Code: 0, Exited: true, Stopped: sched.ErrCancelled}, want: sched.Killed, output: true, errIs: sched.ErrCancelled},
		{name: "stopped, exited by itself, program", end: proc.End{Code: 4, Exited: true, Stopped: sched.ErrCancelled}, rules: proc.Rules{NonZeroIsResult: true, StatusAfterStop: true}, want: sched.OK, code: 4, output: true},
		{name: "stopped beats a lost connection", end: proc.End{Err: lost, Lost: true, Stopped: context.Canceled}, want: sched.Killed, errIs: context.Canceled},
		{name: "connection lost", end: proc.End{Err: lost, Lost: true}, want: sched.Lost, errIs: lost},
		{name: "could not run", end: proc.End{Err: bad}, want: sched.Failed, errIs: bad},
		{name: "no status, no error", end: proc.End{}, want: sched.Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res sched.Result
			proc.Classify(&res, tc.end, tc.rules)
			if res.Outcome != tc.want {
				t.Errorf("outcome %v, want %v (err %v)", res.Outcome, tc.want, res.Err)
			}
			if (res.Outcome == sched.OK) != (res.Err == nil) {
				t.Errorf("outcome %v with err %v", res.Outcome, res.Err)
			}
			if tc.output {
				if code, err := wire.ParseExitCode(res.Output); err != nil || code != tc.code {
					t.Errorf("output code %d %v, want %d", code, err, tc.code)
				}
			} else if res.Output != nil {
				t.Errorf("output %q for a command whose end was not seen", res.Output)
			}
			var xe *proc.ExitError
			if got := errors.As(res.Err, &xe); got != tc.exitErr {
				t.Errorf("err %v: ExitError %v, want %v", res.Err, got, tc.exitErr)
			} else if got && (xe.Signal != tc.end.Signal || xe.Code != tc.code) {
				t.Errorf("ExitError %+v, want code %d signal %v", xe, tc.code, tc.end.Signal)
			}
			if tc.errIs != nil && !errors.Is(res.Err, tc.errIs) {
				t.Errorf("err %v, want one wrapping %v", res.Err, tc.errIs)
			}
		})
	}
}

func TestExitError(t *testing.T) {
	for _, tc := range []struct {
		e    proc.ExitError
		want string
		name string
	}{
		{proc.ExitError{Code: 3}, "drove: process exited with status 3", ""},
		{proc.ExitError{Code: -1, Signal: syscall.SIGKILL}, "drove: process killed by signal 9 (killed)", "KILL"},
		{proc.ExitError{Code: 7, Host: "h", Command: "exit 7", Stderr: []byte("oops\n")}, `remote: h: command "exit 7" exited with status 7: oops`, ""},
		{proc.ExitError{Code: -1, Signal: syscall.SIGTERM, Host: "h", Command: "sleep 9"}, `remote: h: command "sleep 9" killed by signal TERM`, "TERM"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if got := tc.e.SignalName(); got != tc.name {
			t.Errorf("SignalName() = %q, want %q", got, tc.name)
		}
	}
}

func TestSignalNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"", 0},
		{"TERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
		{"HUP", syscall.SIGHUP},
		{"USR1@openssh.com", syscall.SIGUSR1},
		{"15", syscall.SIGTERM},
		{"NOSUCH", syscall.SIGKILL},
		{"0x9", syscall.SIGKILL},
	} {
		if got := proc.SignalNum(tc.name); got != tc.sig {
			t.Errorf("SignalNum(%q) = %v, want %v", tc.name, got, tc.sig)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGSEGV} {
		if got := proc.SignalNum(proc.SignalName(sig)); got != sig {
			t.Errorf("SignalNum(SignalName(%v)) = %v", sig, got)
		}
	}
}

func FuzzSignalNum(f *testing.F) {
	for _, s := range []string{"", "TERM", "SIGKILL", "USR2@openssh.com", "9", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if sig := proc.SignalNum(name); name != "" && sig <= 0 {
			t.Errorf("SignalNum(%q) = %d: a reported signal must stay a signal", name, sig)
		}
	})
}

// group starts sh -c script as the leader of a new process group and
// returns it with a channel that yields how it ended. The script prints
// "ready" once its traps are set.
func group(t *testing.T, script string) (*exec.Cmd, <-chan syscall.WaitStatus) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Group(cmd.Process.Pid).Kill() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("no ready line: %q %v", buf, err)
	}
	ended := make(chan syscall.WaitStatus, 1)
	go func() {
		_ = cmd.Wait()
		ended <- cmd.ProcessState.Sys().(syscall.WaitStatus)
	}()
	return cmd, ended
}

// The escalation ends a process at the first step it heeds, and a process
// that heeds none at SIGKILL, after two grace periods.
func TestEscalate(t *testing.T) {
	const grace = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		script    string
		want      syscall.Signal
		minPeriod time.Duration // it cannot have ended before this
	}{
		{"exits on SIGINT", `echo ready; exec sleep 60`, syscall.SIGINT, 0},
		{"ignores SIGINT", `trap '' INT; echo ready; exec sleep 60`, syscall.SIGTERM, grace},
		{"ignores SIGINT and SIGTERM", `trap '' INT TERM; echo ready; exec sleep 60`, syscall.SIGKILL, 2 * grace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, ended := group(t, tc.script)
			g := proc.Group(cmd.Process.Pid)
			start := time.Now()
			stop := proc.Escalate(grace, nil, g.Signal)
			defer stop.Halt()
			var ws syscall.WaitStatus
			select {
			case ws = <-ended:
			case <-time.After(time.Minute):
				t.Fatal("the escalation did not end the process")
			}
			if !ws.Signaled() || ws.Signal() != tc.want {
				t.Errorf("ended %v (signalled %v), want by %v", ws.Signal(), ws.Signaled(), tc.want)
			}
			if d := time.Since(start); d < tc.minPeriod {
				t.Errorf("ended after %v, before the step was due at %v", d, tc.minPeriod)
			}
		})
	}
}

// A polite step replaces SIGINT, and Halt stops the escalation.
func TestEscalatePoliteAndHalt(t *testing.T) {
	cmd, ended := group(t, `trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done`)
	g := proc.Group(cmd.Process.Pid)
	stop := proc.Escalate(time.Hour, func() { g.Signal(syscall.SIGUSR1) }, g.Signal)
	ws := <-ended
	stop.Halt()
	if ws.Signaled() || ws.ExitStatus() != 7 {
		t.Errorf("ended %v, want exit 7 from the polite step", ws)
	}

	// Halted before its first step: nothing is sent.
	cmd, ended = group(t, `echo ready; exec sleep 60`)
	g = proc.Group(cmd.Process.Pid)
	stop = proc.Escalate(time.Millisecond, nil, g.Signal)
	stop.Halt()
	select {
	case ws := <-ended:
		// The first step may have fired before Halt: then it is SIGINT.
		if ws.Signal() != syscall.SIGINT {
			t.Errorf("ended by %v after Halt", ws.Signal())
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// ShellStop, the remote form of the escalation, runs here as it would on a
// host: by sh, against a process group it is not in.
func TestShellStop(t *testing.T) {
	const grace = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		script string
		want   syscall.Signal
	}{
		{"exits on SIGINT", `echo ready; exec sleep 60`, syscall.SIGINT},
		{"ignores SIGINT", `trap '' INT; echo ready; exec sleep 60`, syscall.SIGTERM},
		{"ignores SIGINT and SIGTERM", `trap '' INT TERM; echo ready; exec sleep 60`, syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, ended := group(t, tc.script)
			stopper := proc.ShellStop(strconv.Itoa(cmd.Process.Pid), grace, true)
			out, err := exec.Command("/bin/sh", "-c", stopper).CombinedOutput()
			if err != nil {
				t.Fatalf("stop script: %v: %s", err, out)
			}
			select {
			case ws := <-ended:
				if !ws.Signaled() || ws.Signal() != tc.want {
					t.Errorf("ended %v, want by %v", ws.Signal(), tc.want)
				}
			case <-time.After(time.Minute):
				t.Fatal("the stop script returned but the group lives")
			}
		})
	}
	if s := proc.ShellStop("$$", grace, false); !strings.HasPrefix(s, "kill -INT -$$") || !strings.Contains(s, "kill -KILL -$$") {
		t.Errorf("in-group stop %q", s)
	}
}
