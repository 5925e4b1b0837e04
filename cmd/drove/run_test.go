package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/drove-dev/drove/internal/parallel"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// runSub runs one of this file's subcommands on its own, whether or not the
// root command has it wired, and returns its exit code and output.
func runSub(ctx context.Context, t *testing.T, newCmd func() *cobra.Command, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := newCmd()
	c.SetArgs(args)
	c.SetIn(strings.NewReader(stdin))
	c.SetOut(&out)
	c.SetErr(&errb)
	c.SilenceErrors = true
	err := c.ExecuteContext(ctx)
	return exitCode(err, &errb), out.String(), errb.String()
}

func drun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runSub(t.Context(), t, newRunCmd, stdin, args...)
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(l)
	return l
}

func TestRunLocal(t *testing.T) {
	tests := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		out     string // exact, or sorted lines when sorted
		sorted  bool
		errPart string
	}{
		{name: "stdin commands", stdin: "echo a\necho b\n", args: []string{"-j2", "-k"}, out: "a\nb\n"},
		{name: "template appends {}", args: []string{"-k", "echo", ":::", "x", "y"}, out: "x\ny\n"},
		{name: "replacements", args: []string{"-k", "-j1", "echo", "{#}", "{%}", "{.}", "{/}", "{//}", "{/.}", ":::", "d/f.tar.gz", "plain"},
			out: "1 1 d/f.tar f.tar.gz d f.tar\n2 1 plain plain . plain\n"},
		{name: "positional and combinations", args: []string{"-k", "echo {2}-{1}", ":::", "a", "b", ":::", "1", "2"}, out: "1-a\n2-a\n1-b\n2-b\n"},
		{name: "arguments quoted", args: []string{"-k", "printf '[%s]\\n'", ":::", "a b", "$(id)", "it's"}, out: "[a b]\n[$(id)]\n[it's]\n"},
		{name: "tag", args: []string{"-k", "--tag", "printf 'l1\\nl2'", ":::", "x"}, out: "x\tl1\nx\tl2\n"},
		{name: "grouped, not interleaved", args: []string{"-j4", "sh -c 'for i in 1 2 3; do echo {}$i; sleep 0.01; done'", ":::", "a", "b", "c", "d"},
			out: "a1\na2\na3\nb1\nb2\nb3\nc1\nc2\nc3\nd1\nd2\nd3", sorted: true},
		{name: "line buffer", args: []string{"--line-buffer", "-j2", "echo", ":::", "p", "q"}, out: "p\nq", sorted: true},
		{name: "exit status counts failures", args: []string{"exit", ":::", "0", "1", "2", "0", "3"}, code: 3},
		{name: "more than 100 failed", stdin: strings.Repeat("false\n", 102), args: []string{"-j8"}, code: 101},
		{name: "halt soon", args: []string{"-j1", "--halt", "soon,fail=1", "sh -c 'echo {}; exit {}'", ":::", "0", "5", "0", "0"}, code: 5, out: "0\n5\n"},
		{name: "timeout", args: []string{"--timeout", "0.2", "--term-grace", "100ms", "sleep", ":::", "10"}, code: 1, errPart: "timed out"},
		{name: "stdin not shared with jobs", stdin: "cat\n", out: ""},
		{name: "resume needs joblog", args: []string{"--resume", "true", ":::", "1"}, code: 1, errPart: "--joblog"},
		{name: "bad halt", args: []string{"--halt", "later", "true", ":::", "1"}, code: 1, errPart: "--halt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := drun(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errs)
			}
			if tt.sorted {
				if got, want := sortedLines(out), sortedLines(tt.out); !slices.Equal(got, want) {
					t.Errorf("output lines %q, want %q", got, want)
				}
				if tt.name == "grouped, not interleaved" {
					for _, l := range []string{"a", "b", "c", "d"} {
						if !strings.Contains(out, l+"1\n"+l+"2\n"+l+"3\n") {
							t.Errorf("job %s interleaved:\n%s", l, out)
						}
					}
				}
			} else if out != tt.out {
				t.Errorf("stdout %q, want %q", out, tt.out)
			}
			if !strings.Contains(errs, tt.errPart) {
				t.Errorf("stderr %q lacks %q", errs, tt.errPart)
			}
		})
	}
}

func TestRunArgFiles(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "in")
	os.WriteFile(f, []byte("1\n2\n"), 0o644)
	code, out, errs := drun(t, "s1\ns2\n", "-k", "echo", "{1}{2}", "::::", f, "-")
	if code != 0 || out != "1s1\n1s2\n2s1\n2s2\n" {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
	code, out, _ = drun(t, "", "-k", "-a", f, "echo")
	if code != 0 || out != "1\n2\n" {
		t.Fatalf("-a: exit %d out %q", code, out)
	}
}

