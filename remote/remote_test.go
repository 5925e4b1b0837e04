package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
	"github.com/drove-dev/drove/remote"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hostile names: each must round-trip literally as a file name. The
// command substitutions create a marker file named after the test run,
// which shellMarkers looks for where a shell would have created it.
var hostile = []string{
	"plain",
	"with space",
	"new\nline",
	`single'quote`,
	`double"quote`,
	"$(touch " + marker + ")",
	"`touch " + marker + "2`",
	"semi;colon&amp|pipe",
	"-leading-dash",
	"--",
	"-rf",
	"\xff\xfe-not-utf8-\x80",
	"back\\slash",
	"*glob?[x]",
	"~tilde",
	"tab\tcr\r",
	"$HOME",
	"ünïcödé",
}

// marker is unique to this test binary's run, so that a file left by an
// earlier run cannot make the check fail, nor one of another run hide it.
var marker = fmt.Sprintf("drove-pwned-%d-%d", os.Getpid(), time.Now().UnixNano())

// shellMarkers returns the marker files that exist where a name given to a
// shell unquoted would have created them: dirs (the directories commands
// ran in), the login directory, where a login shell starts, and /tmp.
func shellMarkers(t *testing.T, h *remote.Host, dirs ...string) []string {
	t.Helper()
	var found []string
	for _, d := range append(dirs, sshtest.Home, "/tmp") {
		for _, m := range []string{marker, marker + "2"} {
			p := path.Join(d, m)
			ok, err := h.Exists(context.Background(), p)
			must(t, err)
			if ok {
				found = append(found, p)
			}
		}
	}
	return found
}

// removeMarkers removes what shellMarkers found, so that one failure does
// not fail every later test.
// noShellMarkers fails the test if a hostile name left a shell's marker in
// dirs (or the home directory, or /tmp), removing what it finds.
func noShellMarkers(t *testing.T, h *remote.Host, dirs ...string) {
	t.Helper()
	if found := shellMarkers(t, h, dirs...); len(found) > 0 {
		removeMarkers(t, h, found)
		t.Errorf("a name was interpreted by a shell: %q exist", found)
	}
}

func removeMarkers(t *testing.T, h *remote.Host, found []string) {
	for _, p := range found {
		h.Remove(context.Background(), p)
	}
}

func dial(t *testing.T, s *sshtest.Server, opts ...remote.Option) *remote.Host {
	t.Helper()
	opts = append([]remote.Option{remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent()}, opts...)
	h, err := remote.Dial(t.Context(), "host0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func tempDir(t *testing.T, h *remote.Host) string {
	t.Helper()
	ctx := context.Background()
	d, err := h.TempDir(ctx, "", "drove-remote-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.RemoveAll(ctx, d) })
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHostileNames(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	must(t, h.Chdir(ctx, dir))
	for _, name := range hostile {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			data := []byte("data of " + name)
			must(t, h.WriteFile(ctx, name, data, 0o640))
			got, err := h.ReadFile(ctx, name)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadFile = %q, %v", got, err)
			}
			fi, err := h.Stat(ctx, name)
			if err != nil || fi.Name() != path.Base(name) || fi.Mode().Perm() != 0o640 || fi.Size() != int64(len(data)) {
				t.Fatalf("Stat = %v, %v", fi, err)
			}
			if ok, err := h.IsFile(ctx, name); !ok || err != nil {
				t.Fatalf("IsFile = %v, %v", ok, err)
			}
			// The name reaches a command literally too (Run quotes Args).
			out, err := h.Output(ctx, "cat", "--", name)
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("cat = %q, %v", out, err)
			}
			link := name + ".link"
			must(t, h.Symlink(ctx, name, link))
			if target, err := h.Readlink(ctx, link); err != nil || target != name {
				t.Fatalf("Readlink = %q, %v", target, err)
			}
			renamed := name + ".renamed"
			must(t, h.Rename(ctx, name, renamed))
			if ok, err := h.Exists(ctx, name); ok || err != nil {
				t.Fatalf("Exists(old) = %v, %v", ok, err)
			}
			sub := name + ".d"
			must(t, h.Mkdir(ctx, sub, 0o755))
			if ok, err := h.IsDir(ctx, sub); !ok || err != nil {
				t.Fatalf("IsDir = %v, %v", ok, err)
			}
			must(t, h.Mkfifo(ctx, sub+"/"+name, 0o600))
			fi, err = h.Lstat(ctx, sub+"/"+name)
			if err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
				t.Fatalf("fifo Lstat = %v, %v", fi, err)
			}
			must(t, h.Remove(ctx, sub+"/"+name))
			must(t, h.Rmdir(ctx, sub))
			must(t, h.Remove(ctx, link))
			must(t, h.Remove(ctx, renamed))
		})
	}
	// One directory holding them all lists every name exactly.
	all := tempDir(t, h)
	for _, name := range hostile {
		must(t, h.WriteFile(ctx, path.Join(all, name), nil, 0))
	}
	entries, err := h.ReadDir(ctx, all)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := slices.Sorted(slices.Values(hostile))
	if !slices.Equal(names, want) {
		t.Errorf("ReadDir = %q, want %q", names, want)
	}
	noShellMarkers(t, h, dir, all)
}

