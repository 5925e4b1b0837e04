package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// writeTree makes a local tree for the transfer tests and returns its
// files' contents by slash-separated relative name.
func writeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{
		"top.txt":           "top",
		"sub/one":           "one",
		"sub/deeper/two":    strings.Repeat("two", 10000),
		"sub/deeper/empty":  "",
		"with space/x y.go": "package x",
	}
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// readTree returns the regular files below root by relative name.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestFSTransfers: put and get of whole trees, into new and existing
// directories, and of several sources at once.
func TestFSTransfers(t *testing.T) {
	s := sshtest.Start(t)
	ok := fsOK(t, s)
	dir := fmt.Sprintf("/tmp/drove-fs-transfer-%d", time.Now().UnixNano())
	t.Cleanup(func() { fsRunCtx(context.Background(), s.SSHConfig, "", "host0", "rm", "-r", "-f", dir) })
	ok("host0", "mkdir", dir)
	src := filepath.Join(t.TempDir(), "tree")
	want := writeTree(t, src)

	// A directory put to a new name becomes that name ...
	ok("host0", "put", "-q", src, dir+"/copy")
	if got := ok("host0", "cat", dir+"/copy/sub/deeper/two"); got != want["sub/deeper/two"] {
		t.Fatalf("put dir: cat gives %d bytes", len(got))
	}
	// ... and goes into an existing directory under its own name.
	ok("host0", "put", "-q", src, dir+"/copy")
	if got := ok("host0", "ls", dir+"/copy/tree"); got != "sub\ntop.txt\nwith space\n" {
		t.Errorf("put into an existing dir: ls %q", got)
	}

	// get of a non-empty tree to a new local name, then into an existing
	// local directory.
	back := filepath.Join(t.TempDir(), "back")
	ok("host0", "get", "-q", dir+"/copy", back)
	wantBack := map[string]string{}
	for k, v := range want {
		wantBack[k] = v
		wantBack["tree/"+k] = v
	}
	if got := readTree(t, back); !maps.Equal(got, wantBack) {
		t.Errorf("get tree: %v", got)
	}
	if fi, err := os.Stat(filepath.Join(back, "sub/deeper/empty")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("get kept no mode: %v %v", fi, err)
	}
	into := t.TempDir()
	ok("host0", "get", "-q", dir+"/copy/sub", into)
	if got := readTree(t, into); !maps.Equal(got, map[string]string{"sub/one": "one", "sub/deeper/two": want["sub/deeper/two"], "sub/deeper/empty": ""}) {
		t.Errorf("get into an existing dir: %v", got)
	}

	// Several sources go into a directory.
	ok("host0", "mkdir", dir+"/many")
	var res struct {
		Bytes int64            `json:"bytes"`
		Files []map[string]any `json:"files"`
	}
	out := ok("--json", "host0", "put", filepath.Join(src, "top.txt"), filepath.Join(src, "sub"), filepath.Join(src, "with space"), dir+"/many")
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Files) != 3 {
		t.Fatalf("put --json: %q %v", out, err)
	}
	if wantBytes := int64(len("top") + len("one") + len(want["sub/deeper/two"]) + len("package x")); res.Bytes != wantBytes {
		t.Errorf("put --json bytes = %d, want %d", res.Bytes, wantBytes)
	}
	if got := ok("host0", "ls", dir+"/many"); got != "sub\ntop.txt\nwith space\n" {
		t.Errorf("put several: ls %q", got)
	}
	several := t.TempDir()
	ok("host0", "get", "-q", dir+"/many/top.txt", dir+"/many/sub", several)
	if got := readTree(t, several); !maps.Equal(got, map[string]string{"top.txt": "top", "sub/one": "one", "sub/deeper/two": want["sub/deeper/two"], "sub/deeper/empty": ""}) {
		t.Errorf("get several: %v", got)
	}
	// Several sources need a directory as the destination.
	if code, _, errs := fsRun(t, s, "", "host0", "put", "-q", filepath.Join(src, "top.txt"), filepath.Join(src, "sub"), dir+"/many/top.txt"); code == 0 || !strings.Contains(errs, "not a directory") {
		t.Errorf("put several to a file: %d %q", code, errs)
	}
	if code, _, errs := fsRun(t, s, "", "host0", "get", "-q", dir+"/many/top.txt", dir+"/many/sub", filepath.Join(several, "top.txt")); code == 0 || !strings.Contains(errs, "not a directory") {
		t.Errorf("get several to a file: %d %q", code, errs)
	}
}

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	return m, s
}

