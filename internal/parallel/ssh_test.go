package parallel

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestHostLost breaks the only host's connection in the middle of a run
// (the sshd processes serving it are killed; the listener stays): the loss
// is reported, the jobs that were running are run again, and the host is
// reconnected and runs the rest.
func TestHostLost(t *testing.T) { forModes(t, testHostLost) }

func testHostLost(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool, err := sshconn.NewPool(sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	killed := make(chan int, 1)
	var errb bytes.Buffer
	// Once the first job has printed: the host is in use, agent and all.
	out := afterFirstWrite(func() {
		n, err := s.KillConnections()
		if err != nil {
			t.Error(err)
		}
		killed <- n
	})
	sum, err := Run(context.Background(), Config{
		Template: "sleep 0.2; echo",
		Sources:  []Source{{Args: strings.Fields("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20")}},
		Logins:   []hostset.Login{{Host: s.Aliases[0], Slots: 2}},
		Pool:     pool,
		Agent:    m.launcher(t),
		Stdout:   out,
		Stderr:   &errb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-killed; n == 0 {
		t.Fatal("no sshd connection process was killed")
	}
	got := strings.Fields(out.String())
	if len(got) != 20 || sum.Failed != 0 || sum.ExitStatus() != 0 {
		t.Errorf("%d jobs printed (%q), summary %+v, stderr %q", len(got), got, sum, errb.String())
	}
	if !strings.Contains(errb.String(), "connection lost") || !strings.Contains(errb.String(), s.Aliases[0]+": reconnected") {
		t.Errorf("stderr %q", errb.String())
	}
	if len(sum.HostsDown) != 0 {
		t.Errorf("hosts down %v after the host came back", sum.HostsDown)
	}
}

// TestHostLostForGood closes the pool in the middle of a run, so the host
// cannot come back: the lost host is reported, and the jobs nobody can run
// any more count as failed instead of waiting for ever.
func TestHostLostForGood(t *testing.T) { forModes(t, testHostLostForGood) }

func testHostLostForGood(t *testing.T, m mode) {
	s := sshtest.Start(t)
	pool, err := sshconn.NewPool(sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var errb bytes.Buffer
	out := afterFirstWrite(func() { pool.Close() })
	start := time.Now()
	sum, err := Run(context.Background(), Config{
		Template: "sleep 0.2; echo",
		Sources:  []Source{{Args: strings.Fields("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20")}},
		Logins:   []hostset.Login{{Host: s.Aliases[0], Slots: 2}},
		Pool:     pool,
		Agent:    m.launcher(t),
		Stdout:   out,
		Stderr:   &errb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	done := len(strings.Fields(out.String()))
	if done == 0 || done == 20 || sum.Failed == 0 || sum.ExitStatus() == 0 {
		t.Errorf("%d jobs printed, summary %+v", done, sum)
	}
	if !strings.Contains(errb.String(), "connection lost") || !strings.Contains(errb.String(), "no host left") {
		t.Errorf("stderr %q", errb.String())
	}
	if len(sum.HostsDown) != 1 || sum.HostsDown[0] != s.Aliases[0] {
		t.Errorf("hosts down %v", sum.HostsDown)
	}
}

// TestHostGoneOtherCarriesOn stops one of two sshds in the middle of a run:
// its host is reconnected to in vain and given up, and the other host runs
// every job, the lost ones included.
func TestHostGoneOtherCarriesOn(t *testing.T) { forModes(t, testHostGoneOtherCarriesOn) }

func testHostGoneOtherCarriesOn(t *testing.T, m mode) {
	gone, stays := sshtest.Start(t), sshtest.Start(t)
	pool, err := sshconn.NewPool(sshconn.Config{ConfigFile: "none", NoAgent: true, User: sshtest.User,
		KnownHosts: []string{gone.KnownHosts, stays.KnownHosts}, IdentityFiles: []string{gone.KeyPath, stays.KeyPath}})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var errb bytes.Buffer
	out := afterFirstWrite(gone.Stop)
	sum, err := Run(context.Background(), Config{
		Template:       "sleep 0.2; echo",
		Sources:        []Source{{Args: strings.Fields("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20")}},
		Logins:         []hostset.Login{{Host: gone.Addrs[0], Slots: 2}, {Host: stays.Addrs[0], Slots: 2}},
		Pool:           pool,
		Agent:          m.launcher(t),
		ReconnectDelay: 10 * time.Millisecond,
		Stdout:         out,
		Stderr:         &errb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(strings.Fields(out.String())); got != 20 || sum.Failed != 0 {
		t.Errorf("%d jobs printed, summary %+v, stderr %q", got, sum, errb.String())
	}
	for _, want := range []string{gone.Addrs[0] + ": connection lost", gone.Addrs[0] + ": giving up"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q: %q", want, errb.String())
		}
	}
	if len(sum.HostsDown) != 1 || sum.HostsDown[0] != gone.Addrs[0] {
		t.Errorf("hosts down %v", sum.HostsDown)
	}
}

// firstWrite is a buffer that calls a function, in the background, when
// it is first written to.
type firstWrite struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
	f    func()
}

// afterFirstWrite returns a buffer that calls f once something is written
// to it: a job has run and printed.
func afterFirstWrite(f func()) *firstWrite { return &firstWrite{f: f} }

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { go w.f() })
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *firstWrite) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