// TestShellMarkersCanFail makes sure the check of TestHostileNames looks
// where a shell writes: a hostile name passed unquoted, on purpose, to a
// command in the Host's directory and to the login shell, is found.
func TestShellMarkersCanFail(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	must(t, h.Chdir(ctx, dir))
	if found := shellMarkers(t, h, dir); len(found) != 0 {
		t.Fatalf("markers before the test: %q", found)
	}
	// Command is a shell command line, so this is the unquoted use.
	_, err := h.Run(ctx, &remote.Cmd{Command: "true " + hostile[5]})
	must(t, err)
	found := shellMarkers(t, h, dir)
	removeMarkers(t, h, found)
	if want := []string{path.Join(dir, marker)}; !slices.Equal(found, want) {
		t.Errorf("after running an unquoted name in %s: found %q, want %q", dir, found, want)
	}
	_, err = h.Run(ctx, &remote.Cmd{Command: "cd && true " + hostile[6]})
	must(t, err)
	found = shellMarkers(t, h, dir)
	removeMarkers(t, h, found)
	if want := []string{path.Join(sshtest.Home, marker+"2")}; !slices.Equal(found, want) {
		t.Errorf("after running an unquoted name in the login directory: found %q, want %q", found, want)
	}
}

// hostileTree makes a local tree whose every name is hostile: a file of
// each name at the top, a directory of each name holding a file of each
// name, and links with hostile names and targets.
func hostileTree(t *testing.T, root string) {
	t.Helper()
	must(t, os.Mkdir(root, 0o755))
	for i, name := range hostile {
		must(t, os.WriteFile(filepath.Join(root, name), []byte("top "+name), 0o644))
		sub := filepath.Join(root, name+".d")
		must(t, os.Mkdir(sub, 0o750))
		must(t, os.WriteFile(filepath.Join(sub, hostile[(i+1)%len(hostile)]), []byte("in "+name), 0o600))
		must(t, os.Symlink(name, filepath.Join(root, name+".link")))
	}
}

// TestHostileTree uploads and downloads a tree made only of hostile names:
// every name, type, mode and content comes back, and no shell saw them.
func TestHostileTree(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "src")
	hostileTree(t, src)
	dir := tempDir(t, h)
	// The destination itself has a hostile name, and is given relative to
	// a hostile working directory.
	must(t, h.Mkdir(ctx, dir+"/"+hostile[5], 0o755))
	must(t, h.Chdir(ctx, dir+"/"+hostile[5]))
	dst := hostile[11] + " -rf $(x)"
	must(t, h.Upload(ctx, src, dst))
	for i, name := range hostile {
		b, err := h.ReadFile(ctx, dst+"/"+name+".d/"+hostile[(i+1)%len(hostile)])
		if err != nil || string(b) != "in "+name {
			t.Errorf("remote %q: %q, %v", name, b, err)
		}
		if l, err := h.Readlink(ctx, dst+"/"+name+".link"); err != nil || l != name {
			t.Errorf("remote link %q: %q, %v", name, l, err)
		}
	}
	entries, err := h.ReadDir(ctx, dst)
	must(t, err)
	if len(entries) != 3*len(hostile) {
		t.Errorf("remote directory has %d entries, want %d", len(entries), 3*len(hostile))
	}
	back := filepath.Join(t.TempDir(), hostile[2])
	must(t, h.Download(ctx, h.Getwd()+"/"+dst, back))
	if a, b := treeSig(t, src), treeSig(t, back); a != b {
		t.Errorf("round trip differs:\n%s\n---\n%s", a, b)
	}
	noShellMarkers(t, h, dir, h.Getwd())
}

// TestHostileChdirRun changes into directories with hostile names and runs
// commands there, by the Host's directory and by Cmd.Dir, with relative
// paths.
func TestHostileChdirRun(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	base := tempDir(t, h)
	ran := []string{base} // where commands ran, for shellMarkers
	for _, name := range hostile {
		ran = append(ran, base+"/"+name, base+"/"+name+"/"+name)
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			must(t, h.Chdir(ctx, base))
			must(t, h.MkdirAll(ctx, name+"/"+name, 0o755))
			must(t, h.Chdir(ctx, name))
			want := base + "/" + name
			if h.Getwd() != want {
				t.Fatalf("Getwd = %q, want %q", h.Getwd(), want)
			}
			must(t, h.WriteFile(ctx, name+"/"+name, []byte("x"), 0o644))
			// pwd -P: the directory the command really runs in.
			out, err := h.Output(ctx, "pwd", "-P")
			if err != nil || string(out) != want+"\n" {
				t.Errorf("pwd in Getwd = %q, %v", out, err)
			}
			res, err := h.Run(ctx, &remote.Cmd{Args: []string{"sh", "-c", `pwd -P; cat -- "$1"`, "sh", name}, Dir: name})
			if err != nil || string(res.Stdout) != want+"/"+name+"\nx" {
				t.Errorf("Run with Dir %q: %q, %v", name, res.Stdout, err)
			}
			res, err = h.Run(ctx, &remote.Cmd{Command: `printf %s "$V"`, Env: []string{"V=" + name}, Dir: want + "/" + name})
			if err != nil || string(res.Stdout) != name {
				t.Errorf("Env value %q: %q, %v", name, res.Stdout, err)
			}
			// Mkfifo resolves relative names against Getwd too.
			must(t, h.Mkfifo(ctx, name+"/fifo", 0o600))
			if fi, err := h.Lstat(ctx, want+"/"+name+"/fifo"); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
				t.Errorf("Mkfifo relative: %v %v", fi, err)
			}
		})
	}
	noShellMarkers(t, h, ran...)
}

