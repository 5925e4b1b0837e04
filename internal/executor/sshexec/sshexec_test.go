package sshexec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/schedtest"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestMain makes the test binary the agent too: the executors install it
// on the hosts and start it there with the agent's environment.
func TestMain(m *testing.M) {
	if sshagent.Serving() {
		os.Exit(sshagent.Main())
	}
	goleak.VerifyTestMain(m)
}

// mode is how commands reach a host: through an agent, or a session each.
type mode struct {
	name  string
	agent bool
}

// cfg returns c for the mode: with an agent launcher that fails the test
// if a host cannot run the agent.
func (m mode) cfg(t *testing.T, c sshexec.Config) sshexec.Config {
	if m.agent {
		c.Agent = &sshagent.Launcher{Warn: func(target string, err error) {
			t.Errorf("no agent on %s: %v", target, err)
		}}
	}
	return c
}

// forModes runs test once through agents and once with a session per
// command.
func forModes(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range []mode{{"agent", true}, {"session", false}} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

func newPool(t *testing.T, s *sshtest.Server) *sshconn.Pool {
	t.Helper()
	p, err := sshconn.NewPool(sshconn.Config{
		ConfigFile:    s.SSHConfig,
		KnownHosts:    []string{s.KnownHosts},
		IdentityFiles: []string{s.KeyPath},
		NoAgent:       true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type spec struct{ j *sshexec.Job }

func (s spec) ShellJob() *sshexec.Job { return s.j }

// cluster is a scheduler with one executor per host.
func cluster(t *testing.T, m mode, s *sshtest.Server, pool *sshconn.Pool, slots int, hosts ...string) *sched.Scheduler {
	t.Helper()
	sc := sched.New(sched.Config{Reentrant: true})
	for _, h := range hosts {
		e, err := sshexec.New(context.Background(), pool, h, m.cfg(t, sshexec.Config{Slots: slots, KillGrace: 300 * time.Millisecond}), sc)
		if err != nil {
			t.Fatal(err)
		}
		if e.Agent() != m.agent {
			t.Fatalf("agent %v, want %v", e.Agent(), m.agent)
		}
		if err := sc.AddNode(h, e.Slots(), e); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sc.Close(ctx)
	})
	return sc
}

func TestCommands(t *testing.T) { forModes(t, testCommands) }

func testCommands(t *testing.T, m mode) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	pool := newPool(t, s)
	sc := cluster(t, m, s, pool, 2, s.Aliases[0], s.Target(1))
	hostile := []string{
		`it's "quoted" \ back`,
		`$(echo no) ; echo no && echo no | cat; ` + "`echo no`",
		"two\nlines\n\ttabbed",
		`*.go ~ $HOME ${x:-y} !x #hash`,
		"",
	}
	tests := []struct {
		name       string
		cmd        string
		stdin      []byte
		env        []string
		wantOut    string
		wantErr    string
		wantCode   int
		wantSignal bool
	}{
		{name: "ok", cmd: "echo hello", wantOut: "hello\n"},
		{name: "stderr and code", cmd: "echo out; echo err >&2; exit 3", wantOut: "out\n", wantErr: "err\n", wantCode: 3},
		{name: "signal", cmd: "kill -KILL $$", wantCode: -1, wantSignal: true},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: []byte("shout\n"), wantOut: "SHOUT\n"},
		{name: "env", cmd: `printf %s "$GREETING"`, env: []string{"GREETING=hi $(there)"}, wantOut: "hi $(there)"},
		{name: "login shell", cmd: "echo $0", wantOut: "sh\n"},
	}
	for i, h := range hostile {
		tests = append(tests, struct {
			name       string
			cmd        string
			stdin      []byte
			env        []string
			wantOut    string
			wantErr    string
			wantCode   int
			wantSignal bool
		}{name: fmt.Sprintf("hostile%d", i), cmd: "printf '%s' " + sshconn.Quote(h), wantOut: h})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			task := &sched.Task{Ref: spec{&sshexec.Job{Command: tt.cmd, Stdin: tt.stdin, Env: tt.env}}}
			res := schedtest.Run(t, sc, task)
			if got := schedtest.ExitCode(t, res); got != tt.wantCode {
				t.Errorf("exit code %d, want %d (%v)", got, tt.wantCode, res.Err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErr {
				t.Errorf("stdout %q stderr %q, want %q %q", res.Stdout, res.Stderr, tt.wantOut, tt.wantErr)
			}
			var xe *proc.ExitError
			switch {
			case tt.wantCode == 0:
				if task.State() != sched.Finished || res.Err != nil {
					t.Errorf("state %v err %v", task.State(), res.Err)
				}
			case !errors.As(res.Err, &xe):
				t.Errorf("err %v, want *proc.ExitError", res.Err)
			case tt.wantSignal && xe.Signal == 0:
				t.Errorf("signal %v, want signalled=%v", xe.Signal, tt.wantSignal)
			}
			if res.Start.IsZero() || res.End.Before(res.Start) || res.Sent == 0 {
				t.Errorf("times %v %v sent %d", res.Start, res.End, res.Sent)
			}
		})
	}
}

func TestInputIsCommand(t *testing.T) { forModes(t, testInputIsCommand) }

func testInputIsCommand(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	sc := cluster(t, m, s, pool, 1, s.Aliases[0])
	res := schedtest.Run(t, sc, &sched.Task{Input: []byte("echo plain")})
	if string(res.Stdout) != "plain\n" {
		t.Fatalf("stdout %q", res.Stdout)
	}
}

func TestSlotsFromNproc(t *testing.T) { forModes(t, testSlotsFromNproc) }

func testSlotsFromNproc(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	e, err := sshexec.New(context.Background(), pool, s.Aliases[0], m.cfg(t, sshexec.Config{}), sched.New(sched.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	want := 0
	if out, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		want = strings.Count(string(out), "processor\t:")
	}
	if e.Slots() < 1 || (want > 0 && e.Slots() > want) {
		t.Fatalf("slots %d, cpus %d", e.Slots(), want)
	}
}

func TestSlotNumbers(t *testing.T) { forModes(t, testSlotNumbers) }

func testSlotNumbers(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	sc := cluster(t, m, s, pool, 3, s.Aliases[0])
	var tasks []*sched.Task
	for i := 0; i < 3; i++ {
		tasks = append(tasks, &sched.Task{Ref: spec{&sshexec.Job{CommandFor: func(_ string, slot int) string { return fmt.Sprintf("sleep 0.3; echo %d", slot) }}}})
	}
	ctx := context.Background()
	for _, task := range tasks {
		sc.Submit(ctx, task)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		task.Wait(ctx)
		seen[strings.TrimSpace(string(task.Result().Stdout))] = true
	}
	if len(seen) != 3 || !seen["1"] || !seen["2"] || !seen["3"] {
		t.Fatalf("slots seen %v", seen)
	}
}

// remoteCount counts the remote processes whose command line contains
// marker, over a fresh session.
func remoteCount(t *testing.T, pool *sshconn.Pool, host, marker string) int {
	t.Helper()
	var out bytes.Buffer
	// The [x] trick keeps pgrep from matching the shell running it.
	pat := "[" + marker[:1] + "]" + marker[1:]
	_, err := pool.Run(context.Background(), host, &sshconn.Cmd{Command: "pgrep -f -c " + sshconn.Quote(pat) + " || true", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(out.String(), &n)
	return n
}

func TestTimeoutAndCancelKillRemoteGroup(t *testing.T) {
	forModes(t, testTimeoutAndCancelKillRemoteGroup)
}

func testTimeoutAndCancelKillRemoteGroup(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	sc := cluster(t, m, s, pool, 4, s.Aliases[0])
	for _, how := range []string{"timeout", "cancel"} {
		t.Run(how, func(t *testing.T) {
			marker := "drovemark" + how
			// A child in the background and one in the foreground, and a
			// trap that ignores SIGTERM: only a SIGKILL of the whole group
			// ends them all.
			cmd := fmt.Sprintf("trap '' TERM; sh -c 'sleep 300; : %s' & sh -c 'trap \"\" TERM; sleep 301; : %s'", marker, marker)
			task := &sched.Task{Ref: spec{&sshexec.Job{Command: cmd}}}
			if how == "timeout" {
				task.Timeout = 500 * time.Millisecond
			}
			ctx := context.Background()
			if err := sc.Submit(ctx, task); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for remoteCount(t, pool, s.Aliases[0], marker) < 2 {
				if time.Now().After(deadline) {
					t.Fatal("remote processes never started")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if how == "cancel" {
				sc.Cancel(task)
			}
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if err := task.Wait(wctx); err != nil {
				t.Fatal("task did not end")
			}
			res := task.Result()
			want := sched.ErrTimeout
			wantState := sched.Terminated
			if how == "cancel" {
				want, wantState = sched.ErrCancelled, sched.Cancelled
			}
			if !errors.Is(res.Err, want) || task.State() != wantState {
				t.Errorf("state %v err %v, want %v %v", task.State(), res.Err, wantState, want)
			}
			if n := remoteCount(t, pool, s.Aliases[0], marker); n != 0 {
				t.Errorf("%d remote processes left", n)
			}
		})
	}
}

func TestUnreachableAndUnknownKey(t *testing.T) { forModes(t, testUnreachableAndUnknownKey) }

func testUnreachableAndUnknownKey(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	_, err := sshexec.New(context.Background(), pool, "down", m.cfg(t, sshexec.Config{Slots: 1}), sched.New(sched.Config{}))
	var ce *sshconn.ConnError
	if !errors.As(err, &ce) {
		t.Errorf("down host: %v, want *sshconn.ConnError", err)
	}
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o644)
	strict, err := sshconn.NewPool(sshconn.Config{ConfigFile: "none", KnownHosts: []string{empty}, IdentityFiles: []string{s.KeyPath}, NoAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	_, err = sshexec.New(context.Background(), strict, s.Target(0), m.cfg(t, sshexec.Config{Slots: 1}), sched.New(sched.Config{}))
	var he *sshconn.HostKeyError
	if !errors.As(err, &he) || he.Changed {
		t.Errorf("unknown key: %v, want *sshconn.HostKeyError", err)
	}
}

func TestLostConnection(t *testing.T) { forModes(t, testLostConnection) }

func testLostConnection(t *testing.T, m mode) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	pool := newPool(t, s)
	other := newPool(t, s)
	var downs []string
	events := make(chan sched.NodeEvent, 10)
	sc := sched.New(sched.Config{Reentrant: true, OnNode: func(ev sched.NodeEvent) { events <- ev }})
	defer sc.Close(context.Background())
	e0, err := sshexec.New(context.Background(), pool, s.Aliases[0], m.cfg(t, sshexec.Config{Slots: 1}), sc)
	if err != nil {
		t.Fatal(err)
	}
	sc.AddNode("a", 1, e0)
	task := &sched.Task{Input: []byte("sleep 1; hostname; echo done")}
	sc.Submit(context.Background(), task)
	time.Sleep(300 * time.Millisecond)
	pool.Close() // the connection to host0 is gone
	e1, err := sshexec.New(context.Background(), other, s.Aliases[1], m.cfg(t, sshexec.Config{Slots: 1}), sc)
	if err != nil {
		t.Fatal(err)
	}
	sc.AddNode("b", 1, e1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if task.State() != sched.Finished || task.NodeName() != "b" {
		t.Errorf("state %v on %q, err %v", task.State(), task.NodeName(), task.Result().Err)
	}
	for len(events) > 0 {
		if ev := <-events; ev.Kind == sched.NodeDown {
			downs = append(downs, ev.Node)
			var ce *sshconn.ConnError
			if !errors.As(ev.Err, &ce) && !errors.Is(ev.Err, sshconn.ErrClosed) {
				t.Errorf("node down error %v does not wrap *sshconn.ConnError", ev.Err)
			}
		}
	}
	if len(downs) != 1 || downs[0] != "a" {
		t.Errorf("nodes down %v", downs)
	}
}

func TestFiles(t *testing.T) { forModes(t, testFiles) }

func testFiles(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	local := t.TempDir()
	t.Chdir(local)
	os.WriteFile("in.txt", []byte("payload\n"), 0o640)
	os.MkdirAll("sub", 0o755)
	os.WriteFile("sub/base.txt", []byte("base\n"), 0o644)
	sc := sched.New(sched.Config{})
	e, err := sshexec.New(context.Background(), pool, s.Aliases[0], sshexec.Config{Slots: 2, BaseFiles: []string{"sub/base.txt"}, CleanupBase: true}, sc)
	if err != nil {
		t.Fatal(err)
	}
	sc.AddNode("h", 2, e)
	wd := fmt.Sprintf("drove-wd-%d", time.Now().UnixNano())
	task := &sched.Task{Ref: spec{&sshexec.Job{
		Command:  "cat in.txt ~/sub/base.txt > out.txt; stat -c %a in.txt; pwd",
		Dir:      wd,
		Transfer: []string{"in.txt"},
		Return:   []string{"out.txt"},
		Cleanup:  true,
	}}}
	res := schedtest.Run(t, sc, task)
	if task.State() != sched.Finished {
		t.Fatalf("state %v err %v stderr %s", task.State(), res.Err, res.Stderr)
	}
	if got := string(res.Stdout); !strings.HasPrefix(got, "640\n") || !strings.HasSuffix(got, "/"+wd+"\n") {
		t.Errorf("stdout %q", got)
	}
	if b, _ := os.ReadFile("out.txt"); string(b) != "payload\nbase\n" {
		t.Errorf("returned %q", b)
	}
	if res.Sent < 8 || res.Received < 13 {
		t.Errorf("sent %d received %d", res.Sent, res.Received)
	}
	ls := schedtest.Run(t, sc, &sched.Task{Input: []byte("ls -A " + wd + "; ls sub")})
	if string(ls.Stdout) != "base.txt\n" {
		t.Errorf("left on host: %q", ls.Stdout)
	}
	sc.Close(context.Background())
	var out bytes.Buffer
	pool.Run(context.Background(), s.Aliases[0], &sshconn.Cmd{Command: "ls sub; rmdir " + wd + " sub", Stdout: &out})
	if out.Len() != 0 {
		t.Errorf("basefile not cleaned up: %q", out.String())
	}
}

// TestReconnect breaks the connection under a running command: the node
// goes down (reported once by the executor), the fleet dials the host again
// and adds a new executor under the same name, and the task runs again
// there.
func TestReconnect(t *testing.T) { forModes(t, testReconnect) }

func testReconnect(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool := newPool(t, s)
	events := make(chan sched.NodeEvent, 10)
	sc := sched.New(sched.Config{Reentrant: true, OnNode: func(ev sched.NodeEvent) { events <- ev }})
	defer sc.Close(context.Background())
	f := fleet.New(sc, fleet.Config{Backoff: fleet.Backoff{Initial: 100 * time.Millisecond, Attempts: 3}})
	defer f.Close()
	dial := func(ctx context.Context) (fleet.Conn, error) {
		e, err := sshexec.New(ctx, pool, s.Aliases[0], m.cfg(t, sshexec.Config{Slots: 1}), sc)
		if err != nil {
			return fleet.Conn{}, err
		}
		return fleet.Conn{Executor: e, Slots: 1, Name: "a"}, nil
	}
	if err := f.Add(t.Context(), fleet.Member{Key: s.Aliases[0], Dial: dial})[0]; err != nil {
		t.Fatal(err)
	}
	// The first attempt leaves a mark and sleeps; the second finds it.
	mark := filepath.Join(s.Dir, "mark")
	os.Chmod(s.Dir, 0o777)
	task := &sched.Task{Input: []byte("if [ -e " + mark + " ]; then echo again; else touch " + mark + "; sleep 5; fi")}
	sc.Submit(context.Background(), task)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first attempt did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, err := s.KillConnections(); n == 0 || err != nil {
		t.Fatalf("killed %d: %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	res := task.Result()
	if task.State() != sched.Finished || task.NodeName() != "a" || string(res.Stdout) != "again\n" {
		t.Errorf("state %v on %q, stdout %q, err %v", task.State(), task.NodeName(), res.Stdout, res.Err)
	}
	var kinds []string
	for len(events) > 0 {
		ev := <-events
		kinds = append(kinds, ev.Node+" "+ev.Kind.String())
	}
	if got := strings.Join(kinds, ", "); got != "a up, a down, a up" {
		t.Errorf("node events %q", got)
	}
}
