package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

// TestRunGNUErrors: GNU parallel syntax drove does not support fails with
// a message saying what to use instead, before any job runs, never with a
// raw parser error and never by running other jobs.
func TestRunGNUErrors(t *testing.T) {
	const jForms = "give N, N% (of each host's CPUs), +N or -N (CPUs plus or minus N)"
	tests := []struct {
		args []string
		want string // the whole of stderr
	}{
		{[]string{"-j", "200%x", "echo", ":::", "a"}, `drove: -j "200%x": not a job count (a -j procfile is not supported either); ` + jForms},
		{[]string{"-j200%%", "echo", ":::", "a"}, `drove: -j "200%%": not a percentage; ` + jForms},
		{[]string{"-j", "0", "echo", ":::", "a"}, `drove: -j "0": GNU parallel's "as many jobs as possible" is not supported; give a count (say -j 64) or N/ in -S`},
		{[]string{"-j", "+x", "echo", ":::", "a"}, `drove: -j "+x": not a number of CPUs to add or take away; ` + jForms},
		{[]string{"echo", "{=s/a/b/=}", ":::", "a"}, `drove: run: {=s/a/b/=} in the command: {= perl expression =} replacement strings are not supported (drove runs no Perl); use {.} {/} {//} {/.} for the usual cases, or let the shell do it, e.g. "$(echo {} | sed 's/a/b/')"`},
		{[]string{"mv", "{}", "{= s/x/y/ =}", ":::", "a"}, `drove: run: {= s/x/y/ =} in the command: {= perl expression =} replacement strings are not supported (drove runs no Perl); use {.} {/} {//} {/.} for the usual cases, or let the shell do it, e.g. "$(echo {} | sed 's/a/b/')"`},
		{[]string{"--return", "{=s/a/b/=}", "echo", ":::", "a"}, `drove: run: {=s/a/b/=} in --return: {= perl expression =} replacement strings are not supported (drove runs no Perl); use {.} {/} {//} {/.} for the usual cases, or let the shell do it, e.g. "$(echo {} | sed 's/a/b/')"`},
		{[]string{"--pipe", "wc", "-l"}, `drove: run: GNU parallel's --pipe is not supported: drove run gives each job arguments, not a block of standard input; split the input into files first (split -l N in.txt part.) and give the files as inputs (drove run 'cmd < {}' ::: part.*)`},
		{[]string{"--semaphore", "sleep", "1"}, `drove: run: GNU parallel's --semaphore is not supported: drove run is not a semaphore; use flock(1) to serialise commands, or a shared queue: drove scheduler and drove submit`},
		{[]string{"--sqlmaster", "sql://x", "echo"}, `drove: run: GNU parallel's --sqlmaster is not supported: for a queue shared by several clients, use drove scheduler and drove submit --scheduler HOST`},
		{[]string{"--tmux", "echo", ":::", "a"}, `drove: run: GNU parallel's --tmux is not supported: use --line-buffer to see lines as jobs print them, or --results DIR to keep each job's output`},
		{[]string{"-kX", "echo", ":::", "a"}, `drove: run: GNU parallel's -X is not supported: several arguments per job are given with -N N (or -n N), {1}…{N} being the arguments; there is no packing up to a command-line length (-X, -m, -s)`},
		{[]string{"--eof=x", "echo"}, `drove: run: GNU parallel's --eof is not supported: inputs are read to the end; cut them first (sed '/^EOF$/q')`},
		{[]string{"--timeout", "200%", "echo", ":::", "a"}, `drove: run: --timeout 200%: --timeout takes a duration (seconds or 1m30s), not a share of the median runtime`},
		{[]string{"--env", "_", "echo", ":::", "a"}, `drove: --env _ (every variable not in ~/.parallel/ignored_vars) is not supported; name each variable: --env NAME`},
		{[]string{"--env", "A-B", "echo", ":::", "a"}, `drove: --env "A-B": not a variable name`},
		{[]string{"--colsep", "(", "echo", ":::", "a"}, "drove: --colsep \"(\": error parsing regexp: missing closing ): `(` (Go regular expressions have no look-around or back-references)"},
		{[]string{"-N", "-2", "echo", ":::", "a"}, `drove: -N -2: must be 0 or more`},
		{[]string{"--nonall", "echo", ":::", "a"}, `drove: --nonall runs the command without arguments; it takes no inputs (use --onall)`},
		{[]string{"--nonall", "hostname"}, `drove: --nonall needs SSH hosts: -S or --slf`},
		{[]string{"--onall", "-S", ":", "echo", ":::", "a"}, `drove: --onall runs on SSH hosts; ":" (this machine) is not one: run the command directly`},
		{[]string{"--onall", "-S", "h", "--joblog", "x", "--results", "y", "echo", ":::", "a"}, `drove: --onall does not take --joblog, --results (it runs as drove exec does: see drove exec --help)`},
		{[]string{"--nosuchflag", "echo"}, `drove: unknown flag: --nosuchflag`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errs := drun(t, "", tt.args...)
			if code != 1 || out != "" || errs != tt.want+"\n" {
				t.Errorf("exit %d, stdout %q\nstderr %q\n  want %q", code, out, errs, tt.want+"\n")
			}
		})
	}
}

