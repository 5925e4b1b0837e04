package sshexec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestFetchStaysInCurrentDir returns files (--return) from a hostile SFTP
// server into a current directory where out is a symbolic link leading out
// of it, as an earlier download from that server could have left: out/x
// must not be written through it.
func TestFetchStaysInCurrentDir(t *testing.T) {
	s := sshtest.StartHostile(t, sshtest.Listings(map[string][]sshtest.Entry{
		"/work":     {{Name: "ok.txt", Mode: 0o640, Data: []byte("ok")}, {Name: "out", Mode: fs.ModeDir | 0o755}},
		"/work/out": {{Name: "x", Mode: 0o644, Data: []byte("pwned")}},
	}))
	pool, err := sshconn.NewPool(sshconn.Config{
		ConfigFile:    s.SSHConfig,
		KnownHosts:    []string{s.KnownHosts},
		IdentityFiles: []string{s.KeyPath},
		NoAgent:       true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sc := sched.New(sched.Config{})
	defer sc.Close(t.Context())
	e, err := New(t.Context(), pool, s.Alias, Config{Slots: 1}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(t.Context())

	for _, target := range []string{"absolute", "../outside"} {
		t.Run(target, func(t *testing.T) {
			base := t.TempDir()
			cwd, outside := filepath.Join(base, "cwd"), filepath.Join(base, "outside")
			for _, d := range []string{cwd, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if target == "absolute" {
				target = outside
			}
			if err := os.Symlink(target, filepath.Join(cwd, "out")); err != nil {
				t.Fatal(err)
			}
			t.Chdir(cwd)
			n, err := e.fetch(t.Context(), "/work", []string{"ok.txt"})
			if b, _ := os.ReadFile("ok.txt"); err != nil || n != 2 || string(b) != "ok" {
				t.Fatalf("fetch ok.txt: %d, %v; got %q", n, err, b)
			}
			if fi, _ := os.Stat("ok.txt"); fi.Mode().Perm() != 0o640 {
				t.Errorf("ok.txt: mode %v", fi.Mode())
			}
			_, err = e.fetch(t.Context(), "/work", []string{"out/x"})
			if err == nil {
				t.Error("fetch out/x: wrote through the link")
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside the current directory: %v", entries)
			}
			if entries, _ := os.ReadDir(cwd); len(entries) != 2 {
				t.Errorf("left in the current directory: %v", entries)
			}
			t.Logf("fetch out/x: %v", err)
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is no *fs.PathError", err)
			}
		})
	}
}