var joblogLine = regexp.MustCompile(`^(\d+)\t(\S+)\t(\d+\.\d{3})\t( *\d+\.\d{3})\t(\d+)\t(\d+)\t(-?\d+)\t(\d+)\t(.*)$`)

func TestRunJobLogResultsResume(t *testing.T) {
	dir := t.TempDir()
	jl := filepath.Join(dir, "jobs.tsv")
	res := filepath.Join(dir, "res")
	code, _, errs := drun(t, "", "--joblog", jl, "--results", res, "-j3", "sh -c 'echo out{}; echo err{} >&2; exit {}'", ":::", "0", "1", "0")
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, _ := os.ReadFile(jl)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != strings.TrimSuffix(parallel.JobLogHeader, "\n") || len(lines) != 4 {
		t.Fatalf("joblog:\n%s", b)
	}
	exits := map[string]string{}
	for _, l := range lines[1:] {
		m := joblogLine.FindStringSubmatch(l)
		if m == nil || m[2] != ":" || len(m[4]) != 10 {
			t.Fatalf("joblog line %q", l)
		}
		exits[m[1]] = m[7]
	}
	if exits["1"] != "0" || exits["2"] != "1" || exits["3"] != "0" {
		t.Errorf("exit values %v", exits)
	}
	for seq, want := range map[string][3]string{"1": {"out0\n", "err0\n", "0\n"}, "2": {"out1\n", "err1\n", "1\n"}} {
		for i, name := range []string{"stdout", "stderr", "exitcode"} {
			if got, _ := os.ReadFile(filepath.Join(res, seq, name)); string(got) != want[i] {
				t.Errorf("results %s/%s = %q, want %q", seq, name, got, want[i])
			}
		}
	}
	// --resume-failed reruns job 2 only (and it fails again), --resume
	// reruns nothing.
	code, out, _ := drun(t, "", "--joblog", jl, "--resume-failed", "-k", "sh -c 'echo again{}; exit {}'", ":::", "0", "1", "0")
	if code != 1 || out != "again1\n" {
		t.Errorf("--resume-failed: exit %d out %q", code, out)
	}
	code, out, _ = drun(t, "", "--joblog", jl, "--resume", "echo", ":::", "0", "1", "0", "new")
	if code != 0 || out != "new\n" {
		t.Errorf("--resume: exit %d out %q", code, out)
	}
	b, _ = os.ReadFile(jl)
	if n := strings.Count(string(b), "\n"); n != 6 || strings.Count(string(b), "Seq\t") != 1 {
		t.Errorf("joblog after resumes:\n%s", b)
	}
}