// TestRunGNUHabitsLocal: the GNU parallel options drove run has, on this
// machine.
func TestRunGNUHabitsLocal(t *testing.T) {
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "f1"), filepath.Join(dir, "f2")
	os.WriteFile(f1, []byte("1\n2\n"), 0o644)
	os.WriteFile(f2, []byte("x\ny\n"), 0o644)
	cpus := runtime.NumCPU()
	// Job 1 succeeded and job 2 failed; job 3 never ran.
	jl := filepath.Join(dir, "joblog")
	os.WriteFile(jl, []byte("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"+
		"1\t:\t1764100000.000\t     0.010\t0\t2\t0\t0\techo a\n2\t:\t1764100000.000\t     0.010\t0\t2\t1\t0\techo b\n"), 0o644)
	t.Setenv("DROVE_TEST_ENV", "v a l")
	tests := []struct {
		name   string
		stdin  string
		args   []string
		out    string
		errOut string
		code   int
	}{
		{name: ":::+ is a separator", args: []string{"-k", "echo", ":::", "a", "b", ":::+", "1", "2"}, out: "a 1\nb 2\n"},
		{name: "::::+", args: []string{"-k", "echo", "::::", f1, "::::+", f2}, out: "1 x\n2 y\n"},
		{name: "-a comes first", args: []string{"-k", "-a", f1, "echo", ":::", "a"}, out: "1 a\n2 a\n"},
		{name: "--dry-run", args: []string{"--dry-run", "-j", "2", "echo", "{%}", "{#}", "{}", ":::", "a", "b c", "$(x)"},
			out: "echo 1 1 a\necho 2 2 'b c'\necho 1 3 '$(x)'\n"},
		{name: "--dry-run --resume-failed", args: []string{"--dry-run", "--joblog", jl, "--resume-failed", "echo", ":::", "a", "b", "c"}, out: "echo b\necho c\n"},
		{name: "--dry-run without a template", stdin: "rm -rf /tmp/nothing-here\n", args: []string{"--dry-run"}, out: "rm -rf /tmp/nothing-here\n"},
		{name: "-j 200% from the CPUs", args: append([]string{"--dry-run", "-j", "200%", "echo", "{%}", ":::"}, seqArgs(2*cpus+1)...),
			out: dealt(2*cpus+1, 2*cpus)},
		{name: "-j -1 from the CPUs", args: append([]string{"--dry-run", "-j", "-1", "echo", "{%}", ":::"}, seqArgs(cpus+1)...),
			out: dealt(cpus+1, max(1, cpus-1))},
		{name: "-j +1 from the CPUs", args: append([]string{"--dry-run", "-j", "+1", "echo", "{%}", ":::"}, seqArgs(cpus+2)...),
			out: dealt(cpus+2, cpus+1)},
		{name: "-v", args: []string{"-k", "-v", "--tag", "echo", ":::", "a b"}, out: "a b\techo 'a b'\na b\ta b\n"},
		{name: "-v --line-buffer", args: []string{"-k", "-v", "--line-buffer", "echo", ":::", "a"}, out: "echo a\na\n"},
		{name: "-t", args: []string{"-t", "echo", ":::", "a"}, out: "a\n", errOut: "echo a\n"},
		{name: "job environment", args: []string{"-k", "-j", "1", "echo $PARALLEL_SEQ $PARALLEL_JOBSLOT $PARALLEL_SSHLOGIN {}", ":::", "a", "b"}, out: "1 1 : a\n2 1 : b\n"},
		{name: "--env", args: []string{"--env", "DROVE_TEST_ENV", "--env", "DROVE_TEST_UNSET", "echo \"$DROVE_TEST_ENV\" \"${DROVE_TEST_UNSET-unset}\"", ":::", "a"}, out: "v a l unset a\n"},
		{name: "-N with --tag", args: []string{"-k", "--tag", "-N2", "echo", ":::", "a", "b", "c"}, out: "a b\ta b\nc\tc\n"},
		{name: "--colsep from a file", args: []string{"-k", "--colsep", "[0-9]", "-a", f1, "echo", "[{1}]", "[{2}]"}, out: "[] []\n[] []\n"},
		{name: "--transfer with -N: each argument", args: []string{"-k", "-N2", "--transfer", "cat", ":::", f1, f2}, out: "1\n2\nx\ny\n"},
		{name: "ignored GNU options", args: []string{"--will-cite", "--no-notice", "echo", ":::", "a"}, out: "a\n"},
		{name: "aliases", args: []string{"-P", "1", "--lb", "--xapply", "-k", "echo", ":::", "a", ":::", "1", "2"}, out: "a 1\na 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := drun(t, tt.stdin, tt.args...)
			if code != tt.code || out != tt.out || errs != tt.errOut {
				t.Errorf("exit %d, want %d\nstdout %q\n  want %q\nstderr %q\n  want %q", code, tt.code, out, tt.out, errs, tt.errOut)
			}
		})
	}
}

