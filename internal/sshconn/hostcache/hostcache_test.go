package hostcache_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/sshconn/hostcache"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

func TestParseUname(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"Linux x86_64", "linux/amd64", false},
		{"Linux aarch64\n", "linux/arm64", false},
		{"Darwin arm64", "darwin/arm64", false},
		{"Darwin x86_64", "darwin/amd64", false},
		{"FreeBSD amd64", "freebsd/amd64", false},
		{"Linux armv7l", "linux/arm", false},
		{"Linux ppc64le", "linux/ppc64le", false},
		{"Linux riscv64", "linux/riscv64", false},
		{"SunOS i86pc", "solaris/amd64", false},
		{"Plan9 x86_64", "", true},
		{"Linux vax", "", true},
		{"", "", true},
		{"Linux", "", true},
	}
	for _, tt := range tests {
		p, err := hostcache.ParseUname(tt.in)
		if (err != nil) != tt.err || (err == nil && p.String() != tt.want) {
			t.Errorf("ParseUname(%q) = %v, %v; want %q, error %v", tt.in, p, err, tt.want, tt.err)
		}
	}
}

// testUser returns the uid and gid of the sshtest user.
func testUser(t *testing.T) (int, int) {
	t.Helper()
	if err := sshtest.EnsureUser(); err != nil {
		t.Skip(err)
	}
	u, err := user.Lookup(sshtest.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// userDir creates dir owned by the test user, so that it can write there.
func userDir(t *testing.T, dir string) string {
	t.Helper()
	uid, gid := testUser(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hosts is a test setup: sshd on four addresses, where host0 is an
// ordinary host, host1 claims to be linux/arm64 (a fake uname first in its
// PATH), host2's cache is on a noexec file system (if one could be
// mounted) and host3's cache directory cannot be written.
type hosts struct {
	srv      *sshtest.Server
	pool     *sshconn.Pool
	caches   []string // XDG_CACHE_HOME of each host
	noexecOK string   // why host2 is not noexec, if it is not
}

func setup(t *testing.T) *hosts {
	if ok, why := sshtest.Available(); !ok && os.Getenv(sshtest.RequireEnv) != "1" {
		t.Skip(why)
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &hosts{}
	fake := filepath.Join(base, "fakebin")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\necho 'Linux aarch64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.caches = []string{
		userDir(t, filepath.Join(base, "c0")),
		userDir(t, filepath.Join(base, "c1")),
		filepath.Join(base, "noexec"),
		filepath.Join(base, "readonly"),
	}
	if err := os.MkdirAll(h.caches[2], 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := testUser(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("noexec,size=256m,uid=%d,gid=%d,mode=0755", uid, gid), "tmpfs", h.caches[2]).CombinedOutput(); err != nil {
		h.noexecOK = fmt.Sprintf("cannot mount a noexec tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
		userDir(t, h.caches[2])
	} else {
		t.Cleanup(func() { exec.Command("umount", "-l", h.caches[2]).Run() })
	}
	if err := os.MkdirAll(h.caches[3], 0o555); err != nil {
		t.Fatal(err)
	}
	// sshd takes the first SetEnv that applies: one line per host.
	cfg := []string{}
	for i, c := range h.caches {
		env := "  SetEnv XDG_CACHE_HOME=" + c
		if i == 1 {
			env += " PATH=" + fake + ":/usr/bin:/bin"
		}
		cfg = append(cfg, fmt.Sprintf("Match LocalAddress 127.0.0.%d", i+2), env)
	}
	h.srv = sshtest.Start(t, sshtest.WithHosts(4), sshtest.WithConfig(cfg...))
	p, err := sshconn.NewPool(sshconn.Config{ConfigFile: h.srv.SSHConfig})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h.pool = p
	return h
}

// self is the test binary, a Go executable for this platform that exits
// 0 at once when given checkArgs.
func self(t *testing.T) *hostcache.Blob {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := hostcache.NewBlob(exe)
	if err != nil {
		t.Fatal(err)
	}
	if b.Platform != hostcache.Local() {
		t.Fatalf("blob platform %v, want %v", b.Platform, hostcache.Local())
	}
	return b
}

var checkArgs = []string{"-test.run=^$"}

func TestInstall(t *testing.T) {
	h := setup(t)
	ctx := t.Context()
	b := self(t)

	host, err := hostcache.Probe(ctx, h.pool, "host0")
	if err != nil {
		t.Fatal(err)
	}
	if host.Platform != hostcache.Local() || host.Home != sshtest.Home || host.Addr != "127.0.0.2" {
		t.Errorf("probe: %+v", host)
	}
	if want := filepath.Join(h.caches[0], "drove"); host.Dir != want {
		t.Errorf("cache dir %q, want %q", host.Dir, want)
	}
	in, err := host.InstallExecutable(ctx, b, checkArgs...)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Uploaded || in.Path != host.BlobPath(b.Sum) {
		t.Errorf("first install: %+v", in)
	}
	// The host is this machine: look at what arrived.
	for _, d := range []string{host.Dir, host.BlobDir()} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", d, fi.Mode(), err)
		}
	}
	fi, err := os.Stat(in.Path)
	if err != nil || fi.Size() != b.Size || fi.Mode().Perm() != 0o700 {
		t.Fatalf("blob: %v", err)
	}
	entries, _ := os.ReadDir(host.BlobDir())
	if len(entries) != 1 {
		t.Errorf("blob dir holds %d entries, want 1 (no temporary file left)", len(entries))
	}

	// Again: nothing is sent, and a mode changed meanwhile is put back.
	if err := os.Chmod(in.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := fi.ModTime()
	in2, err := host.InstallExecutable(ctx, b, checkArgs...)
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(in.Path)
	if in2.Uploaded || in2.Path != in.Path || !fi2.ModTime().Equal(mtime) || fi2.Mode().Perm() != 0o700 {
		t.Errorf("second install: %+v, mode %v, mtime %v (was %v)", in2, fi2.Mode(), fi2.ModTime(), mtime)
	}

	// A truncated blob (size differs) is replaced.
	if err := os.Truncate(in.Path, 10); err != nil {
		t.Fatal(err)
	}
	if in3, err := host.InstallExecutable(ctx, b, checkArgs...); err != nil || !in3.Uploaded {
		t.Errorf("install over a truncated blob: %+v, %v", in3, err)
	}
}

func TestInstallRefused(t *testing.T) {
	h := setup(t)
	ctx := t.Context()
	b := self(t)

	t.Run("platform", func(t *testing.T) {
		host, err := hostcache.Probe(ctx, h.pool, "host1")
		if err != nil {
			t.Fatal(err)
		}
		if host.Platform != (hostcache.Platform{OS: "linux", Arch: "arm64"}) {
			t.Fatalf("fake uname not used: %+v", host)
		}
		_, err = host.InstallExecutable(ctx, b, checkArgs...)
		var pe *hostcache.PlatformError
		if !errors.Is(err, hostcache.ErrPlatform) || !errors.As(err, &pe) {
			t.Fatalf("err = %v, want a PlatformError", err)
		}
		for _, w := range []string{"host1", "linux/arm64", hostcache.Local().String(), "Linux aarch64"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %q", err, w)
			}
		}
		if _, err := os.Stat(filepath.Join(h.caches[1], "drove")); !os.IsNotExist(err) {
			t.Errorf("something was installed on a host of another platform: %v", err)
		}
	})

	t.Run("noexec", func(t *testing.T) {
		if h.noexecOK != "" {
			t.Skip(h.noexecOK)
		}
		host, err := hostcache.Probe(ctx, h.pool, "host2")
		if err != nil {
			t.Fatal(err)
		}
		in, err := host.InstallExecutable(ctx, b, checkArgs...)
		var ee *hostcache.ExecError
		if !errors.Is(err, hostcache.ErrNotExecutable) || !errors.As(err, &ee) || ee.Code != 126 || !strings.Contains(err.Error(), "noexec") {
			t.Fatalf("err = %v, want an ExecError with exit 126", err)
		}
		if !in.Uploaded || ee.Path != in.Path {
			t.Errorf("installed %+v, error about %q", in, ee.Path)
		}
	})

	t.Run("unwritable", func(t *testing.T) {
		host, err := hostcache.Probe(ctx, h.pool, "host3")
		if err != nil {
			t.Fatal(err)
		}
		_, err = host.InstallExecutable(ctx, b, checkArgs...)
		var ce *hostcache.CacheError
		if !errors.Is(err, hostcache.ErrNoCache) || !errors.As(err, &ce) || ce.Dir != host.Dir {
			t.Fatalf("err = %v, want a CacheError for %s", err, host.Dir)
		}
	})

	t.Run("down", func(t *testing.T) {
		_, err := hostcache.Probe(ctx, h.pool, "down")
		if !sshconn.IsHostError(err) {
			t.Fatalf("err = %v, want a host error", err)
		}
	})
}
