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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// fsRun runs `drove fs` with the harness's ssh_config and returns the exit
// code as main would compute it.
func fsRun(t *testing.T, s *sshtest.Server, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return fsRunCtx(t.Context(), s.SSHConfig, stdin, args...)
}

func fsRunCtx(ctx context.Context, sshConfig string, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	cmd := newFSCmd()
	cmd.SetArgs(append([]string{"-F", sshConfig}, args...))
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(ctx)
	code := exitCode(err, &errb)
	return code, out.String(), errb.String()
}

// fsOK returns a runner of drove fs commands against s that fails the test
// on a non-zero exit and returns the standard output.
func fsOK(t *testing.T, s *sshtest.Server) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		code, out, errs := fsRun(t, s, "", args...)
		if code != 0 {
			t.Fatalf("drove fs %q: exit %d: %s", args, code, errs)
		}
		return out
	}
}

func TestFSCommands(t *testing.T) {
	s := sshtest.Start(t)
	ok := fsOK(t, s)
	dir := fmt.Sprintf("/tmp/drove-fs-test-%d", time.Now().UnixNano())
	// t.Context() is already cancelled when cleanups run.
	t.Cleanup(func() { fsRunCtx(context.Background(), s.SSHConfig, "", "host0", "rm", "-r", "-f", dir) })

	ok("host0", "mkdir", "-p", dir+"/a/b")
	ok("host0", "mkdir", "-m", "0700", dir+"/priv")
	local := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(local, []byte("hello\n"), 0o640)
	ok("host0", "put", "-q", local, dir+"/a")
	if got := ok("host0", "cat", dir+"/a/hello.txt"); got != "hello\n" {
		t.Fatalf("cat: %q", got)
	}
	if got := ok("host0", "ls", dir+"/a"); got != "b\nhello.txt\n" {
		t.Fatalf("ls: %q", got)
	}
	if got := ok("host0", "ls", "-l", dir+"/a"); !strings.Contains(got, "-rw-r-----          6 ") {
		t.Fatalf("ls -l: %q", got)
	}
	ok("host0", "chmod", "0600", dir+"/a/hello.txt")
	ok("host0", "ln", "-s", "hello.txt", dir+"/a/link")
	ok("host0", "mv", dir+"/a/hello.txt", dir+"/a/renamed")
	ok("host0", "mkfifo", dir+"/a/fifo")

	var files []map[string]any
	if err := json.Unmarshal([]byte(ok("--json", "host0", "ls", dir+"/a")), &files); err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, f := range files {
		types[f["name"].(string)] = f["type"].(string) + " " + f["perm"].(string)
	}
	want := map[string]string{"b": "dir 0755", "renamed": "file 0600", "link": "symlink 0777", "fifo": "fifo 0644"}
	for k, v := range want {
		if types[k] != v {
			t.Errorf("ls --json %s = %q, want %q (all: %v)", k, types[k], v, types)
		}
	}
	var st []map[string]any
	json.Unmarshal([]byte(ok("--json", "host0", "stat", dir+"/a/link")), &st)
	if len(st) != 1 || st[0]["target"] != "hello.txt" {
		t.Errorf("stat --json: %v", st)
	}
	if got := ok("host0", "stat", dir+"/priv"); !strings.Contains(got, "Type: dir") || !strings.Contains(got, "(0700)") {
		t.Errorf("stat: %q", got)
	}

	// get a directory back, recursively.
	back := filepath.Join(t.TempDir(), "back")
	ok("host0", "get", "-q", dir+"/a/b", back)
	if fi, err := os.Stat(back); err != nil || !fi.IsDir() {
		t.Fatalf("get dir: %v", err)
	}
	into := t.TempDir()
	ok("host0", "get", "-q", dir+"/a/renamed", into)
	if b, _ := os.ReadFile(filepath.Join(into, "renamed")); string(b) != "hello\n" {
		t.Fatalf("get into dir: %q", b)
	}

	ok("host0", "rm", dir+"/a/link")
	ok("host0", "rm", "-r", dir+"/a")
	if got := ok("host0", "ls", dir); got != "priv\n" {
		t.Errorf("after rm -r: %q", got)
	}
}

