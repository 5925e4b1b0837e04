package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestRunTransferCancelled interrupts drove run while --transfer is in the
// middle of a large file: the host must be left with neither a partial
// file under the final name nor the temporary file. The test user's files
// are on this machine, so the test looks at them directly.
func TestRunTransferCancelled(t *testing.T) { forModes(t, testRunTransferCancelled) }

func testRunTransferCancelled(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	t.Chdir(t.TempDir())
	// Sparse: reading it costs nothing, so the transfer's speed is the
	// SFTP session's.
	f, err := os.Create("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wd := workdirFor(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := runSub(ctx, t, newRunCmd, "", m.with(append(sshArgs(s), "-S", "host0", "--workdir", wd, "--transfer", "cat {} > /dev/null", ":::", "big.bin"))...)
		done <- result{code, out, errs}
	}()
	// Cancel once a file in the workdir has data: in the middle of the
	// transfer.
	var r result
	seen := false
wait:
	for {
		select {
		case r = <-done:
			break wait
		case <-time.After(time.Millisecond):
		}
		if !seen && fileWithData(wd) {
			seen = true
			cancel()
		}
	}
	if !seen {
		t.Fatalf("the transfer ended before it could be cancelled: exit %d, %s", r.code, r.errs)
	}
	if r.code != 130 {
		t.Errorf("exit %d after the interrupt, want 130; stderr: %s", r.code, r.errs)
	}
	entries, err := os.ReadDir(wd)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, _ := e.Info()
		t.Errorf("left on the host: %s (%d bytes)", e.Name(), fi.Size())
	}
}

// fileWithData reports whether dir holds a file with data in it: the
// transfer's temporary file (or, were it written in place, the final one).
func fileWithData(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			return true
		}
	}
	return false
}

// workdirFor returns a fresh absolute --workdir the test user can write to
// and the test can read, removed after the test.
func workdirFor(t *testing.T) string {
	t.Helper()
	wd := filepath.Join(os.TempDir(), fmt.Sprintf("drove-run-xfer-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(wd) })
	return wd
}

// TestRunTransferKeepsMtimes checks that --basefile, --transfer and
// --return keep modification times, as GNU parallel's rsync does.
func TestRunTransferKeepsMtimes(t *testing.T) { forModes(t, testRunTransferKeepsMtimes) }

func testRunTransferKeepsMtimes(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	t.Chdir(t.TempDir())
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, name := range []string{"in.txt", "base.txt"} {
		if err := os.WriteFile(name, []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, old, old); err != nil {
			t.Fatal(err)
		}
	}
	wd := workdirFor(t)
	// The job gives its output an old time of its own, which --return
	// must bring back.
	const outTime = 981173106 // 2001-02-03T04:05:06Z
	code, _, errs := m.drun(t, "", append(sshArgs(s), "-S", "host0", "--workdir", wd, "--basefile", "base.txt", "--transfer", "--return", "{}.out",
		fmt.Sprintf("cat {} base.txt > {}.out && touch -m -d @%d {}.out", outTime), ":::", "in.txt")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, tt := range []struct {
		path string
		want time.Time
	}{
		{filepath.Join(wd, "in.txt"), old},
		{filepath.Join(wd, "base.txt"), old},
		{"in.txt.out", time.Unix(outTime, 0)},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if !fi.ModTime().Equal(tt.want) {
			t.Errorf("%s: mtime %v, want %v", tt.path, fi.ModTime().UTC(), tt.want.UTC())
		}
	}
	if b, _ := os.ReadFile("in.txt.out"); string(b) != "in.txt\nbase.txt\n" {
		t.Errorf("returned %q", b)
	}
}