func TestErrors(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	missing := path.Join(dir, "missing")
	must(t, h.WriteFile(ctx, path.Join(dir, "file"), []byte("x"), 0o644))

	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Stat missing", second(h.Stat(ctx, missing)), fs.ErrNotExist},
		{"Lstat missing", second(h.Lstat(ctx, missing)), fs.ErrNotExist},
		{"ReadFile missing", second(h.ReadFile(ctx, missing)), fs.ErrNotExist},
		{"Open missing", second(h.Open(ctx, missing)), fs.ErrNotExist},
		{"ReadDir missing", second(h.ReadDir(ctx, missing)), fs.ErrNotExist},
		{"Remove missing", h.Remove(ctx, missing), fs.ErrNotExist},
		{"Rmdir missing", h.Rmdir(ctx, missing), fs.ErrNotExist},
		{"Chmod missing", h.Chmod(ctx, missing, 0o600), fs.ErrNotExist},
		{"Mkdir existing", h.Mkdir(ctx, dir, 0o755), fs.ErrExist},
		{"Mkfifo existing", h.Mkfifo(ctx, path.Join(dir, "file"), 0o600), fs.ErrExist},
		{"Symlink existing", h.Symlink(ctx, "x", path.Join(dir, "file")), fs.ErrExist},
		{"Chdir missing", h.Chdir(ctx, missing), fs.ErrNotExist},
		{"Mkdir in root", h.Mkdir(ctx, "/forbidden-drove", 0o755), fs.ErrPermission},
		{"NUL byte", second(h.Stat(ctx, "a\x00b")), fs.ErrInvalid},
		{"Download missing", h.Download(ctx, missing, filepath.Join(t.TempDir(), "x")), fs.ErrNotExist},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
			continue
		}
		if !strings.HasPrefix(tc.err.Error(), "remote: ") {
			t.Errorf("%s: message lacks prefix: %v", tc.name, tc.err)
		}
	}
	var pe *fs.PathError
	if err := second(h.Stat(ctx, missing)); !errors.As(err, &pe) || pe.Path != missing {
		t.Errorf("Stat error %#v is not a PathError naming the path", err)
	}
	for _, f := range []func(context.Context, string) (bool, error){h.Exists, h.IsDir, h.IsFile} {
		if ok, err := f(ctx, missing); ok || err != nil {
			t.Errorf("missing path: (%v, %v), want (false, nil)", ok, err)
		}
	}
	if ok, err := h.IsDir(ctx, path.Join(dir, "file")); ok || err != nil {
		t.Errorf("IsDir(file) = %v, %v", ok, err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestRelativePathsAndChdir(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	if h.Getwd() != sshtest.Home {
		t.Errorf("initial Getwd = %q, want the login dir %q", h.Getwd(), sshtest.Home)
	}
	dir := tempDir(t, h)
	must(t, h.Chdir(ctx, dir))
	must(t, h.MkdirAll(ctx, "a/b/c", 0o755))
	must(t, h.Chdir(ctx, "a/b"))
	if h.Getwd() != dir+"/a/b" {
		t.Fatalf("Getwd = %q", h.Getwd())
	}
	must(t, h.WriteFile(ctx, "c/f", []byte("rel"), 0o600))
	if b, err := h.ReadFile(ctx, dir+"/a/b/c/f"); err != nil || string(b) != "rel" {
		t.Fatalf("%q %v", b, err)
	}
	res, err := h.Run(ctx, &remote.Cmd{Command: "pwd; cat c/f"})
	must(t, err)
	if string(res.Stdout) != dir+"/a/b\nrel" {
		t.Fatalf("Run in cwd: %q", res.Stdout)
	}
	must(t, h.Chdir(ctx, ".."))
	if h.Getwd() != dir+"/a" {
		t.Fatalf("Getwd after .. = %q", h.Getwd())
	}
	if err := h.Chdir(ctx, "b/c/f"); err == nil {
		t.Fatal("Chdir to a file succeeded")
	}
	must(t, h.MkdirAll(ctx, "b/c", 0o755)) // existing: no error
}

func TestFileOps(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	must(t, h.Chdir(ctx, dir))

	fi, err := h.Stat(ctx, dir)
	must(t, err)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("TempDir mode %v", fi.Mode())
	}
	// Create and Open stream.
	f, err := h.Create(ctx, "stream")
	must(t, err)
	if _, err := io.Copy(f, strings.NewReader(strings.Repeat("0123456789", 10000))); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	r, err := h.Open(ctx, "stream")
	must(t, err)
	buf := make([]byte, 5)
	if _, err := r.ReadAt(buf, 12); err != nil || string(buf) != "23456" {
		t.Fatalf("ReadAt %q %v", buf, err)
	}
	rfi, err := r.Stat()
	if err != nil || rfi.Size() != 100000 {
		t.Fatalf("File.Stat %v %v", rfi, err)
	}
	must(t, r.Close())

	must(t, h.Chmod(ctx, "stream", 0o751))
	mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, h.Chtimes(ctx, "stream", mt, mt))
	fi, err = h.Stat(ctx, "stream")
	must(t, err)
	if fi.Mode().Perm() != 0o751 || !fi.ModTime().Equal(mt) {
		t.Errorf("after Chmod/Chtimes: %v %v", fi.Mode(), fi.ModTime())
	}
	// Chown to our own ids succeeds; to root is refused.
	must(t, h.Chown(ctx, "stream", os.Getuid()*0+uidOf(t, h), gidOf(t, h)))
	if err := h.Chown(ctx, "stream", 0, 0); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Chown to root: %v", err)
	}

	// Rename replaces an existing target.
	must(t, h.WriteFile(ctx, "other", []byte("old"), 0o644))
	must(t, h.Rename(ctx, "stream", "other"))
	if fi, _ := h.Stat(ctx, "other"); fi.Size() != 100000 {
		t.Error("Rename did not replace")
	}
	// Dangling and relative symlinks.
	must(t, h.Symlink(ctx, "nowhere", "dangling"))
	if ok, err := h.Exists(ctx, "dangling"); ok || err != nil {
		t.Errorf("Exists(dangling) = %v %v", ok, err)
	}
	if fi, err := h.Lstat(ctx, "dangling"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(dangling) = %v %v", fi, err)
	}
	// RemoveAll removes a link, not what it points to.
	keep := tempDir(t, h)
	must(t, h.WriteFile(ctx, keep+"/kept", nil, 0o644))
	must(t, h.MkdirAll(ctx, "tree/x/y", 0o755))
	must(t, h.Symlink(ctx, keep, "tree/x/link"))
	must(t, h.WriteFile(ctx, "tree/x/y/z", []byte("z"), 0o400))
	must(t, h.RemoveAll(ctx, "tree"))
	if ok, _ := h.Exists(ctx, "tree"); ok {
		t.Error("tree still exists")
	}
	if ok, _ := h.Exists(ctx, keep+"/kept"); !ok {
		t.Error("RemoveAll followed a symlink")
	}
	must(t, h.RemoveAll(ctx, "tree")) // missing: nil
}