func seqArgs(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = strconv.Itoa(i + 1)
	}
	return s
}

// dealt is --dry-run's output of echo {%} for n jobs over slots slots.
func dealt(n, slots int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "echo %d\n", i%slots+1)
	}
	return b.String()
}

// TestRunGNUParallelSideBySide runs the same command lines with GNU
// parallel (the Debian package, when installed) and drove run, and
// compares their outputs and exit statuses.
func TestRunGNUParallelSideBySide(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("DROVE_REQUIRE_GNU_PARALLEL") == "1" {
		skip = t.Fatalf
	}
	gnu, err := exec.LookPath("parallel")
	if err != nil {
		skip("GNU parallel is not installed (apt-get install parallel)")
		return
	}
	if out, err := exec.Command(gnu, "--version").Output(); err != nil || !bytes.Contains(out, []byte("GNU parallel")) {
		skip("%s is not GNU parallel (moreutils' parallel?)", gnu)
		return
	}
	dir := t.TempDir()
	home := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f1"), []byte("1\n2\n3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "f2"), []byte("x\ny\nz\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cols"), []byte("a,b,c\nd,,f\ng\n"), 0o644)
	tests := []struct {
		stdin string
		args  string // words separated by "|"; $D is the directory of f1, f2, cols
	}{
		{args: "echo|:::|a|b|c|:::+|1|2|3"},
		{args: "echo|:::|a|b|c|:::+|1|2"},
		{args: "echo|:::|a|b|:::+|1|2|3|4"},
		{args: "echo|:::|a|b|c|:::+|1|2|:::+|x|y|z"},
		{args: "echo|:::|x|y|:::|a|b|:::+|1|2"},
		{args: "echo|::::|$D/f1|::::+|$D/f2"},
		{args: "echo|:::|a|b|c|::::+|$D/f1"},
		{args: "echo {2}-{1}|::::|$D/f1|:::|p|q"},
		{args: "-a|$D/f1|echo|:::|a|b"},
		{args: "--link|echo|:::|a|b|c|:::|1|2|:::|x"},
		{args: "--link|-N2|echo|:::|a|b|c|d|:::|1|2"},
		{args: "-N2|echo {1}-{2}|:::|a|b|c|d|e"},
		{args: "-n2|echo|:::|a|b|c|d|e"},
		{args: "-N3|echo {2.}|:::|a.b|c.d|e.f"},
		{args: "-N2|echo {1}-{2}-{3}-{4}|:::|a|b|:::|1|2"},
		{args: "-N2|echo {}|:::|a|b|:::|1|2"},
		{args: "-N0|echo hi|:::|a|b|c"},
		{args: "-N2|echo {#} {.} {/}|:::|a.x/b.c|c.d|e"},
		{args: "--colsep|,|echo {2} {1} [{}]|:::|a,b|c,d,e|f"},
		{args: "--colsep|\\s+|echo {3}|:::|a  b   c"},
		{args: "--colsep|,|-N2|echo {1} {2} {3} {4}|:::|a,b|c,d|e,f"},
		{args: "--colsep|,|echo [{1}] [{2}] [{3}] [{-1}]|::::|$D/cols"},
		{args: "--colsep|,|--tag|echo {2}|:::|a,b"},
		{args: "echo {#} {.} {/} {//} {/.}|:::|d/f.tar.gz|plain|/top/x.y|dir.d/file"},
		{args: "echo {1/} {2//} {1/.}|:::|a/b.c|/d|:::|e/f/g"},
		{args: "echo {-1} {-2} {3}|:::|a|:::|b"},
		{args: "--tag|echo|:::|a|:::|b"},
		{args: "--tag|-N2|echo|:::|a|b|c"},
		{args: "-v|echo|:::|a|b c"},
		{args: "--dry-run|echo {}|:::|a|b c|$(x)|a*b"},
		{args: "printf [%s]\\n|:::|a b|it's|$(id)|*|"},
		{args: "echo {1}{2}|:::|a|b|:::|1|2"},
		{args: "exit {}|:::|0|1|2|0"},
		{args: "echo $PARALLEL_SEQ {#}|:::|a|b|c"},
		{args: "-j1|echo $PARALLEL_JOBSLOT {%}|:::|a|b|c"},
		{args: "echo $PARALLEL_SSHLOGIN|:::|a"},
		{stdin: "a b\nc\n", args: "-N2|echo {2}"},
		{stdin: "echo one\necho two\n", args: "-j2"},
		{stdin: "x.gz\ny.gz\n", args: "gunzip -t {} 2>/dev/null; echo {.} $?"},
		{args: "echo|:::"},
	}
	for _, tt := range tests {
		args := strings.Split(strings.ReplaceAll(tt.args, "$D", dir), "|")
		t.Run(tt.args, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(gnu, append([]string{"-k"}, args...)...)
			cmd.Env = append(os.Environ(), "HOME="+home, "SHELL=/bin/sh", "PARALLEL=")
			cmd.Stdin = strings.NewReader(tt.stdin)
			var gout, gerr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &gout, &gerr
			gcode := 0
			if err := cmd.Run(); err != nil {
				var xe *exec.ExitError
				if !errors.As(err, &xe) {
					t.Fatal(err)
				}
				gcode = xe.ExitCode()
			}
			code, out, errs := drun(t, tt.stdin, append([]string{"-k"}, args...)...)
			if code != gcode || out != gout.String() {
				t.Errorf("GNU parallel: exit %d\n%s(stderr %q)\ndrove run: exit %d\n%s(stderr %q)", gcode, gout.String(), gerr.String(), code, out, errs)
			}
		})
	}
}

