package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// makeTree writes a directory tree with distinct modes and modification
// times (whole seconds, which SFTP carries) and returns its root.
func makeTree(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	files := []struct {
		name string
		mode fs.FileMode
	}{
		{"a.txt", 0o640},
		{"bin/run.sh", 0o755},
		{"sub/deep/x.dat", 0o600},
		{"sub/empty", 0o644},
	}
	for i, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat(f.name, i*1000)), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range []string{"sub/deep", "sub", "bin", ""} {
		if err := os.Chmod(filepath.Join(root, d), []fs.FileMode{0o750, 0o711, 0o755, 0o775}[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Times last, deepest first, so that writing a file does not move its
	// directory's.
	when := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	for i, p := range []string{"a.txt", "bin/run.sh", "sub/deep/x.dat", "sub/empty", "sub/deep", "sub", "bin", ""} {
		mt := when.Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(filepath.Join(root, p), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// sameTree fails unless got holds what want holds, with the same modes,
// modification times and contents.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		wi, _ := d.Info()
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		if gi.Mode() != wi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		if !gi.ModTime().Equal(wi.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
		}
		if wi.Mode().IsRegular() {
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(got, rel))
			if string(a) != string(b) {
				t.Errorf("%s: %d bytes, want %d", rel, len(b), len(a))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d entries compared", n)
	}
}

// TestExecCopy copies a tree to two real sshd hosts and back with --copy
// and --rcopy, one host being down. The hosts' files are on this machine,
// so the test looks at them directly.
func TestExecCopy(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	with := func(args ...string) []string { return append(sshArgs(s), args...) }
	local := t.TempDir()
	tree := makeTree(t, local)
	single := filepath.Join(local, "single.txt")
	os.WriteFile(single, []byte("one file\n"), 0o604)
	old := time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(single, old, old)

	remote := filepath.Join(os.TempDir(), fmt.Sprintf("drove-exec-copy-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(remote) })

	status := regexp.MustCompile(`^\[\d\] \d\d:\d\d:\d\d \[(SUCCESS|FAILURE)\] (\S+)(.*)$`)
	checkStatus := func(t *testing.T, out string, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			m := status.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("not a status line: %q", l)
				continue
			}
			got[m[2]] = m[1]
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("status lines %q, want %v", out, want)
		}
	}

	t.Run("copy", func(t *testing.T) {
		code, out, errs := dexec(t, "", with("--copy", "-w", "host[0-1],down", "--dest", remote, tree, single)...)
		if code != 255 {
			t.Errorf("exit %d, want 255 (a host down)\n%s", code, errs)
		}
		checkStatus(t, out, map[string]string{"host0": "SUCCESS", "host1": "SUCCESS", "down": "FAILURE"})
		if !strings.Contains(out, "down remote: ") {
			t.Errorf("the down host's line does not say why: %q", out)
		}
		sameTree(t, tree, filepath.Join(remote, "tree"))
		fi, err := os.Stat(filepath.Join(remote, "single.txt"))
		if err != nil || fi.Mode() != 0o604 || !fi.ModTime().Equal(old) {
			t.Errorf("single.txt: %v %v", fi, err)
		}
	})
	t.Run("rcopy", func(t *testing.T) {
		dest := t.TempDir()
		code, out, errs := dexec(t, "", with("--rcopy", "-w", "host[0-1],down", "--dest", dest, filepath.Join(remote, "tree"), filepath.Join(remote, "single.txt"))...)
		if code != 255 {
			t.Errorf("exit %d, want 255 (a host down)\n%s", code, errs)
		}
		checkStatus(t, out, map[string]string{"host0": "SUCCESS", "host1": "SUCCESS", "down": "FAILURE"})
		for _, h := range []string{"host0", "host1"} {
			sameTree(t, tree, filepath.Join(dest, "tree."+h))
			fi, err := os.Stat(filepath.Join(dest, "single.txt."+h))
			if err != nil || fi.Mode() != 0o604 || !fi.ModTime().Equal(old) {
				t.Errorf("single.txt.%s: %v %v", h, fi, err)
			}
		}
		entries, _ := os.ReadDir(dest)
		if len(entries) != 4 {
			t.Errorf("%d entries in the destination, want 4 (nothing for the down host)", len(entries))
		}
	})
	t.Run("rcopy of a missing file fails that host with 1", func(t *testing.T) {
		code, out, _ := dexec(t, "", with("--rcopy", "-w", "host0", "--dest", t.TempDir(), filepath.Join(remote, "nosuch"))...)
		if code != 1 || !strings.Contains(out, "[FAILURE] host0 Copy failed: ") || !strings.Contains(out, "nosuch") {
			t.Errorf("exit %d, stdout %q", code, out)
		}
	})
	t.Run("relative dest is in the login directory", func(t *testing.T) {
		name := fmt.Sprintf("drove-exec-copy-rel-%d", time.Now().UnixNano())
		t.Cleanup(func() { os.RemoveAll(filepath.Join(sshtest.Home, name)) })
		code, _, errs := dexec(t, "", with("-c", "-w", "host0", "--dest", name, single)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if _, err := os.Stat(filepath.Join(sshtest.Home, name, "single.txt")); err != nil {
			t.Error(err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f")
		os.WriteFile(file, nil, 0o644)
		for _, tt := range []struct {
			args []string
			msg  string
		}{
			{with("--copy", "-w", "host0", filepath.Join(local, "nosuch")), "no such file"},
			{with("--rcopy", "-w", "host0", "--dest", filepath.Join(local, "nodir"), "x"), "destination directory"},
			{with("--rcopy", "-w", "host0", "--dest", file, "x"), "is not a directory"},
			{with("--copy", "--rcopy", "-w", "host0", single), "cannot be used together"},
			{with("--dest", "d", "-w", "host0", "true"), "--dest is for --copy or --rcopy"},
			{with("--copy", "-w", "host0"), "need at least one"},
		} {
			code, _, errs := dexec(t, "", tt.args...)
			if code != 1 || !strings.Contains(errs, tt.msg) {
				t.Errorf("%q: exit %d, stderr %q, want %q", tt.args[len(sshArgs(s)):], code, errs, tt.msg)
			}
		}
	})
}

// TestExecNodeSets runs drove exec on node sets with -x, operators,
// groups from ClusterShell's and drove's files and pdsh's ^FILE, and checks
// the quiet mode of -o/-e.
func TestExecNodeSets(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(3))
	with := func(args ...string) []string { return append(sshArgs(s), args...) }
	dir := t.TempDir()
	cs := filepath.Join(dir, "clustershell")
	os.MkdirAll(filepath.Join(cs, "groups.d"), 0o755)
	os.WriteFile(filepath.Join(cs, "groups.d", "test.yaml"), []byte("test:\n  all: 'host[0-2]'\n  odd: host1\n"), 0o644)
	droveGroups := filepath.Join(dir, "groups.yaml")
	os.WriteFile(droveGroups, []byte("pair: [host0, host2]\n"), 0o644)
	hostsFile := filepath.Join(dir, "list")
	os.WriteFile(hostsFile, []byte("host0\nhost[1-2] # two more\n"), 0o644)
	t.Setenv(hostset.ClusterShellGroupsEnv, cs)
	t.Setenv(hostset.GroupsFileEnv, droveGroups)

	hostsOf := func(out string) string {
		var hs []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if h, _, ok := strings.Cut(l, ": "); ok {
				hs = append(hs, h)
			}
		}
		return strings.Join(sortedCopy(hs), ",")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{with("-w", "host[0-2]", "-x", "host1", "echo x"), "host0,host2"},
		{with("-w", "host[0-2]!host0", "echo x"), "host1,host2"},
		{with("-w", "host[0-2],-host2", "echo x"), "host0,host1"},
		{with("-w", "host[0-1]&host[1-2]", "echo x"), "host1"},
		{with("-w", "host[0-1]^host[1-2]", "echo x"), "host0,host2"},
		{with("-w", "@test:all!@test:odd", "echo x"), "host0,host2"},
		{with("-w", "@pair", "-x", "@test:odd,host2", "echo x"), "host0"},
		{with("-w", "@test:*", "-x", "@pair", "echo x"), "host1"},
		{with("-w", "^"+hostsFile, "-x", "host0", "echo x"), "host1,host2"},
	} {
		code, out, errs := dexec(t, "", tt.args...)
		if code != 0 || hostsOf(out) != tt.want {
			t.Errorf("%q: exit %d, hosts %s, want %s\n%s", tt.args[len(sshArgs(s)):], code, hostsOf(out), tt.want, errs)
		}
	}
	code, _, errs := dexec(t, "", with("-w", "@nosuch", "true")...)
	if code != 1 || !strings.Contains(errs, "unknown node group: @nosuch") || !strings.Contains(errs, "test.yaml") {
		t.Errorf("unknown group: exit %d, %q", code, errs)
	}
	code, _, errs = dexec(t, "", with("-w", "host[0-2]", "-x", "host[0-2]", "true")...)
	if code != 1 || !strings.Contains(errs, "no hosts") {
		t.Errorf("everything excluded: exit %d, %q", code, errs)
	}

	t.Run("quiet with -o and -e", func(t *testing.T) {
		od, ed := filepath.Join(dir, "out"), filepath.Join(dir, "err")
		code, out, errs := dexec(t, "", with("-o", od, "-e", ed, "-w", "host[0-1]", `echo o; echo e >&2; case "$SSH_CONNECTION" in *" 127.0.0.3 "*) exit 4;; esac`)...)
		if code != 4 {
			t.Errorf("exit %d, want 4", code)
		}
		re := regexp.MustCompile(`^(\[[12]\] \d\d:\d\d:\d\d \[(SUCCESS\] host0|FAILURE\] host1 Exited with error code 4)\n){2}$`)
		if !re.MatchString(out) || strings.Count(out, "host0") != 1 || errs != "" {
			t.Errorf("stdout %q (want only pssh status lines), stderr %q", out, errs)
		}
		if o, _ := os.ReadFile(filepath.Join(od, "host1")); string(o) != "o\n" {
			t.Errorf("out/host1 = %q", o)
		}
	})
	t.Run("quiet with -o only prints stderr live", func(t *testing.T) {
		od := filepath.Join(dir, "out2")
		code, out, errs := dexec(t, "", with("-o", od, "-w", "host0", "echo o; echo e >&2")...)
		if code != 0 || !regexp.MustCompile(`^\[1\] \d\d:\d\d:\d\d \[SUCCESS\] host0\n$`).MatchString(out) || errs != "host0: e\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestRunExclude: drove run --exclude leaves hosts of -S out.
func TestRunExclude(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	code, out, errs := drun(t, "", append(sshArgs(s), "-S", "1/host[0-1]", "--exclude", "host0", `echo "$SSH_CONNECTION" | cut -d' ' -f3; : {}`, ":::", "a", "b", "c")...)
	if code != 0 || strings.Count(out, s.Addrs[1][:strings.LastIndexByte(s.Addrs[1], ':')]+"\n") != 3 {
		t.Errorf("exit %d, stdout %q (want every job on host1), stderr %q", code, out, errs)
	}
	code, _, errs = drun(t, "", append(sshArgs(s), "-S", "host0", "--exclude", "host0", "true", ":::", "a")...)
	if code == 0 || !strings.Contains(errs, "--exclude leaves out every host") {
		t.Errorf("every host excluded: exit %d, stderr %q", code, errs)
	}
}

// TestUpHostsExclude: drove up and down take -x as drove exec does.
func TestUpHostsExclude(t *testing.T) {
	var h upHostFlags
	cmd := &cobra.Command{Use: "up"}
	h.register(cmd)
	if err := cmd.ParseFlags([]string{"-w", "n[1-4]", "-x", "n2", "-l", "u"}); err != nil {
		t.Fatal(err)
	}
	got, err := h.targets([]string{"n5!n5,m1", "-n3"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"u@n1", "u@n4", "u@m1"}; !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
}