func uidOf(t *testing.T, h *remote.Host) int { return idOf(t, h, "-u") }
func gidOf(t *testing.T, h *remote.Host) int { return idOf(t, h, "-g") }

func idOf(t *testing.T, h *remote.Host, flag string) int {
	out, err := h.Output(t.Context(), "id", flag)
	must(t, err)
	var n int
	fmt.Sscan(string(out), &n)
	return n
}

func TestFIFOStatDoesNotBlock(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	dir := tempDir(t, h)
	p := dir + "/fifo"
	must(t, h.Mkfifo(ctx, p, 0o640))
	for _, stat := range []func(context.Context, string) (fs.FileInfo, error){h.Stat, h.Lstat} {
		fi, err := stat(ctx, p)
		must(t, err)
		if fi.Mode()&fs.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v", fi.Mode())
		}
	}
	if ok, err := h.IsFile(ctx, p); ok || err != nil {
		t.Errorf("IsFile(fifo) = %v %v", ok, err)
	}
	// Opening it would block the single-threaded sftp-server: refused.
	if _, err := h.ReadFile(ctx, p); err == nil {
		t.Error("ReadFile(fifo) succeeded")
	}
	// The io/fs view takes no ctx: a watchdog makes a block fail the test
	// instead of hanging it (the Host methods above end with ctx).
	fsErr := make(chan error, 1)
	go func() {
		_, err := fs.ReadFile(h.FS(), strings.TrimPrefix(p, "/"))
		fsErr <- err
	}()
	select {
	case err := <-fsErr:
		if err == nil {
			t.Error("FS ReadFile(fifo) succeeded")
		}
	case <-ctx.Done():
		t.Fatal("FS ReadFile(fifo) blocked")
	}
	if ok, err := h.Exists(ctx, p); !ok || err != nil {
		t.Errorf("the SFTP channel is stuck: %v %v", ok, err)
	}
	entries, err := h.ReadDir(ctx, dir)
	must(t, err)
	if len(entries) != 1 || entries[0].Type() != fs.ModeNamedPipe {
		t.Errorf("ReadDir %v", entries)
	}
}