// TestFSProgressOnlyOnTerminal: put and get draw a progress bar on
// standard error when it is a terminal, and nothing otherwise.
func TestFSProgressOnlyOnTerminal(t *testing.T) {
	s := sshtest.Start(t)
	dir := fmt.Sprintf("/tmp/drove-fs-progress-%d", time.Now().UnixNano())
	t.Cleanup(func() { fsRunCtx(context.Background(), s.SSHConfig, "", "host0", "rm", "-r", "-f", dir) })
	local := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(local, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not a terminal: nothing on stderr.
	for _, args := range [][]string{{"host0", "put", local, dir}, {"host0", "get", dir, local + ".back"}} {
		code, out, errs := fsRun(t, s, "", args...)
		if code != 0 || out != "" || errs != "" {
			t.Errorf("drove fs %q without a terminal: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	// A terminal: the bar is drawn, then its line cleared.
	for _, tc := range []struct {
		args  []string
		label string
	}{
		{[]string{"host0", "put", local, dir + "2"}, "put bytes"},
		{[]string{"host0", "get", dir, local + ".back2"}, "get bytes"},
		{[]string{"host0", "put", "-q", local, dir + "3"}, ""},
	} {
		master, slave := openPTY(t)
		var tty bytes.Buffer
		copied := make(chan struct{})
		go func() {
			// Ends with EIO once the slave is closed.
			io.Copy(&tty, master)
			close(copied)
		}()
		var out bytes.Buffer
		cmd := newFSCmd()
		cmd.SetArgs(append([]string{"-F", s.SSHConfig}, tc.args...))
		cmd.SetIn(strings.NewReader(""))
		cmd.SetOut(&out)
		cmd.SetErr(slave)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.ExecuteContext(t.Context())
		slave.Close()
		<-copied
		master.Close()
		if err != nil {
			t.Fatalf("drove fs %q: %v", tc.args, err)
		}
		got := tty.String()
		full := fmt.Sprintf("] %d/%d %s", 1<<20, 1<<20, tc.label)
		switch {
		case tc.label == "" && got != "":
			t.Errorf("drove fs %q (quiet) on a terminal wrote %q", tc.args, got)
		case tc.label != "" && (!strings.Contains(got, "\r[") || !strings.Contains(got, full) || !strings.HasSuffix(got, "\r\x1b[K")):
			t.Errorf("drove fs %q on a terminal wrote %q, want a bar ending with %q, then cleared", tc.args, got, full)
		}
	}
}

// TestFSGetHostile runs drove fs get against a hostile SFTP server: a
// directory that contains itself, and a symbolic link named "/" (which
// path.Join makes the directory itself) leading outside the destination.
func TestFSGetHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries []sshtest.Entry
		want    string
	}{
		{"cycle", []sshtest.Entry{{Name: "loop", Mode: fs.ModeDir | 0o755}}, "deeper than 256 levels"},
		{"slash", []sshtest.Entry{{Name: "/", Mode: fs.ModeSymlink | 0o777, Target: "OUTSIDE"}, {Name: "f", Mode: 0o644, Data: []byte("x")}}, "not a single path element"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range tc.entries {
				if tc.entries[i].Target == "OUTSIDE" {
					tc.entries[i].Target = outside
				}
			}
			s := sshtest.StartHostile(t, func(dir string) ([]sshtest.Entry, bool) {
				return tc.entries, strings.HasPrefix(dir, "/work")
			})
			// Bounded, for the old code, which walked the cycle for ever.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			code, _, errs := fsRunCtx(ctx, s.SSHConfig, "", s.Alias, "get", "-q", "/work", dest)
			if code != 1 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errs, tc.want)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside dest: %v", entries)
			}
			if fi, err := os.Lstat(dest); err == nil && !fi.IsDir() {
				t.Errorf("dest is now %v", fi.Mode())
			}
		})
	}
}