func TestRunRetriesLocal(t *testing.T) {
	dir := t.TempDir()
	// Fails on the first two attempts, then succeeds.
	cmd := fmt.Sprintf(`n=$(cat %[1]s/c 2>/dev/null || echo 0); echo $((n+1)) > %[1]s/c; [ $n -ge 2 ] || exit 1; echo ok; : {}`, dir)
	code, out, errs := drun(t, "", "--retries", "3", cmd, ":::", "x")
	if code != 0 || out != "ok\n" {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
	os.Remove(filepath.Join(dir, "c"))
	code, _, _ = drun(t, "", "--retries", "2", cmd, ":::", "x")
	if code != 1 {
		t.Fatalf("two attempts: exit %d, want 1", code)
	}
}

// sshArgs are the flags pointing drove at the test sshd.
func sshArgs(s *sshtest.Server) []string {
	return []string{"-F", s.SSHConfig, "--known-hosts", s.KnownHosts, "--identity", s.KeyPath, "--connect-timeout", "3s"}
}

func testPool(t *testing.T, s *sshtest.Server) *sshconn.Pool {
	t.Helper()
	p, err := sshconn.NewPool(sshconn.Config{ConfigFile: s.SSHConfig, NoAgent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// remoteJobs counts, on host, the process groups (jobs: each remote
// command has its own) with a process whose command line contains marker,
// asked over SSH. Groups, not processes: a job's shell, its watchdog and
// its children all carry the marker.
func remoteJobs(t *testing.T, p *sshconn.Pool, host, marker string) int {
	t.Helper()
	var out bytes.Buffer
	pat := sshconn.Quote("[" + marker[:1] + "]" + marker[1:])
	cmd := "pids=$(pgrep -d, -u drovetest -f " + pat + ") || { echo 0; exit 0; }; ps -o pgid= -p \"$pids\" | sort -u | wc -l"
	if _, err := p.Run(context.Background(), host, &sshconn.Cmd{Command: cmd, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	// The count is the last line: a noisy login prints before it.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	n, err := strconv.Atoi(strings.TrimSpace(lines[len(lines)-1]))
	if err != nil {
		t.Fatalf("counting remote jobs: %q", out.String())
	}
	return n
}

// workdirsLeft lists what is left, on host, of the --workdir ... directories
// of the jobs this process ran: those under ~/.drove/tmp named after its
// pid. Other tests' directories do not count.
func workdirsLeft(t *testing.T, p *sshconn.Pool, host string) string {
	t.Helper()
	var ls bytes.Buffer
	cmd := fmt.Sprintf("cd .drove/tmp 2>/dev/null || exit 0; ls -A | grep '^%d-' || true; find %d-* 2>/dev/null || true", os.Getpid(), os.Getpid())
	if _, err := p.Run(context.Background(), host, &sshconn.Cmd{Command: cmd, Stdout: &ls}); err != nil {
		t.Fatal(err)
	}
	return ls.String()
}

func TestRunSSH(t *testing.T) { forModes(t, testRunSSH) }

func testRunSSH(t *testing.T, m cliMode) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	ssh := sshArgs(s)
	with := func(args ...string) []string { return append(append([]string{}, ssh...), args...) }

	t.Run("spread over hosts and slots", func(t *testing.T) {
		jl := filepath.Join(t.TempDir(), "log")
		code, out, errs := m.drun(t, "", with("-S", "2/host0,2/host1", "--joblog", jl, "--tag", "sleep 0.2; echo {#}", ":::", "a", "b", "c", "d", "e", "f", "g", "h")...)
		if code != 0 || len(sortedLines(out)) != 8 {
			t.Fatalf("exit %d out %q err %s", code, out, errs)
		}
		b, _ := os.ReadFile(jl)
		if !strings.Contains(string(b), "\thost0\t") || !strings.Contains(string(b), "\thost1\t") {
			t.Errorf("jobs not spread over both hosts:\n%s", b)
		}
	})
	t.Run("hostile commands reach the shell exactly", func(t *testing.T) {
		hostile := []string{`a'b"c\d`, "$(touch /tmp/pwned) `id` ; echo no", "line1\nline2", "*", "-n", "", "tab\there ${x}"}
		args := with("-S", "host0", "-k", "printf '<%s>\\n'", ":::")
		args = append(args, hostile...)
		code, out, errs := m.drun(t, "", args...)
		var want strings.Builder
		for _, h := range hostile {
			want.WriteString("<" + h + ">\n")
		}
		if code != 0 || out != want.String() {
			t.Fatalf("exit %d\n got %q\nwant %q\n%s", code, out, want.String(), errs)
		}
		// As whole command lines from standard input, too.
		code, out, _ = m.drun(t, "printf '%s|' \"a  b\" '$(x)'; echo ';'\n", with("-S", "host1")...)
		if code != 0 || out != "a  b|$(x)|;\n" {
			t.Fatalf("stdin command: exit %d out %q", code, out)
		}
	})
	t.Run("down host is a connection failure, others run its jobs", func(t *testing.T) {
		code, out, errs := m.drun(t, "", with("-S", "1/down,1/host0", "echo", ":::", "1", "2", "3")...)
		if code != 0 || len(sortedLines(out)) != 3 {
			t.Fatalf("exit %d out %q err %s", code, out, errs)
		}
		if !strings.Contains(errs, "down: connection failed") {
			t.Errorf("stderr %q", errs)
		}
		code, _, errs = m.drun(t, "", with("-S", "down", "echo", ":::", "1")...)
		if code != 255 || !strings.Contains(errs, "no host could be used") {
			t.Errorf("only host down: exit %d err %s", code, errs)
		}
	})
	t.Run("unknown host key refused", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(empty, nil, 0o644)
		code, _, errs := m.drun(t, "", "-F", "none", "--known-hosts", empty, "--identity", s.KeyPath, "-S", s.Target(0), "echo", ":::", "1")
		if code != 255 || !strings.Contains(errs, "unknown host key") {
			t.Errorf("exit %d err %s", code, errs)
		}
		code, out, errs := m.drun(t, "", "-F", "none", "--known-hosts", empty, "--accept-new", "--identity", s.KeyPath, "-S", s.Target(0), "echo", ":::", "1")
		if code != 0 || out != "1\n" {
			t.Errorf("--accept-new: exit %d out %q err %s", code, out, errs)
		}
	})
	t.Run("slots from nproc and -j", func(t *testing.T) {
		// -j 3: three jobs at once, in slots 1, 2 and 3, given out in order.
		code, out, _ := m.drun(t, "", with("-S", "host0", "-j", "3", "--tag", "sleep 0.3; echo {%}", ":::", "a", "b", "c")...)
		if got := sortedLines(out); code != 0 || !slices.Equal(got, []string{"a\t1", "b\t2", "c\t3"}) {
			t.Errorf("-j 3: exit %d out %q", code, out)
		}
		// No -j: as many slots as the host's nproc, so twice that many jobs
		// use every slot 1 … nproc and no other.
		var np bytes.Buffer
		testPool(t, s).Run(context.Background(), "host0", &sshconn.Cmd{Command: "nproc", Stdout: &np})
		n, err := strconv.Atoi(strings.TrimSpace(np.String()))
		if err != nil {
			t.Fatalf("nproc: %q", np.String())
		}
		var inputs []string
		for i := range 2 * n {
			inputs = append(inputs, strconv.Itoa(i))
		}
		code, out, _ = m.drun(t, "", with(append([]string{"-S", "host0", "sleep 0.3; echo {%} #", ":::"}, inputs...)...)...)
		slots := map[string]int{}
		for _, l := range sortedLines(out) {
			slots[l]++
		}
		if code != 0 || len(slots) != n {
			t.Errorf("nproc %d: exit %d, slots used %v", n, code, slots)
		}
		for i := 1; i <= n; i++ {
			if slots[strconv.Itoa(i)] == 0 {
				t.Errorf("nproc %d: slot %d never used (%v)", n, i, slots)
			}
		}
	})
	t.Run("retries go to another host", func(t *testing.T) {
		// Fails on host0 (127.0.0.2), succeeds on host1, which is free
		// when the retry is placed.
		jl := filepath.Join(t.TempDir(), "log")
		code, out, errs := m.drun(t, "", with("-S", "1/host0,1/host1", "--retries", "2", "--joblog", jl,
			`case "$SSH_CONNECTION" in *" 127.0.0.2 "*) exit 7;; esac; echo ok {}`, ":::", "a")...)
		if code != 0 || out != "ok a\n" {
			t.Fatalf("exit %d out %q err %s", code, out, errs)
		}
		b, _ := os.ReadFile(jl)
		if strings.Count(string(b), "\thost1\t") != 1 {
			t.Errorf("joblog:\n%s", b)
		}
		// Without retries the failure stands.
		code, _, _ = m.drun(t, "", with("-S", "1/host0", `case "$SSH_CONNECTION" in *" 127.0.0.2 "*) exit 7;; esac; echo ok {}`, ":::", "a")...)
		if code != 1 {
			t.Errorf("no retries: exit %d", code)
		}
	})
	t.Run("timeout kills the remote process group", func(t *testing.T) {
		marker := fmt.Sprintf("drvto%d", time.Now().UnixNano())
		code, _, errs := m.drun(t, "", with("-S", "host0", "--timeout", "0.5", "--term-grace", "300ms",
			fmt.Sprintf("trap '' TERM; sh -c 'sleep 300; : %s' & sh -c 'trap \"\" TERM; sleep 301; : %s'; wait", marker, marker), ":::", "x")...)
		if code != 1 || !strings.Contains(errs, "timed out") {
			t.Errorf("exit %d err %s", code, errs)
		}
		if n := remoteJobs(t, testPool(t, s), "host0", marker); n != 0 {
			t.Errorf("%d remote jobs left", n)
		}
	})
	t.Run("halt now kills the others", func(t *testing.T) {
		marker := fmt.Sprintf("drvhalt%d", time.Now().UnixNano())
		start := time.Now()
		code, _, _ := m.drun(t, "", with("-S", "host0,host1", "-j", "2", "--halt", "now,fail=1", "--term-grace", "200ms",
			fmt.Sprintf("[ {} = fail ] && exit 9; sleep 60; : %s", marker), ":::", "fail", "a", "b", "c")...)
		if code != 9 || time.Since(start) > 20*time.Second {
			t.Errorf("exit %d after %v", code, time.Since(start))
		}
		p := testPool(t, s)
		if n := remoteJobs(t, p, "host0", marker) + remoteJobs(t, p, "host1", marker); n != 0 {
			t.Errorf("%d remote jobs left", n)
		}
	})
	t.Run("transfer return cleanup basefile workdir", func(t *testing.T) {
		local := t.TempDir()
		t.Chdir(local)
		os.WriteFile("a.txt", []byte("alpha\n"), 0o644)
		os.WriteFile("b.txt", []byte("beta\n"), 0o644)
		os.WriteFile("base.sh", []byte("tr a-z A-Z"), 0o644)
		wd := fmt.Sprintf("drove-wd-%d", time.Now().UnixNano())
		code, _, errs := m.drun(t, "", with("-S", "host0,host1", "--basefile", "base.sh", "--workdir", wd, "--transfer", "--return", "{.}.out", "--cleanup",
			"sh base.sh < {} > {.}.out", ":::", "a.txt", "b.txt")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for f, want := range map[string]string{"a.out": "ALPHA\n", "b.out": "BETA\n"} {
			if b, _ := os.ReadFile(f); string(b) != want {
				t.Errorf("%s = %q, want %q", f, b, want)
			}
		}
		p := testPool(t, s)
		for _, h := range []string{"host0", "host1"} {
			var out bytes.Buffer
			p.Run(context.Background(), h, &sshconn.Cmd{Command: "ls -A " + wd + " 2>/dev/null; ls base.sh 2>/dev/null; rmdir " + wd + " 2>/dev/null; true", Stdout: &out})
			if out.Len() != 0 {
				t.Errorf("%s: left behind: %q", h, out.String())
			}
		}
		// --workdir ... uses a fresh directory per job, basefiles included,
		// and removes it.
		code, out, errs := m.drun(t, "", with("-S", "host0", "--workdir", "...", "--bf", "base.sh", "--trc", "{}.up", "sh base.sh < {} > {}.up; pwd", ":::", "a.txt")...)
		if code != 0 || !strings.Contains(out, "/.drove/tmp/") {
			t.Fatalf("exit %d out %q err %s", code, out, errs)
		}
		if b, _ := os.ReadFile("a.txt.up"); string(b) != "ALPHA\n" {
			t.Errorf("returned %q", b)
		}
		if left := workdirsLeft(t, p, "host0"); left != "" {
			t.Errorf("workdir left: %q", left)
		}
	})
	t.Run("workdir ... is removed however the job ends", func(t *testing.T) {
		t.Chdir(t.TempDir())
		os.WriteFile("in.txt", []byte("data\n"), 0o644)
		p := testPool(t, s)
		tests := []struct {
			name    string
			command string
			extra   []string
			code    int
			errs    string // what stderr says
		}{
			{"success", "cat {} > {}.out", nil, 0, ""},
			// The job's failure is what is reported, not the file it did
			// not make.
			{"failure without the file to return", "exit 3 #", nil, 1, ""},
			{"timeout", "sleep 60 #", []string{"--timeout", "0.5", "--term-grace", "100ms"}, 1, "timed out"},
			{"retried", "exit 4 #", []string{"--retries", "2"}, 1, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := with("-S", "host0", "--wd", "...", "--transfer", "--return", "{}.out", "--cleanup")
				args = append(append(args, tt.extra...), tt.command, ":::", "in.txt")
				if code, _, errs := m.drun(t, "", args...); code != tt.code || !strings.Contains(errs, tt.errs) || strings.Contains(errs, "return") {
					t.Fatalf("exit %d (want %d), stderr %q (want %q, and nothing about the return)", code, tt.code, errs, tt.errs)
				}
				if left := workdirsLeft(t, p, "host0"); left != "" {
					t.Errorf("left in ~/.drove/tmp: %q", left)
				}
			})
		}
	})
	t.Run("interrupt kills remote jobs and resume finishes", func(t *testing.T) {
		marker := fmt.Sprintf("drvint%d", time.Now().UnixNano())
		jl := filepath.Join(t.TempDir(), "log")
		args := with("-S", "2/host0,2/host1", "--joblog", jl, "--term-grace", "300ms",
			fmt.Sprintf("[ {} -le 4 ] && exit 0; sleep 60; : %s {}", marker), ":::", "1", "2", "3", "4", "5", "6", "7", "8")
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan int)
		go func() {
			code, _, _ := runSub(ctx, t, newRunCmd, "", args...)
			done <- code
		}()
		p := testPool(t, s)
		waitRemoteJobs(t, p, "host0", marker, 4, new(bytes.Buffer))
		cancel() // what SIGINT does through signal.NotifyContext in main
		if code := <-done; code != 130 {
			t.Errorf("exit %d, want 130", code)
		}
		if n := remoteJobs(t, p, "host0", marker) + remoteJobs(t, p, "host1", marker); n != 0 {
			t.Errorf("%d remote jobs left after interrupt", n)
		}
		b, _ := os.ReadFile(jl)
		if n := strings.Count(string(b), "\n"); n != 5 {
			t.Fatalf("joblog after interrupt (want header + jobs 1-4):\n%s", b)
		}
		// Resume with a command that no longer sleeps: only 5-8 run.
		code, out, errs := m.drun(t, "", with("-S", "host0,host1", "--joblog", jl, "--resume", "-k", "echo", ":::", "1", "2", "3", "4", "5", "6", "7", "8")...)
		if code != 0 || out != "5\n6\n7\n8\n" {
			t.Errorf("resume: exit %d out %q err %s", code, out, errs)
		}
	})
	t.Run("help explains flags", func(t *testing.T) {
		code, out, _ := m.drun(t, "", "--help")
		for _, f := range []string{"--sshlogin", "--slf", "--jobs", "--tag", "--keep-order", "--line-buffer", "--results", "--joblog", "--resume",
			"--resume-failed", "--retries", "--timeout", "--halt", "--transfer", "--return", "--cleanup", "--basefile", "--workdir", "--bar", "--eta", "--accept-new"} {
			if !strings.Contains(out, f) {
				t.Errorf("--help lacks %s", f)
			}
		}
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	})
}

func TestRunSlf(t *testing.T) { forModes(t, testRunSlf) }

func testRunSlf(t *testing.T, m cliMode) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	slf := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(slf, []byte("# test hosts\n2/host0\n\n1/host1\n:\n"), 0o644)
	jl := filepath.Join(t.TempDir(), "log")
	code, out, errs := m.drun(t, "", append(sshArgs(s), "--slf", slf, "--joblog", jl, "sleep 0.2; echo", ":::", "1", "2", "3", "4", "5", "6", "7", "8")...)
	if code != 0 || len(sortedLines(out)) != 8 {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
	b, _ := os.ReadFile(jl)
	for _, h := range []string{"\thost0\t", "\thost1\t", "\t:\t"} {
		if !strings.Contains(string(b), h) {
			t.Errorf("no job on %q:\n%s", h, b)
		}
	}
}

// TestRunSIGINT sends a real SIGINT to a built drove binary: main's signal
// handling must reach the remote process groups.
func TestRunSIGINT(t *testing.T) { forModes(t, testRunSIGINT) }

func testRunSIGINT(t *testing.T, m cliMode) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := sshtest.Start(t, sshtest.WithHosts(2))
	bin := buildDrove(t)
	marker := fmt.Sprintf("drvsigint%d", time.Now().UnixNano())
	jl := filepath.Join(t.TempDir(), "joblog")
	inputs := []string{":::", "1", "2", "3", "4", "5", "6"}
	args := append([]string{"run"}, m.with(sshArgs(s))...)
	// Jobs 1 and 2 end at once; 3-6 run until the SIGINT.
	args = append(args, "-S", "host0,host1", "-j", "2", "--term-grace", "300ms", "--joblog", jl,
		"[ {} -le 2 ] && exit 0; sleep 60; : "+marker)
	args = append(args, inputs...)
	cmd := exec.Command(bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := testPool(t, s)
	waitRemoteJobs(t, p, "host0", marker, 4, &errb)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 130 {
		t.Errorf("exit %v, want 130; stderr %s", err, errb.String())
	}
	if n := remoteJobs(t, p, "host0", marker); n != 0 {
		t.Errorf("%d remote jobs left after SIGINT", n)
	}
	// The killed jobs are not in the joblog: --resume runs exactly them.
	resume := append([]string{"run"}, m.with(sshArgs(s))...)
	resume = append(resume, "-S", "host0,host1", "--joblog", jl, "--resume", "-k", "echo")
	out, err := exec.Command(bin, append(resume, inputs...)...).Output()
	if err != nil || string(out) != "3\n4\n5\n6\n" {
		b, _ := os.ReadFile(jl)
		t.Errorf("resume: %v, out %q; joblog:\n%s", err, out, b)
	}
}

// waitRemoteJobs waits until at least n jobs whose command line contains
// marker run on host (all the test hosts are this machine, so any of them
// sees every host's processes), failing t after a while.
func waitRemoteJobs(t *testing.T, p *sshconn.Pool, host, marker string, n int, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := remoteJobs(t, p, host, marker)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d remote jobs started; stderr: %s", got, n, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunClientKilled kills a real drove run with SIGKILL, which leaves it
// no chance to kill anything: the remote commands must end by themselves
// once their SSH connection is gone, or --resume would run them a second
// time while the first ones still run.
func TestRunClientKilled(t *testing.T) { forModes(t, testRunClientKilled) }

func testRunClientKilled(t *testing.T, m cliMode) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := sshtest.Start(t, sshtest.WithHosts(2))
	bin := buildDrove(t)
	p := testPool(t, s)
	tests := []struct {
		name string
		args []string
	}{
		{"plain", nil},
		// A job in its own directory under ~/.drove/tmp goes the same way.
		{"workdir", []string{"--wd", "..."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := fmt.Sprintf("drvkill%d", time.Now().UnixNano())
			args := append([]string{"run"}, m.with(sshArgs(s))...)
			args = append(args, "-S", "2/host0,2/host1", "--joblog", filepath.Join(t.TempDir(), "joblog"))
			args = append(args, tt.args...)
			// Each job's shell also leaves a child shell in the background,
			// which must die with the group too.
			args = append(args, `sh -c "sleep 300; : `+marker+`" & sleep 301; : `+marker+` {}`, ":::", "1", "2", "3", "4")
			cmd := exec.Command(bin, args...)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			waitRemoteJobs(t, p, "host0", marker, 4, &errb)
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			cmd.Wait()
			// The killed client leaves its --wd ... directories behind, as
			// GNU parallel does; remove them, or a later test process that
			// happens to get the same pid would take them for its own.
			t.Cleanup(func() {
				for _, h := range []string{"host0", "host1"} {
					p.Run(context.Background(), h, &sshconn.Cmd{Command: fmt.Sprintf("rm -rf .drove/tmp/%d-*", cmd.Process.Pid)})
				}
			})
			deadline := time.Now().Add(15 * time.Second)
			for {
				n := remoteJobs(t, p, "host0", marker)
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d remote jobs still running 15 s after the client was killed", n)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestRunFlagAliases covers the alias and SSH option flags the other tests
// do not: --tf, --transferfile, --bf, --wd, --sshloginfile, --login-user,
// --max-sessions, --group.
func TestRunFlagAliases(t *testing.T) { forModes(t, testRunFlagAliases) }

func testRunFlagAliases(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	local := t.TempDir()
	t.Chdir(local)
	os.WriteFile("in.txt", []byte("data\n"), 0o644)
	os.WriteFile("base.txt", []byte("base\n"), 0o644)
	slf := filepath.Join(local, "slf")
	os.WriteFile(slf, []byte("2/"+s.Addrs[0]+"\n"), 0o644)
	wd := fmt.Sprintf("drove-alias-%d", time.Now().UnixNano())
	for _, tf := range []string{"--tf", "--transferfile"} {
		t.Run(tf, func(t *testing.T) {
			args := []string{"--known-hosts", s.KnownHosts, "--identity", s.KeyPath, "-F", "none", "--login-user", s.User,
				"--max-sessions", "1", "--group", "--sshloginfile", slf, "--bf", "base.txt", "--wd", wd, "--cleanup", tf, "{}",
				"cat {} base.txt; pwd", ":::", "in.txt"}
			code, out, errs := m.drun(t, "", args...)
			if code != 0 || !strings.HasPrefix(out, "data\nbase\n/") || !strings.HasSuffix(out, "/"+wd+"\n") {
				t.Fatalf("exit %d out %q err %s", code, out, errs)
			}
		})
	}
	// --max-sessions 1 forces a connection per running job; the jobs still
	// all run.
	code, out, errs := m.drun(t, "", "-F", s.SSHConfig, "--max-sessions", "1", "-S", "3/host0", "echo", ":::", "a", "b", "c")
	if code != 0 || len(sortedLines(out)) != 3 {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
}

func TestExecLoginUser(t *testing.T) { forModes(t, testExecLoginUser) }

func testExecLoginUser(t *testing.T, m cliMode) {
	s := sshtest.Start(t)
	code, out, errs := m.dexec(t, "", "-F", "none", "--known-hosts", s.KnownHosts, "--identity", s.KeyPath, "-l", s.User, "-w", s.Addrs[0], "id -un")
	if code != 0 || out != s.Addrs[0]+": "+s.User+"\n" {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
}

// TestRunLocalWorkdir: ":" with --workdir is a host like any other: the
// files are copied into the workdir (relative to the home directory), back
// again, and cleaned up.
func TestRunLocalWorkdir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Chdir(t.TempDir())
	os.WriteFile("in.txt", []byte("hello\n"), 0o644)
	code, out, errs := drun(t, "", "--workdir", "...", "--transfer", "--return", "{}.out", "--cleanup", "cat {} | tee {}.out; pwd", ":::", "in.txt")
	if code != 0 || !strings.HasPrefix(out, "hello\n"+filepath.Join(home, ".drove", "tmp")+"/") {
		t.Fatalf("exit %d out %q err %s", code, out, errs)
	}
	if b, _ := os.ReadFile("in.txt.out"); string(b) != "hello\n" {
		t.Errorf("returned %q", b)
	}
	if left, _ := os.ReadDir(filepath.Join(home, ".drove", "tmp")); len(left) != 0 {
		t.Errorf("workdirs left: %v", left)
	}
	if _, err := os.Stat(".drove"); err == nil {
		t.Error("./.drove created in the current directory")
	}
	// A named workdir stays, with the transferred file, unless --cleanup;
	// basefiles go there too.
	os.WriteFile("base.sh", []byte("tr a-z A-Z"), 0o644)
	code, out, errs = drun(t, "", "--wd", "wd", "--tf", "{}", "--bf", "base.sh", "sh base.sh <", ":::", "in.txt")
	if code != 0 || out != "HELLO\n" {
		t.Fatalf("named workdir: exit %d out %q err %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "wd", "in.txt")); string(b) != "hello\n" {
		t.Errorf("~/wd/in.txt = %q", b)
	}
	// Without a workdir the files are already here: nothing is copied or
	// removed, even with --cleanup.
	code, out, _ = drun(t, "", "--trc", "{}", "cat", ":::", "in.txt")
	if b, _ := os.ReadFile("in.txt"); code != 0 || out != "hello\n" || string(b) != "hello\n" {
		t.Errorf("no workdir: exit %d out %q, in.txt %q", code, out, b)
	}
}

// lineStamps records when each line of output arrived.
type lineStamps struct {
	mu    sync.Mutex
	start time.Time
	lines []string
	after []time.Duration
}

func (w *lineStamps) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l != "" {
			w.lines = append(w.lines, strings.TrimSuffix(l, "\n"))
			w.after = append(w.after, time.Since(w.start))
		}
	}
	return len(p), nil
}

// TestRunLineBufferLive checks that --line-buffer prints a line while its
// job is still running, also with -k for the oldest job.
func TestRunLineBufferLive(t *testing.T) {
	for _, extra := range [][]string{nil, {"-k"}} {
		w := &lineStamps{start: time.Now()}
		c := newRunCmd()
		c.SetArgs(append(append([]string{"--line-buffer", "-j2"}, extra...), "echo {}a; sleep 1; echo {}b", ":::", "1", "2"))
		c.SetIn(strings.NewReader(""))
		c.SetOut(w)
		var errb bytes.Buffer
		c.SetErr(&errb)
		if err := c.ExecuteContext(t.Context()); err != nil {
			t.Fatalf("%v: %v %s", extra, err, errb.String())
		}
		if len(w.lines) != 4 || w.after[0] > 700*time.Millisecond || w.after[3] < time.Second {
			t.Errorf("%v: lines %q after %v: the first line waited for its job", extra, w.lines, w.after)
		}
		if extra != nil && strings.Join(w.lines, " ") != "1a 1b 2a 2b" {
			t.Errorf("-k: lines %q", w.lines)
		}
	}
}

// TestIPv6Logins: bracketed IPv6 literals are logins, not node-set ranges,
// for -S and -w alike.
func TestIPv6Logins(t *testing.T) { forModes(t, testIPv6Logins) }

func testIPv6Logins(t *testing.T, m cliMode) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := sshtest.Start(t, sshtest.WithConfig(fmt.Sprintf("ListenAddress [::1]:%d", port)))
	addr := fmt.Sprintf("[::1]:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	ssh := []string{"-F", "none", "--known-hosts", kh, "--accept-new", "--identity", s.KeyPath, "--login-user", s.User}
	code, out, errs := m.drun(t, "", append(ssh, "-S", "2/"+addr, "echo", ":::", "a")...)
	if code != 0 || out != "a\n" {
		t.Errorf("run -S %s: exit %d out %q err %s", addr, code, out, errs)
	}
	code, out, errs = m.dexec(t, "", append(ssh, "-w", s.User+"@"+addr, "echo hi")...)
	if code != 0 || out != s.User+"@"+addr+": hi\n" {
		t.Errorf("exec -w %s: exit %d out %q err %s", addr, code, out, errs)
	}
}

// TestRunNoisyLogin: a login that prints before the command (a .bashrc
// that echoes; here a ForceCommand) does not stop a timeout from killing
// the job's process group, and its text comes through as output.
func TestRunNoisyLogin(t *testing.T) { forModes(t, testRunNoisyLogin) }

func testRunNoisyLogin(t *testing.T, m cliMode) {
	s := sshtest.Start(t, sshtest.WithConfig(`ForceCommand echo "motd line"; eval "$SSH_ORIGINAL_COMMAND"`))
	marker := fmt.Sprintf("drvnoisy%d", time.Now().UnixNano())
	code, out, errs := m.drun(t, "", append(sshArgs(s), "-S", "host0", "-j", "1", "-k", "--timeout", "0.5", "--term-grace", "200ms",
		"[ {} = quick ] && echo {} && exit 0; sleep 300; : "+marker, ":::", "quick", "slow")...)
	// A ForceCommand that prints also garbles the SFTP subsystem, so the
	// agent cannot be installed: drove says so and runs a session per job.
	if m.agent() && !strings.Contains(errs, "host0: cannot start the agent, running a session per job") {
		t.Errorf("no warning about the agent: %s", errs)
	}
	if code != 1 || !strings.Contains(errs, "timed out") || out != "motd line\nquick\nmotd line\n" {
		t.Errorf("exit %d out %q err %s", code, out, errs)
	}
	if n := remoteJobs(t, testPool(t, s), "host0", marker); n != 0 {
		t.Errorf("%d remote jobs left after --timeout", n)
	}
}