func TestRun(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()

	res, err := h.Run(ctx, &remote.Cmd{
		Command: `echo "$GREETING"; cat; echo oops >&2; exit 7`,
		Env:     []string{"GREETING=hello $(world)"},
		Stdin:   strings.NewReader("from stdin\n"),
	})
	var ee *remote.ExitError
	if !errors.As(err, &ee) || ee.Code != 7 || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("err = %v", err)
	}
	if string(res.Stdout) != "hello $(world)\nfrom stdin\n" || string(res.Stderr) != "oops\n" || res.ExitCode != 7 {
		t.Fatalf("result %+v", res)
	}

	var out bytes.Buffer
	res, err = h.Run(ctx, &remote.Cmd{Args: []string{"printf", "%s|", "a b", "$(x)", "'"}, Stdout: &out})
	must(t, err)
	if out.String() != "a b|$(x)|'|" || res.Stdout != nil {
		t.Fatalf("Args: %q", out.String())
	}

	// A timeout kills the whole remote process group.
	start := time.Now()
	res, err = h.Run(ctx, &remote.Cmd{Command: "sleep 4711 & sleep 4712 & wait", Timeout: 500 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || !res.Killed {
		t.Fatalf("timeout: %v %+v", err, res)
	}
	if _, err := h.Run(ctx, &remote.Cmd{Command: "true", Env: []string{"BAD NAME=x"}}); err == nil || strings.Contains(err.Error(), "%!") {
		t.Errorf("bad env: %v", err)
	}
	// The sleeps would take over an hour; a bound far from both that and
	// the escalation's few seconds holds on a loaded machine.
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("timeout took %v: the process group was not killed", d)
	}
	res, err = h.Run(ctx, remote.Command("pgrep", "-u", sshtest.User, "-f", "sleep 471[12]"))
	if res == nil || res.ExitCode != 1 {
		t.Fatalf("processes left behind: %v %+v", err, res)
	}
}

// TestConcurrentMatchesSerial runs 10 goroutines × 100 mixed operations on
// one Host and checks that each goroutine's transcript equals the one the
// same operations produce when run serially.
func TestConcurrentMatchesSerial(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	base := tempDir(t, h)

	script := func(dir string) []string {
		var log []string
		rec := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
		if err := h.Mkdir(ctx, dir, 0o755); err != nil {
			rec("mkdir %v", err)
			return log
		}
		for i := range 100 {
			name := path.Join(dir, fmt.Sprintf("f%02d", i%10))
			switch i % 10 {
			case 0, 5:
				rec("write %v", h.WriteFile(ctx, name, []byte(strings.Repeat("x", i)), 0o644))
			case 1, 6:
				b, err := h.ReadFile(ctx, path.Join(dir, fmt.Sprintf("f%02d", i%10-1)))
				rec("read %d %v", len(b), err)
			case 2:
				ok, err := h.Exists(ctx, name)
				rec("exists %v %v", ok, err)
			case 3:
				fi, err := h.Stat(ctx, path.Join(dir, "f00"))
				if err == nil {
					rec("stat %d %v", fi.Size(), fi.Mode())
				} else {
					rec("stat %v", err)
				}
			case 4:
				rec("rename %v", h.Rename(ctx, path.Join(dir, "f00"), path.Join(dir, "g")))
				rec("rename back %v", h.Rename(ctx, path.Join(dir, "g"), path.Join(dir, "f00")))
			case 7:
				e, err := h.ReadDir(ctx, dir)
				rec("readdir %d %v", len(e), err)
			case 8:
				rec("mkdirall %v", h.MkdirAll(ctx, name+"/sub", 0o755))
				rec("removeall %v", h.RemoveAll(ctx, name))
			case 9:
				if i%30 == 9 {
					out, err := h.Output(ctx, "ls", dir)
					rec("run %q %v", out, err)
				} else {
					rec("symlink %v", h.Symlink(ctx, "f00", name))
					l, err := h.Readlink(ctx, name)
					rec("readlink %s %v", l, err)
					rec("remove %v", h.Remove(ctx, name))
				}
			}
		}
		return log
	}
	// Error messages name the directory: compare with it replaced.
	norm := func(log []string, dir string) string { return strings.ReplaceAll(strings.Join(log, "\n"), dir, "DIR") }

	serial := norm(script(base+"/serial"), base+"/serial")
	results := make([]string, 10)
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			dir := fmt.Sprintf("%s/g%d", base, g)
			results[g] = norm(script(dir), dir)
		})
	}
	wg.Wait()
	for g, r := range results {
		if r != serial {
			t.Errorf("goroutine %d differs from serial:\n%s\n--- serial:\n%s", g, r, serial)
		}
	}
}

func TestSticky(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	st := remote.NewSticky(h)

	must(t, st.Chdir(ctx, dir))
	if ok, err := st.Exists(ctx, "missing"); ok || err != nil || !st.OK() {
		t.Fatal("a missing path must not trip the sticky error")
	}
	must(t, st.WriteFile(ctx, "a", []byte("a"), 0o644))
	first := st.Mkdir(ctx, "no/such/parent", 0o755)
	if first == nil || st.OK() || !errors.Is(st.Err(), fs.ErrNotExist) {
		t.Fatalf("first failure: %v, OK=%v", first, st.OK())
	}
	// Later calls do nothing and return the first error.
	if err := st.WriteFile(ctx, "b", []byte("b"), 0o644); err != first {
		t.Fatalf("later call returned %v", err)
	}
	if _, err := st.Run(ctx, remote.Command("true")); err != first {
		t.Fatalf("Run returned %v", err)
	}
	if ok, _ := h.Exists(ctx, "b"); ok {
		t.Fatal("a call after the failure had an effect")
	}
	if err := st.ResetErr(); err != first || !st.OK() {
		t.Fatal("ResetErr")
	}
	must(t, st.WriteFile(ctx, "b", []byte("b"), 0o644))
	if _, err := st.Run(ctx, remote.Command("false")); err == nil || st.OK() {
		t.Fatal("a failing command must trip the sticky error")
	}
}