func TestFSRun(t *testing.T) {
	s := sshtest.Start(t)
	code, out, _ := fsRun(t, s, "piped\n", "host0", "run", "-i", "cat; echo", "'$HOME'", "$HOME")
	if code != 0 || out != "piped\n$HOME /home/drovetest\n" {
		t.Fatalf("run: %d %q", code, out)
	}
	code, _, errs := fsRun(t, s, "", "host0", "run", "echo bad >&2; exit 3")
	if code != 3 || errs != "bad\n" {
		t.Fatalf("exit status: %d %q", code, errs)
	}
	code, out, _ = fsRun(t, s, "", "--json", "host0", "run", "echo hi; exit 4")
	var res map[string]any
	json.Unmarshal([]byte(out), &res)
	if code != 4 || res["stdout"] != "hi\n" || res["exit_code"] != float64(4) {
		t.Fatalf("run --json: %d %q", code, out)
	}
	code, _, _ = fsRun(t, s, "", "host0", "run", "--timeout", "300ms", "sleep 30")
	if code == 0 {
		t.Fatal("timeout did not fail")
	}
}

func TestFSErrors(t *testing.T) {
	s := sshtest.Start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"host0", "ls", "/no/such/dir"}, "drove: fs ls: remote: stat /no/such/dir: file does not exist"},
		{[]string{"host0", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"host0", "chmod", "rwx", "/tmp"}, "bad mode"},
		{[]string{"host0", "ln", "a", "b"}, "ln -s"},
		{[]string{"down", "ls"}, "drove: fs ls: remote: down (127.0.0.1:"},
	} {
		code, _, errs := fsRun(t, s, "", tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
		}
	}
	code, out, _ := fsRun(t, s, "", "--json", "host0", "stat", "/no/such")
	if code == 0 || !strings.Contains(out, `"error":`) {
		t.Errorf("--json error: %d %q", code, out)
	}
}

// fsHostile are names that must reach the remote file system literally
// through drove fs. The command substitutions would create marker files if
// a shell ever saw them.
func fsHostile(marker string) []string {
	return []string{
		"with space", "new\nline", `single'quote`, `double"quote`,
		"$(touch " + marker + ")", "`touch " + marker + "`", "semi;colon|pipe",
		"-leading-dash", "-rf", "\xff\xfe-not-utf8-\x80", "*glob?[x]", "~tilde", "$HOME", "tab\tcr\r",
	}
}