// TestRunGNUHabitsSSH: on real sshd hosts, jobs get $PARALLEL_SSHLOGIN,
// $PARALLEL_JOBSLOT and the --env variables; -j +N counts from each host's
// CPUs; --nonall and --onall run on every host as drove exec does.
func TestRunGNUHabitsSSH(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	with := func(args ...string) []string { return append(sshArgs(s), args...) }
	t.Setenv("DROVE_TEST_ENV", "it's $HOME")

	t.Run("environment", func(t *testing.T) {
		code, out, errs := drun(t, "", with("-S", "1/host0,1/host1", "-k", "--env", "DROVE_TEST_ENV",
			`echo "$PARALLEL_SEQ $PARALLEL_SSHLOGIN $PARALLEL_JOBSLOT [$DROVE_TEST_ENV] ${PARALLEL_PID:+pid}"`, ":::", "a", "b", "c", "d")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("output %q", out)
		}
		for i, l := range lines {
			f := strings.SplitN(l, " ", 4)
			// host0 has slot 1, host1 slot 2, whichever ran the job.
			if f[0] != strconv.Itoa(i+1) || !(f[1] == "host0" && f[2] == "1" || f[1] == "host1" && f[2] == "2") ||
				f[3] != "[it's $HOME] pid "+string(rune('a'+i)) {
				t.Errorf("job %d: %q", i+1, l)
			}
		}
	})
	t.Run("-j +1 counts from the host's CPUs", func(t *testing.T) {
		// As many jobs as slots, each waiting (up to 20 s) until all have
		// begun: with cpus+1 slots they all run at once and the highest
		// {%} is cpus+1; with fewer, the last waits for a free slot and
		// the highest is lower. The host is this machine, so the jobs
		// meet in a directory here that the test user can write.
		n := 0
		cpus := remoteCPUs(t, s)
		meet, err := os.MkdirTemp("", "drove-jslots-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(meet) })
		if err := os.Chmod(meet, 0o777); err != nil {
			t.Fatal(err)
		}
		job := fmt.Sprintf(`touch %s/{#}; i=0; while [ "$(ls %s | wc -l)" -lt %d ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; echo {%%}`, meet, meet, cpus+1)
		code, out, errs := drun(t, "", with(append([]string{"-S", "host0", "-j", "+1", job, ":::"}, seqArgs(cpus+1)...)...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, l := range strings.Fields(out) {
			v, _ := strconv.Atoi(l)
			n = max(n, v)
		}
		if n != cpus+1 {
			t.Errorf("highest slot %d, want %d (the host's %d CPUs + 1): %q", n, cpus+1, cpus, out)
		}
	})
	t.Run("--nonall", func(t *testing.T) {
		code, out, errs := drun(t, "", with("-S", "host0,host1,down", "--nonall", "--tag", "-k", "--env", "DROVE_TEST_ENV",
			`echo "$PARALLEL_SSHLOGIN $PARALLEL_SEQ [$DROVE_TEST_ENV]"; exit 3`)...)
		if code != 3 {
			t.Errorf("exit %d, want 3 (three hosts failed)", code)
		}
		if want := "host0\thost0 1 [it's $HOME]\nhost1\thost1 1 [it's $HOME]\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
		if !strings.HasPrefix(errs, "down\tdrove: down: ") {
			t.Errorf("stderr %q: the down host is not reported", errs)
		}
	})
	t.Run("--onall", func(t *testing.T) {
		code, out, errs := drun(t, "", with("-S", "host0,host1", "--onall", "-k", "-v",
			`echo {}-$PARALLEL_SEQ-$PARALLEL_SSHLOGIN; exit {}`, ":::", "0", "1")...)
		want := "echo 0-$PARALLEL_SEQ-$PARALLEL_SSHLOGIN; exit 0\n0-1-host0\necho 1-$PARALLEL_SEQ-$PARALLEL_SSHLOGIN; exit 1\n1-2-host0\n" +
			"echo 0-$PARALLEL_SEQ-$PARALLEL_SSHLOGIN; exit 0\n0-1-host1\necho 1-$PARALLEL_SEQ-$PARALLEL_SSHLOGIN; exit 1\n1-2-host1\n"
		if code != 2 || out != want {
			t.Errorf("exit %d (want 2: two hosts had a failure)\nstdout %q\n  want %q\nstderr %s", code, out, want, errs)
		}
	})
}

// remoteCPUs asks host0 of s for its CPU count.
func remoteCPUs(t *testing.T, s *sshtest.Server) int {
	t.Helper()
	code, out, errs := drun(t, "", append(sshArgs(s), "-S", "1/host0", "nproc #{}", ":::", "x")...)
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil {
		t.Fatalf("nproc: exit %d %q %s", code, out, errs)
	}
	return n
}