func TestFS(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	must(t, h.MkdirAll(ctx, dir+"/d/e", 0o755))
	must(t, h.WriteFile(ctx, dir+"/top.txt", []byte("top"), 0o644))
	must(t, h.WriteFile(ctx, dir+"/d/e/leaf", []byte("leaf"), 0o600))
	sub, err := fs.Sub(h.FS(), strings.TrimPrefix(dir, "/"))
	must(t, err)
	if err := fstest.TestFS(sub, "top.txt", "d/e/leaf"); err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(h.FS(), strings.TrimPrefix(dir, "/")+"/d/e/leaf")
	if err != nil || string(b) != "leaf" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := fs.Stat(h.FS(), "no/such"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat missing: %v", err)
	}
}

func makeTree(t *testing.T, root string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(root, "sub", "deeper"), 0o755))
	files := map[string]os.FileMode{"a.txt": 0o644, "sub/run.sh": 0o755, "sub/deeper/secret": 0o600, "with space & 'q'": 0o640}
	for name, mode := range files {
		p := filepath.Join(root, name)
		must(t, os.WriteFile(p, []byte("content of "+name), mode))
		must(t, os.Chmod(p, mode))
	}
	must(t, os.Symlink("a.txt", filepath.Join(root, "link")))
	must(t, os.Chmod(filepath.Join(root, "sub"), 0o750))
	old := time.Date(2010, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"a.txt", "sub/deeper/secret", "sub/deeper", "sub"} {
		must(t, os.Chtimes(filepath.Join(root, p), old, old))
	}
}

// treeSig describes a tree: names, types, modes, mtimes, contents.
func treeSig(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", rel, fi.Mode())
		if rel != "." && fi.Mode()&fs.ModeSymlink == 0 {
			fmt.Fprintf(&b, " %d", fi.ModTime().Unix())
		}
		switch {
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", data)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", l)
		}
		b.WriteString("\n")
		return nil
	})
	must(t, err)
	return b.String()
}

func TestUploadDownloadTree(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	dir := tempDir(t, h)
	var moved atomic.Int64
	must(t, h.Upload(ctx, src, dir+"/up", remote.WithProgress(func(n int64) { moved.Add(n) })))
	fi, err := h.Stat(ctx, dir+"/up/sub")
	must(t, err)
	if fi.Mode().Perm() != 0o750 || fi.ModTime().Year() != 2010 {
		t.Errorf("remote dir mode/mtime: %v %v", fi.Mode(), fi.ModTime())
	}
	dst := filepath.Join(t.TempDir(), "dst")
	must(t, h.Download(ctx, dir+"/up", dst))
	if a, b := treeSig(t, src), treeSig(t, dst); a != b {
		t.Errorf("round trip differs:\n%s\n---\n%s", a, b)
	}
	if moved.Load() == 0 {
		t.Error("no progress reported")
	}
	// No temporary files remain on either side.
	out, err := h.Output(ctx, "find", dir, "-name", ".drove-*")
	if err != nil || len(out) != 0 {
		t.Errorf("remote temp files: %q %v", out, err)
	}
	// A single file, and overwriting it.
	must(t, h.Upload(ctx, filepath.Join(src, "a.txt"), dir+"/single"))
	must(t, h.Upload(ctx, filepath.Join(src, "sub/run.sh"), dir+"/single"))
	b, err := h.ReadFile(ctx, dir+"/single")
	if err != nil || string(b) != "content of sub/run.sh" {
		t.Fatalf("%q %v", b, err)
	}
}

func sha(t *testing.T, file string) [32]byte {
	f, err := os.Open(file)
	must(t, err)
	defer f.Close()
	hh := sha256.New()
	io.Copy(hh, f)
	return [32]byte(hh.Sum(nil))
}

func TestLargeTransferSHA256(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB transfer")
	}
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	local := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(local)
	must(t, err)
	_, err = io.CopyN(f, rand.Reader, 100<<20)
	must(t, err)
	must(t, f.Close())
	want := sha(t, local)
	dir := tempDir(t, h)
	must(t, h.Upload(ctx, local, dir+"/big"))
	res, err := h.Run(ctx, remote.Command("sha256sum", dir+"/big"))
	must(t, err)
	if got := fmt.Sprintf("%x", want); !strings.HasPrefix(string(res.Stdout), got) {
		t.Fatalf("remote sha256 %s, want %s", res.Stdout, got)
	}
	back := filepath.Join(t.TempDir(), "back")
	must(t, h.Download(ctx, dir+"/big", back))
	if sha(t, back) != want {
		t.Fatal("downloaded file differs")
	}
}

