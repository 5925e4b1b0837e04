package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/remote"
)

// These tests download from a hostile SFTP server, one that lists names no
// file system has, into dest, beside which lies outside, holding a canary
// file. Nothing may change outside dest.

func dialHostile(t *testing.T, s *sshtest.Hostile) *remote.Host {
	t.Helper()
	h, err := remote.Dial(t.Context(), s.Alias, remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// canaryTime is the modification time of outside and its canary.
var canaryTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// newCanary returns dest (not created) and outside, a directory beside it
// holding the file canary.
func newCanary(t *testing.T) (dest, outside string) {
	t.Helper()
	base := t.TempDir()
	outside = filepath.Join(base, "outside")
	must(t, os.Mkdir(outside, 0o750))
	canary := filepath.Join(outside, "canary")
	must(t, os.WriteFile(canary, []byte("untouched"), 0o640))
	must(t, os.Chtimes(canary, canaryTime, canaryTime))
	must(t, os.Chtimes(outside, canaryTime, canaryTime))
	return filepath.Join(base, "dest"), outside
}

// checkCanary fails t if anything beside dest and in outside changed, or if
// dest is not a real directory (when it exists).
func checkCanary(t *testing.T, dest, outside string) {
	t.Helper()
	if fi, err := os.Lstat(dest); err == nil && !fi.IsDir() {
		t.Errorf("dest is now %v", fi.Mode())
	}
	base, err := os.ReadDir(filepath.Dir(dest))
	must(t, err)
	var names []string
	for _, e := range base {
		names = append(names, e.Name())
	}
	if slices.ContainsFunc(names, func(n string) bool { return n != "dest" && n != "outside" }) {
		t.Errorf("written beside dest: %q", names)
	}
	in, err := os.ReadDir(outside)
	must(t, err)
	if len(in) != 1 || in[0].Name() != "canary" {
		t.Errorf("written outside dest: %v", in)
	}
	for _, p := range []string{outside, filepath.Join(outside, "canary")} {
		fi, err := os.Stat(p)
		must(t, err)
		want := fs.FileMode(0o750) | fs.ModeDir
		if p != outside {
			want = 0o640
		}
		if fi.Mode() != want || !fi.ModTime().Equal(canaryTime) {
			t.Errorf("%s changed: mode %v mtime %v", p, fi.Mode(), fi.ModTime())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "canary")); string(b) != "untouched" {
		t.Errorf("canary overwritten: %q", b)
	}
}

// TestDownloadHostileNames lists under /work a name that is not one path
// element (as the server sends it; pkg/sftp drops "." and ".." and reduces
// the others to their last element, so "x/.." arrives as ".." and "a/b" as
// "b"), as a symbolic link to outside, a directory and a file, followed by
// an ordinary file f.
func TestDownloadHostileNames(t *testing.T) {
	names := []struct {
		name string
		want error // nil: pkg/sftp makes it harmless
	}{
		{"/", remote.ErrBadName},
		{"x/..", remote.ErrBadName},
		{"", remote.ErrBadName},
		{"nul\x00byte", remote.ErrBadName},
		{"..", nil},  // dropped
		{"a/b", nil}, // arrives as b
	}
	for _, n := range names {
		for _, kind := range []string{"symlink", "dir", "file"} {
			t.Run(fmt.Sprintf("%s %q", kind, n.name), func(t *testing.T) {
				dest, outside := newCanary(t)
				e := sshtest.Entry{Name: n.name}
				switch kind {
				case "symlink":
					e.Mode, e.Target = fs.ModeSymlink|0o777, outside
				case "dir":
					e.Mode = fs.ModeDir | 0o777
				case "file":
					e.Mode, e.Data = 0o777, []byte("hostile")
				}
				f := sshtest.Entry{Name: "f", Mode: 0o666, Data: []byte("data")}
				s := sshtest.StartHostile(t, func(dir string) ([]sshtest.Entry, bool) {
					if dir == "/work" {
						return []sshtest.Entry{e, f}, true
					}
					// Below /work, whatever a name led to, is empty.
					return nil, strings.HasPrefix(dir, "/work/")
				})
				h := dialHostile(t, s)
				// Bounded, for the old code, which recursed into "/" for
				// ever.
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				err := h.Download(ctx, "/work", dest)
				checkCanary(t, dest, outside)
				if n.want == nil {
					if err != nil {
						t.Fatalf("Download: %v", err)
					}
					if b, err := os.ReadFile(filepath.Join(dest, "f")); string(b) != "data" {
						t.Errorf("f: %q, %v", b, err)
					}
					return
				}
				if !errors.Is(err, n.want) {
					t.Fatalf("Download: %v, want %v", err, n.want)
				}
				if msg := err.Error(); !strings.Contains(msg, "/work") || !strings.Contains(msg, "server listed") {
					t.Errorf("unclear message: %s", msg)
				}
				if _, err := h.ReadDir(ctx, "/work"); !errors.Is(err, n.want) {
					t.Errorf("ReadDir: %v, want %v", err, n.want)
				}
			})
		}
	}
}

// TestDownloadTwiceSymlinkThenDir downloads /work twice into the same dest:
// first x is a symbolic link leading out of dest, then a directory. The
// second download must not write through the link the first one made.
func TestDownloadTwiceSymlinkThenDir(t *testing.T) {
	for _, target := range []string{"absolute", "../outside"} {
		t.Run(target, func(t *testing.T) {
			dest, outside := newCanary(t)
			if target == "absolute" {
				target = outside
			}
			s := sshtest.StartHostile(t, sshtest.Listings(map[string][]sshtest.Entry{
				"/work": {{Name: "x", Mode: fs.ModeSymlink | 0o777, Target: target}},
			}))
			h := dialHostile(t, s)
			must(t, h.Download(t.Context(), "/work", dest))
			if got, err := os.Readlink(filepath.Join(dest, "x")); got != target {
				t.Fatalf("first download: x -> %q, %v", got, err)
			}
			s.SetTree(sshtest.Listings(map[string][]sshtest.Entry{
				"/work":   {{Name: "x", Mode: fs.ModeDir | 0o777}},
				"/work/x": {{Name: "canary", Mode: 0o666, Data: []byte("pwned")}, {Name: "new", Mode: 0o666, Data: []byte("pwned")}},
			}))
			err := h.Download(t.Context(), "/work", dest)
			if !errors.Is(err, remote.ErrLink) {
				t.Errorf("second download: %v, want ErrLink", err)
			}
			checkCanary(t, dest, outside)
		})
	}
}

// TestDownloadCycle serves a directory that contains itself: the download
// must end with ErrTooDeep after a bounded number of listings.
func TestDownloadCycle(t *testing.T) {
	dest, outside := newCanary(t)
	s := sshtest.StartHostile(t, func(dir string) ([]sshtest.Entry, bool) {
		return []sshtest.Entry{{Name: "loop", Mode: fs.ModeDir | 0o755}}, strings.HasPrefix(dir, "/work")
	})
	h := dialHostile(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := h.Download(ctx, "/work", dest)
	if !errors.Is(err, remote.ErrTooDeep) {
		t.Fatalf("Download: %v, want ErrTooDeep", err)
	}
	if n := s.Lists(); n > 300 {
		t.Errorf("%d listings", n)
	}
	checkCanary(t, dest, outside)
	if err := h.RemoveAll(ctx, "/work"); !errors.Is(err, remote.ErrTooDeep) {
		t.Errorf("RemoveAll: %v, want ErrTooDeep", err)
	}
}