// lsNames runs ls --json on dir and returns the exact names.
func lsNames(t *testing.T, s *sshtest.Server, dir string) []string {
	t.Helper()
	code, out, errs := fsRun(t, s, "", "--json", "host0", "ls", "--", dir)
	if code != 0 {
		t.Fatalf("ls --json: exit %d: %s", code, errs)
	}
	var files []struct {
		Name      string `json:"name"`
		NameBytes []byte `json:"name_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &files); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		if f.NameBytes != nil {
			f.Name = string(f.NameBytes)
		}
		names = append(names, f.Name)
	}
	return names
}

func TestFSHostileNames(t *testing.T) {
	s := sshtest.Start(t)
	ok := fsOK(t, s)
	marker := fmt.Sprintf("drove-fs-pwned-%d", time.Now().UnixNano())
	hostile := fsHostile(marker)
	dir := fmt.Sprintf("/tmp/drove-fs-hostile-%d", time.Now().UnixNano())
	t.Cleanup(func() { fsRunCtx(context.Background(), s.SSHConfig, "", "host0", "rm", "-r", "-f", dir) })
	ok("host0", "mkdir", dir)

	local := filepath.Join(t.TempDir(), "src")
	os.Mkdir(local, 0o755)
	for _, name := range hostile {
		if err := os.WriteFile(filepath.Join(local, name), []byte("data of "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range hostile {
		// "--" ends drove's own flags, as for any command, so that "-rf"
		// is a name.
		ok("host0", "put", "-q", "--", filepath.Join(local, name), dir)
		if got := ok("host0", "cat", "--", dir+"/"+name); got != "data of "+name {
			t.Errorf("cat %q = %q", name, got)
		}
		ok("host0", "mv", "--", dir+"/"+name, dir+"/"+name+".mv")
		ok("host0", "ln", "-s", "--", name+".mv", dir+"/"+name+".link")
		ok("host0", "mkdir", "-p", "--", dir+"/"+name+".d/"+name)
		ok("host0", "mkfifo", "--", dir+"/"+name+".d/"+name+"/"+name)
		ok("host0", "chmod", "0600", "--", dir+"/"+name+".mv")
		var st []map[string]any
		json.Unmarshal([]byte(ok("--json", "host0", "stat", "--", dir+"/"+name+".mv")), &st)
		if len(st) != 1 || st[0]["perm"] != "0600" || st[0]["size"] != float64(len("data of "+name)) {
			t.Errorf("stat %q: %v", name, st)
		}
	}
	var want []string
	for _, name := range hostile {
		want = append(want, name+".d", name+".link", name+".mv")
	}
	slices.Sort(want)
	if got := lsNames(t, s, dir); !slices.Equal(got, want) {
		t.Errorf("ls names:\n%q\nwant\n%q", got, want)
	}
	// Plain ls shows names with control bytes or invalid UTF-8 quoted,
	// one per line.
	if got := ok("host0", "ls", dir); !strings.Contains(got, `"new\nline.mv"`+"\n") || !strings.Contains(got, "\n$(touch "+marker+").mv\n") {
		t.Errorf("ls: %q", got)
	}

	// The whole tree comes back with every name intact.
	back := filepath.Join(t.TempDir(), "back")
	ok("host0", "get", "-q", dir, back)
	for _, name := range hostile {
		if b, err := os.ReadFile(filepath.Join(back, name+".mv")); err != nil || string(b) != "data of "+name {
			t.Errorf("get %q: %q %v", name, b, err)
		}
		if l, err := os.Readlink(filepath.Join(back, name+".link")); err != nil || l != name+".mv" {
			t.Errorf("get link %q: %q %v", name, l, err)
		}
	}
	for _, name := range hostile {
		ok("host0", "rm", "-r", "--", dir+"/"+name+".d", dir+"/"+name+".link", dir+"/"+name+".mv")
	}
	if got := lsNames(t, s, dir); len(got) != 0 {
		t.Errorf("after rm: %q", got)
	}
	// Where a shell interpreting a name would have written.
	for _, d := range []string{dir, sshtest.Home, "/tmp"} {
		code, _, _ := fsRun(t, s, "", "host0", "stat", d+"/"+marker)
		if code == 0 {
			t.Errorf("a name was interpreted by a shell: %s/%s exists", d, marker)
		}
	}
}

// TestFSJSONResults: with --json, the commands that change things print
// one JSON result, and --json is accepted before and after HOST and
// COMMAND.
func TestFSJSONResults(t *testing.T) {
	s := sshtest.Start(t)
	dir := fmt.Sprintf("/tmp/drove-fs-json-%d", time.Now().UnixNano())
	t.Cleanup(func() { fsRunCtx(context.Background(), s.SSHConfig, "", "host0", "rm", "-r", "-f", dir) })
	type result struct {
		OK      bool     `json:"ok"`
		Command string   `json:"command"`
		Paths   []string `json:"paths"`
		Target  string   `json:"target"`
		Perm    string   `json:"perm"`
		Error   string   `json:"error"`
	}
	run := func(wantCode int, args ...string) result {
		t.Helper()
		code, out, errs := fsRun(t, s, "", args...)
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != wantCode {
			t.Fatalf("drove fs %q: exit %d, stdout %q (%v), stderr %q", args, code, out, err, errs)
		}
		return r
	}
	for _, tc := range []struct {
		args    []string
		command string
		paths   []string
	}{
		{[]string{"--json", "host0", "mkdir", "-p", dir + "/a", dir + "/b"}, "mkdir", []string{dir + "/a", dir + "/b"}},
		{[]string{"host0", "--json", "mkfifo", dir + "/a/fifo"}, "mkfifo", []string{dir + "/a/fifo"}},
		{[]string{"host0", "chmod", "--json", "0700", dir + "/a"}, "chmod", []string{dir + "/a"}},
		{[]string{"host0", "ln", "-s", "a", dir + "/link", "--json"}, "ln", []string{dir + "/link"}},
		{[]string{"host0", "mv", "--json", dir + "/b", dir + "/c"}, "mv", []string{dir + "/b", dir + "/c"}},
		{[]string{"host0", "rm", "-r", "--json", dir + "/c", dir + "/link"}, "rm", []string{dir + "/c", dir + "/link"}},
	} {
		r := run(0, tc.args...)
		if !r.OK || r.Command != tc.command || !slices.Equal(r.Paths, tc.paths) {
			t.Errorf("drove fs %q: %+v", tc.args, r)
		}
		if tc.command == "ln" && r.Target != "a" || tc.command == "chmod" && r.Perm != "0700" {
			t.Errorf("drove fs %q: %+v", tc.args, r)
		}
	}
	if r := run(1, "host0", "mkdir", "--json", dir+"/a"); r.OK || !strings.Contains(r.Error, "file already exists") {
		t.Errorf("failing mkdir --json: %+v", r)
	}
	// Relative paths come back absolute, resolved against the login
	// directory.
	if r := run(0, "host0", "--json", "rm", "-f", "no-such-file"); !slices.Equal(r.Paths, []string{sshtest.Home + "/no-such-file"}) {
		t.Errorf("rm -f relative: %+v", r)
	}
	// Without --json, these commands print nothing.
	if code, out, _ := fsRun(t, s, "", "host0", "mkdir", "-p", dir+"/a"); code != 0 || out != "" {
		t.Errorf("mkdir without --json: %d %q", code, out)
	}
}

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
