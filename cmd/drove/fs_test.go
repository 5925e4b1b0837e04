package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	// put, get and run print the same envelope, with their own fields.
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--json", "host0", "put", local, dir + "/a/f"},
		{"--json", "host0", "get", dir + "/a/f", local + ".back"},
		{"--json", "host0", "run", "exit 0"},
	} {
		if r := run(0, args...); !r.OK || r.Command != args[2] {
			t.Errorf("drove fs %q: %+v, want ok and command %q", args, r, args[2])
		}
	}
	if r := run(1, "host0", "mkdir", "--json", dir+"/a"); r.OK || r.Command != "mkdir" || !strings.Contains(r.Error, "file already exists") {
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
