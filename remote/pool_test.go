package remote_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/remote"
)

func newPool(t *testing.T, s *sshtest.Server, targets []string, opts ...remote.PoolOption) *remote.Pool {
	t.Helper()
	opts = append([]remote.PoolOption{remote.WithHostOptions(remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent())}, opts...)
	p, err := remote.NewPool(t.Context(), targets, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPoolMap(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	p := newPool(t, s, []string{"host0", "host1", "down"}, remote.WithSlots(2))
	if got := p.Hosts(); len(got) != 2 {
		t.Fatalf("Hosts = %v", got)
	}
	if _, ok := p.Down()["down"]; !ok {
		t.Fatalf("Down = %v", p.Down())
	}
	inputs := make([]int, 40)
	for i := range inputs {
		inputs[i] = i
	}
	results := remote.Map(t.Context(), p, inputs, func(ctx context.Context, h *remote.Host, in int) (int, error) {
		out, err := h.Output(ctx, "sh", "-c", fmt.Sprintf("sleep 0.0%d; echo $((%d * %d))", in%5, in, in))
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	})
	used := map[string]int{}
	for i, r := range results {
		if r.Err != nil || r.Input != i || r.Output != i*i || r.Attempts != 1 {
			t.Errorf("result %d: %+v", i, r)
		}
		used[r.Host]++
	}
	if used["host0"] == 0 || used["host1"] == 0 {
		t.Errorf("work not spread: %v", used)
	}
}

// TestPoolHostDies kills host0's connection during an evaluation: that
// evaluation moves to another host, and host0, whose sshd still runs, is
// dialled again and back in the pool.
func TestPoolHostDies(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	p := newPool(t, s, []string{"host0", "host1"}, remote.WithSlots(1))
	var once sync.Once
	results := remote.Map(t.Context(), p, []string{"a", "b", "c", "d", "e", "f"}, func(ctx context.Context, h *remote.Host, in string) (string, error) {
		if h.Target() == "host0" {
			var err error
			killed := false
			once.Do(func() {
				killed = true
				// setsid's parent is this connection's sshd process.
				_, err = h.Run(ctx, &remote.Cmd{Command: "kill -9 $(ps -o ppid= -p $PPID); sleep 5"})
			})
			if killed {
				return "", err
			}
		}
		res, err := h.Run(ctx, &remote.Cmd{Command: "sleep 0.1; printf %s " + in})
		if err != nil {
			return "", err
		}
		return string(res.Stdout) + "@" + h.Target(), nil
	})
	moved := 0
	for _, r := range results {
		if r.Err != nil || !strings.HasPrefix(r.Output, r.Input+"@") {
			t.Errorf("%+v", r)
		}
		if r.Attempts == 2 {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("%d evaluations ran twice, want the one whose host died: %+v", moved, results)
	}
	waitFor(t, func() bool { return len(p.Hosts()) == 2 && len(p.Down()) == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPoolHostDiesDuringFileOps kills host0's connection while an
// evaluation that does nothing but file operations (a download) runs there:
// the SFTP error must be recognised as a lost host, so the evaluation is
// moved to host1 and succeeds, instead of failing.
func TestPoolHostDiesDuringFileOps(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	setup := dial(t, s)
	dir := tempDir(t, setup)
	const size = 16 << 20
	if _, err := setup.Run(t.Context(), &remote.Cmd{Command: fmt.Sprintf("head -c %d /dev/zero > big", size), Dir: dir}); err != nil {
		t.Fatal(err)
	}
	p := newPool(t, s, []string{"host0", "host1"}, remote.WithSlots(1))
	local := t.TempDir()
	var once sync.Once
	results := remote.Map(t.Context(), p, []string{"a", "b", "c", "d"}, func(ctx context.Context, h *remote.Host, in string) (int64, error) {
		var opts []remote.TransferOption
		if h.Target() == "host0" {
			// The first progress report on host0 kills its connection's
			// sshd process while the download waits for the callback.
			opts = append(opts, remote.WithProgress(func(int64) {
				once.Do(func() {
					h.Run(ctx, &remote.Cmd{Command: "kill -9 $(ps -o ppid= -p $PPID); sleep 5"})
				})
			}))
		}
		dst := filepath.Join(local, in+"-"+h.Target())
		if err := h.Download(ctx, dir+"/big", dst, opts...); err != nil {
			return 0, err
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	})
	moved := 0
	for _, r := range results {
		if r.Err != nil || r.Output != size {
			t.Errorf("%+v", r)
		}
		if r.Attempts == 2 {
			moved++
		}
	}
	// The evaluation whose host died ran again (on host1, or on host0
	// once it was dialled again), not counted as a retry.
	if moved != 1 {
		t.Errorf("%d evaluations ran twice, want 1: %+v", moved, results)
	}
	waitFor(t, func() bool { return len(p.Hosts()) == 2 })
}

// TestPoolHostComesBack stops one of two hosts' sshd in the middle of a
// Map and starts it again: the pool takes the host out, dials it again
// until it answers, and runs evaluations on it again; no evaluation is
// lost.
func TestPoolHostComesBack(t *testing.T) {
	gone, stays := sshtest.Start(t), sshtest.Start(t)
	goneHost, staysHost := gone.Target(0), stays.Target(0)
	p, err := remote.NewPool(t.Context(), []string{goneHost, staysHost}, remote.WithSlots(2),
		remote.WithHostOptions(remote.WithSSHConfig("none"), remote.WithoutAgent(),
			remote.WithKnownHosts(gone.KnownHosts, stays.KnownHosts), remote.WithIdentityFiles(gone.KeyPath, stays.KeyPath)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var ranOnGone, afterBack atomic.Int32
	var restarted atomic.Bool
	inputs := make([]int, 400)
	for i := range inputs {
		inputs[i] = i
	}
	done := make(chan []remote.Eval[int, int])
	go func() {
		done <- remote.Map(t.Context(), p, inputs, func(ctx context.Context, h *remote.Host, in int) (int, error) {
			if h.Target() == goneHost {
				ranOnGone.Add(1)
				if restarted.Load() {
					afterBack.Add(1)
				}
			}
			sleep := "sleep 0.05; "
			if afterBack.Load() >= 4 {
				sleep = "" // shown: finish quickly
			}
			out, err := h.Output(ctx, "sh", "-c", fmt.Sprintf("%secho $((%d * 2))", sleep, in))
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(strings.TrimSpace(string(out)))
		})
	}()
	waitFor(t, func() bool { return ranOnGone.Load() >= 4 })
	gone.Stop()
	waitFor(t, func() bool { return p.Down()[goneHost] != nil })
	if got := p.Hosts(); len(got) != 1 || got[0] != staysHost {
		t.Errorf("Hosts while %s is stopped: %v", goneHost, got)
	}
	gone.Restart(t)
	restarted.Store(true)
	results := <-done
	for i, r := range results {
		if r.Err != nil || r.Output != 2*i {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if afterBack.Load() == 0 {
		t.Errorf("no evaluation ran on %s after it came back; down: %v", goneHost, p.Down())
	}
	if got := p.Hosts(); len(got) != 2 {
		t.Errorf("Hosts after the restart: %v", got)
	}
}

func TestPoolRunAllAndCancel(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	p := newPool(t, s, []string{"host0", "host1"}, remote.WithSlots(1))
	res := p.RunAll(t.Context(), []*remote.Cmd{{Command: "echo one"}, {Command: "exit 3"}, remote.Command("echo", "$(two)")})
	if res[0].Err != nil || string(res[0].Output.Stdout) != "one\n" {
		t.Errorf("0: %+v", res[0])
	}
	var ee *remote.ExitError
	if !errors.As(res[1].Err, &ee) || ee.Code != 3 || res[1].Output == nil || res[1].Output.ExitCode != 3 {
		t.Errorf("1: %+v", res[1])
	}
	if string(res[2].Output.Stdout) != "$(two)\n" {
		t.Errorf("2: %+v", res[2])
	}

	// Cancelling ctx kills what runs and cancels what waits.
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	cmds := make([]*remote.Cmd, 6)
	for i := range cmds {
		cmds[i] = &remote.Cmd{Command: "sleep 5931"}
	}
	start := time.Now()
	res = p.RunAll(ctx, cmds)
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("cancel took %v", d)
	}
	for _, r := range res {
		if !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("after cancel: %+v", r)
		}
	}
	h := dial(t, s)
	if r, _ := h.Run(t.Context(), remote.Command("pgrep", "-f", "sleep 593[1]")); r == nil || r.ExitCode != 1 {
		t.Errorf("remote processes left: %+v", r)
	}
}

func TestPoolNoHosts(t *testing.T) {
	s := sshtest.Start(t)
	_, err := remote.NewPool(t.Context(), []string{"down"},
		remote.WithHostOptions(remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent()))
	var ce *remote.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
}

// TestPoolIdleHostTakesWaitingWork has a slow host and a fast one: waiting
// evaluations go to whichever host frees a slot, so the fast host does most
// of them, instead of each host getting its share up front.
func TestPoolIdleHostTakesWaitingWork(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	p := newPool(t, s, []string{"host0", "host1"}, remote.WithSlots(1))
	inputs := make([]int, 24)
	for i := range inputs {
		inputs[i] = i
	}
	results := remote.Map(t.Context(), p, inputs, func(ctx context.Context, h *remote.Host, in int) (int, error) {
		delay := "0.02"
		if h.Target() == "host0" {
			delay = "1"
		}
		if _, err := h.Run(ctx, remote.Command("sleep", delay)); err != nil {
			return 0, err
		}
		return in, nil
	})
	used := map[string]int{}
	for i, r := range results {
		if r.Err != nil || r.Output != i {
			t.Errorf("result %d: %+v", i, r)
		}
		used[r.Host]++
	}
	// host1 finishes an evaluation in about 1/50 of host0's time; host0
	// can take only a few before host1 has done the rest.
	if used["host0"] == 0 || used["host0"] > 6 || used["host1"] < 18 {
		t.Errorf("work per host %v: want most on the fast host1", used)
	}
}

// TestPoolRetries: WithRetries(n) tries a failing evaluation up to n more
// times, and the last error stays when every attempt fails.
func TestPoolRetries(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	var mu sync.Mutex
	tries := map[string]int{}
	// "flaky" fails its first attempt, "broken" every attempt.
	fn := func(ctx context.Context, h *remote.Host, in string) (string, error) {
		mu.Lock()
		tries[in]++
		n := tries[in]
		mu.Unlock()
		if in == "broken" || n == 1 {
			return "", fmt.Errorf("attempt %d of %s failed", n, in)
		}
		return in, nil
	}
	for _, tc := range []struct {
		retries                    int
		flakyErr                   bool
		flakyAttempts, brokenTries int
	}{
		{retries: 0, flakyErr: true, flakyAttempts: 1, brokenTries: 1},
		{retries: 2, flakyErr: false, flakyAttempts: 2, brokenTries: 3},
	} {
		t.Run(fmt.Sprint("retries=", tc.retries), func(t *testing.T) {
			clear(tries)
			p := newPool(t, s, []string{"host0", "host1"}, remote.WithSlots(1), remote.WithRetries(tc.retries))
			res := remote.Map(t.Context(), p, []string{"flaky", "broken"}, fn)
			flaky, broken := res[0], res[1]
			if (flaky.Err != nil) != tc.flakyErr || flaky.Attempts != tc.flakyAttempts {
				t.Errorf("flaky: %+v", flaky)
			}
			if !tc.flakyErr && flaky.Output != "flaky" {
				t.Errorf("flaky output %q", flaky.Output)
			}
			want := fmt.Sprintf("attempt %d of broken failed", tc.brokenTries)
			if broken.Err == nil || broken.Err.Error() != want || broken.Attempts != tc.brokenTries {
				t.Errorf("broken: %+v, want error %q", broken, want)
			}
			if len(p.Down()) != 0 {
				t.Errorf("an ordinary failure took a host down: %v", p.Down())
			}
		})
	}
}

// TestPoolDefaultSlots: without WithSlots, a host runs as many evaluations
// at once as it has online CPUs.
func TestPoolDefaultSlots(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	out, err := h.Output(t.Context(), "getconf", "_NPROCESSORS_ONLN")
	if err != nil {
		t.Fatal(err)
	}
	cpus, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, s, []string{"host0"})
	var mu sync.Mutex
	running, most := 0, 0
	inputs := make([]int, 3*cpus)
	remote.Map(t.Context(), p, inputs, func(ctx context.Context, h *remote.Host, _ int) (int, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return 0, nil
	})
	if most != cpus {
		t.Errorf("at most %d evaluations ran at once, want the host's %d CPUs", most, cpus)
	}
}
