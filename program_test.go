package drove_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProgram(t *testing.T) {
	prog := script(t, `echo "args: $*"; echo "to stderr" >&2; exit "$1"`)
	c := newCluster(t, drove.Program(prog))
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"0"}, 0},
		{[]string{"3", "x y"}, 3},
		{[]string{"7", "$(touch /tmp/drove-pwned)", "'q'", "a;b"}, 7},
	}
	for _, tt := range tests {
		j := submit(t, c, tt.args)
		code, err := result(t, j)
		if err != nil || code != tt.code || j.Status() != drove.Finished {
			t.Errorf("%q: exit %d, %v, %s; want exit %d Finished", tt.args, code, err, j.Status(), tt.code)
		}
		if want := "args: " + strings.Join(tt.args, " ") + "\n"; string(j.Stdout()) != want {
			t.Errorf("stdout %q, want %q", j.Stdout(), want)
		}
		if string(j.Stderr()) != "to stderr\n" {
			t.Errorf("stderr %q", j.Stderr())
		}
	}
	if _, err := os.Stat("/tmp/drove-pwned"); err == nil {
		t.Error("an argument was run by a shell")
	}
}

func TestProgramDependsAndPath(t *testing.T) {
	dir := t.TempDir()
	helper := filepath.Join(dir, "helper.sh")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\necho helper ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("line1\nline2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := script(t, `helper.sh; wc -l < data.txt`)
	c := newCluster(t, drove.Program(prog), drove.WithDepends(helper, data))
	j := submit(t, c, nil)
	if code, err := result(t, j); err != nil || code != 0 {
		t.Fatalf("exit %d %v, stderr %q", code, err, j.Stderr())
	}
	if got := string(j.Stdout()); got != "helper ran\n2\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestProgramSignalAndCancel(t *testing.T) {
	c := newCluster(t, drove.Program(script(t, `kill -KILL $$`)))
	j := submit(t, c, nil)
	_, err := result(t, j)
	var xe *drove.ExitError
	if !errors.As(err, &xe) || xe.Signal == 0 || j.Status() != drove.Terminated {
		t.Fatalf("killed program: %v %s", err, j.Status())
	}

	// SIGINT ends a plain sleep at once.
	s := newCluster(t, drove.Program("sleep"))
	long := submit(t, s, []string{"60"})
	waitStatus(t, long, drove.Running)
	time.Sleep(50 * time.Millisecond) // let it start
	start := time.Now()
	_ = s.Cancel(long)
	if _, err := result(t, long); !errors.Is(err, drove.ErrCancelled) || long.Status() != drove.Cancelled {
		t.Fatalf("cancelled program: %v %s", err, long.Status())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}

	// A program that traps SIGINT and SIGTERM is killed after two grace periods.
	stubbornProg := script(t, `trap '' INT TERM; sleep 60 & wait; sleep 60`)
	k := newCluster(t, drove.Program(stubbornProg))
	j2 := submit(t, k, nil)
	waitStatus(t, j2, drove.Running)
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	_ = k.Cancel(j2)
	if _, err := result(t, j2); !errors.Is(err, drove.ErrCancelled) {
		t.Fatalf("stubborn program: %v", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("stubborn program stopped after %v, before SIGKILL was due", d)
	}
}

func TestProgramTimeout(t *testing.T) {
	c := newCluster(t, drove.Program("sleep"))
	j := submit(t, c, []string{"60"}, drove.Timeout(100*time.Millisecond))
	if _, err := result(t, j); !errors.Is(err, drove.ErrTimeout) || j.Status() != drove.Terminated {
		t.Fatalf("got %v %s", err, j.Status())
	}
}
