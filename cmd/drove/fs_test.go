package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// fsRun runs `drove fs` with the harness's ssh_config and returns the exit
// code as main would compute it.
func fsRun(t *testing.T, s *sshtest.Server, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return fsRunCtx(t.Context(), s, stdin, args...)
}

func fsRunCtx(ctx context.Context, s *sshtest.Server, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	cmd := newFSCmd()
	cmd.SetArgs(append([]string{"-F", s.SSHConfig}, args...))
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(ctx)
	code := exitCode(err, &errb)
	return code, out.String(), errb.String()
}

func TestFSCommands(t *testing.T) {
	s := sshtest.Start(t)
	ok := func(args ...string) string {
		t.Helper()
		code, out, errs := fsRun(t, s, "", args...)
		if code != 0 {
			t.Fatalf("drove fs %q: exit %d: %s", args, code, errs)
		}
		return out
	}
	dir := fmt.Sprintf("/tmp/drove-fs-test-%d", time.Now().UnixNano())
	// t.Context() is already cancelled when cleanups run.
	t.Cleanup(func() { fsRunCtx(context.Background(), s, "", "host0", "rm", "-r", "-f", dir) })

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
		{[]string{"down", "ls"}, "drove: fs ls: sshconn: down (127.0.0.1:"},
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