// TestDownloadCut kills the remote sftp-server in the middle of a download:
// the download must fail within 5 s and leave nothing under the final name.
func TestDownloadCut(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	_, err := h.Run(ctx, &remote.Cmd{Command: "head -c 104857600 /dev/zero > big", Dir: dir})
	must(t, err)
	local := filepath.Join(t.TempDir(), "big")
	var once sync.Once
	var killErr error
	progress := func(n int64) {
		once.Do(func() {
			// The kill runs on the same connection: kill the sftp-server
			// below this connection's sshd process (its child, or the
			// child of the login shell that started it). The
			// download is paused meanwhile, so it cannot finish first.
			_, killErr = h.Run(ctx, &remote.Cmd{Command: killSFTPServer})
		})
	}
	start := time.Now()
	err = h.Download(ctx, dir+"/big", local, remote.WithProgress(progress))
	if killErr != nil {
		t.Fatalf("kill: %v", killErr)
	}
	if err == nil {
		t.Fatal("download succeeded despite the killed sftp-server")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failure took %v", d)
	}
	t.Logf("error: %v", err)
	// The cause is the connection, not the file: a Pool would move the
	// evaluation to another host.
	var ce *remote.ConnError
	if !errors.As(err, &ce) || ce.Host != "host0" {
		t.Errorf("error %v is not a *remote.ConnError", err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v: want a *fs.PathError not matching fs.ErrNotExist", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(local))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	// The Host recovers: the next call starts a new SFTP session.
	if ok, err := h.IsFile(ctx, dir+"/big"); !ok || err != nil {
		t.Fatalf("after reconnect: %v %v", ok, err)
	}
}

// killSFTPServer is a shell command that, run by Host.Run on the
// connection that carries the Host's SFTP session, kills that session's
// sftp-server: its parent is this connection's sshd process (the parent of
// setsid's parent), or a login shell below it.
const killSFTPServer = `pp=$(($(ps -o ppid= -p $PPID))); pkill -KILL -x -P "$pp,$(pgrep -d, -P $pp)" sftp-server`

// signalSFTPServer is killSFTPServer with another signal.
func signalSFTPServer(sig string) string { return strings.Replace(killSFTPServer, "-KILL", "-"+sig, 1) }

// TestCloseWhileServerStuck: Close returns even when the sftp-server has
// stopped answering and a call was abandoned.
func TestCloseWhileServerStuck(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	other := dial(t, s)
	ctx := t.Context()
	res, err := h.Run(ctx, &remote.Cmd{Command: `pp=$(($(ps -o ppid= -p $PPID))); p=$(pgrep -x -P "$pp,$(pgrep -d, -P $pp)" sftp-server) && kill -STOP $p && echo $p`})
	if err != nil {
		t.Fatalf("stopping sftp-server: %v", err)
	}
	pid := strings.TrimSpace(string(res.Stdout))
	defer other.Run(context.Background(), remote.Command("kill", "-CONT", pid))
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := h.Stat(sctx, "/"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat: %v", err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- h.Close() }()
	select {
	case <-done:
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("Close took %v", d)
		}
	case <-time.After(8 * time.Second):
		t.Error("Close blocked")
		other.Run(ctx, remote.Command("kill", "-CONT", pid))
		<-done
	}
}

// TestCancelWhileServerStuck stops the remote sftp-server (SIGSTOP), as a
// hung file system would: every file method must still return soon after
// its ctx ends, with ctx's error, and the Host works again once the server
// resumes.
func TestCancelWhileServerStuck(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	must(t, h.Chdir(ctx, dir))
	must(t, h.WriteFile(ctx, "f", []byte("data"), 0o644))
	must(t, h.Symlink(ctx, "f", "link"))
	local := filepath.Join(t.TempDir(), "local")
	must(t, os.WriteFile(local, []byte("local"), 0o644))
	res, err := h.Run(ctx, &remote.Cmd{Command: signalSFTPServer("STOP") + " && echo stopped"})
	if err != nil || string(res.Stdout) != "stopped\n" {
		t.Fatalf("stopping sftp-server: %v %+v", err, res)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if _, err := h.Run(context.Background(), &remote.Cmd{Command: signalSFTPServer("CONT")}); err != nil {
				t.Errorf("resuming sftp-server: %v", err)
			}
		}
	}
	defer resume()

	const timeout = 300 * time.Millisecond
	ops := []struct {
		name  string
		op    func(ctx context.Context) error
		limit time.Duration // from the start of the call
	}{
		{"Stat", func(ctx context.Context) error { return second(h.Stat(ctx, "f")) }, time.Second},
		{"Lstat", func(ctx context.Context) error { return second(h.Lstat(ctx, "link")) }, time.Second},
		{"Exists", func(ctx context.Context) error { return second(h.Exists(ctx, "f")) }, time.Second},
		{"ReadDir", func(ctx context.Context) error { return second(h.ReadDir(ctx, ".")) }, time.Second},
		{"Chdir", func(ctx context.Context) error { return h.Chdir(ctx, ".") }, time.Second},
		{"Mkdir", func(ctx context.Context) error { return h.Mkdir(ctx, "d", 0o755) }, time.Second},
		{"MkdirAll", func(ctx context.Context) error { return h.MkdirAll(ctx, "a/b", 0o755) }, time.Second},
		{"Chmod", func(ctx context.Context) error { return h.Chmod(ctx, "f", 0o600) }, time.Second},
		{"Chtimes", func(ctx context.Context) error { return h.Chtimes(ctx, "f", time.Now(), time.Now()) }, time.Second},
		{"Rename", func(ctx context.Context) error { return h.Rename(ctx, "f", "g") }, time.Second},
		{"Symlink", func(ctx context.Context) error { return h.Symlink(ctx, "f", "link2") }, time.Second},
		{"Readlink", func(ctx context.Context) error { return second(h.Readlink(ctx, "link")) }, time.Second},
		{"Remove", func(ctx context.Context) error { return h.Remove(ctx, "link") }, time.Second},
		{"RemoveAll", func(ctx context.Context) error { return h.RemoveAll(ctx, "a") }, time.Second},
		{"Open", func(ctx context.Context) error { return second(h.Open(ctx, "f")) }, time.Second},
		{"ReadFile", func(ctx context.Context) error { return second(h.ReadFile(ctx, "f")) }, time.Second},
		{"WriteFile", func(ctx context.Context) error { return h.WriteFile(ctx, "w", []byte("w"), 0o644) }, time.Second},
		// Transfers wait up to 2 s for their requests to stop.
		{"Upload", func(ctx context.Context) error { return h.Upload(ctx, local, "up") }, 3 * time.Second},
		{"Download", func(ctx context.Context) error { return h.Download(ctx, "f", local+".down") }, 3 * time.Second},
	}
	for _, tc := range ops {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- tc.op(ctx) }()
		select {
		case err := <-done:
			var pe *fs.PathError
			var le *os.LinkError
			if !errors.Is(err, context.DeadlineExceeded) || !(errors.As(err, &pe) || errors.As(err, &le)) {
				t.Errorf("%s: got %v, want a path error matching context.DeadlineExceeded", tc.name, err)
			}
			if d := time.Since(start); d > tc.limit {
				t.Errorf("%s returned after %v, want less than %v", tc.name, d, tc.limit)
			}
		case <-time.After(tc.limit + 2*time.Second):
			// Not a hang of the whole test: resuming the server
			// releases it.
			t.Errorf("%s still blocked %v after its ctx ended", tc.name, tc.limit+2*time.Second-timeout)
		}
		cancel()
	}
	resume()
	// The session is usable again, and the abandoned transfers, which
	// stop at their next request, remove their temporary files.
	if b, err := h.ReadFile(ctx, dir+"/g"); err != nil || string(b) != "data" { // the abandoned Rename happened
		t.Errorf("after resuming: %q %v", b, err)
	}
	var left []string
	for range 50 {
		out, err := h.Output(ctx, "find", dir, "-name", ".drove-*")
		must(t, err)
		entries, _ := filepath.Glob(filepath.Join(filepath.Dir(local), ".drove-*"))
		left = append(strings.Fields(string(out)), entries...)
		if len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

// TestUploadCut kills the remote sftp-server in the middle of an upload:
// the upload fails with a *ConnError, nothing appears under the final name,
// and the temporary file is removed over a new SFTP session.
func TestUploadCut(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	ctx := t.Context()
	dir := tempDir(t, h)
	local := filepath.Join(t.TempDir(), "big")
	must(t, os.WriteFile(local, make([]byte, 64<<20), 0o644))
	var once sync.Once
	var killErr error
	progress := func(int64) {
		// Called from the goroutine reading the local file, so the
		// upload waits while the server is killed.
		once.Do(func() { _, killErr = h.Run(ctx, &remote.Cmd{Command: killSFTPServer}) })
	}
	err := h.Upload(ctx, local, dir+"/big", remote.WithProgress(progress))
	must(t, killErr)
	var ce *remote.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("upload error %v is not a *remote.ConnError", err)
	}
	out, err := h.Output(ctx, "ls", "-A", dir)
	must(t, err)
	if len(out) != 0 {
		t.Errorf("left behind in the remote directory: %q", out)
	}
}

func TestHostKeys(t *testing.T) {
	s := sshtest.Start(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	_, err := remote.Dial(t.Context(), s.Target(0), remote.WithSSHConfig("none"), remote.WithoutAgent(),
		remote.WithIdentityFiles(s.KeyPath), remote.WithKnownHosts(empty))
	var hke *remote.HostKeyError
	if !errors.As(err, &hke) || hke.Changed {
		t.Fatalf("unknown key: %v", err)
	}
	h, err := remote.Dial(t.Context(), s.Target(0), remote.WithSSHConfig("none"), remote.WithoutAgent(),
		remote.WithIdentityFiles(s.KeyPath), remote.WithKnownHosts(empty), remote.WithAcceptNew())
	must(t, err)
	h.Close()
	h, err = remote.Dial(t.Context(), s.Target(0), remote.WithSSHConfig("none"), remote.WithoutAgent(),
		remote.WithIdentityFiles(s.KeyPath), remote.WithKnownHosts(empty))
	must(t, err)
	h.Close()
}

func TestHostDown(t *testing.T) {
	s := sshtest.Start(t)
	_, err := remote.Dial(t.Context(), "down", remote.WithSSHConfig(s.SSHConfig), remote.WithoutAgent())
	var ce *remote.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := sshtest.Start(t)
	h := dial(t, s)
	must(t, h.Close())
	if _, err := h.Stat(t.Context(), "/"); !errors.Is(err, remote.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
