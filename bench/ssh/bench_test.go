// Package ssh benchmarks drove run (with its agent, and with a session per
// job) against GNU parallel -S, parallel -S -M, pssh and raw
// x/crypto/ssh sessions: 200 × true over 2 loopback sshd hosts with 4
// slots each, and over 8 hosts with 2 slots each. Run it with
// bench/ssh.sh; a plain go test skips it.
package ssh

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/parallel"
	"github.com/drove-dev/drove/internal/sshconn"
	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

var (
	outFile    = flag.String("out", "", "write the results table (markdown) to this file")
	jobs       = flag.Int("jobs", 200, "number of jobs")
	slots      = flag.Int("slots", 4, "slots per host with 2 hosts")
	wide       = flag.Int("wide", 8, "hosts of the second layout (0: none)")
	wideSlots  = flag.Int("wide-slots", 2, "slots per host of the second layout")
	rounds     = flag.Int("rounds", 7, "runs of drove and the raw floor, interleaved; the medians count")
	slowRounds = flag.Int("slow-rounds", 1, "runs of GNU parallel and pssh (each takes seconds)")
	drove      = flag.String("drove", "", "drove binary with the run command (default: build ./cmd/drove, else the engine in process)")
)

type contender struct {
	name string
	how  string
	slow bool
	run  func(t *testing.T) error
}

// layout is one benchmark setting: hosts × slots per host.
type layout struct{ hosts, slots int }

// result is a contender's times in one layout.
type result struct {
	c      contender
	median time.Duration
	all    []time.Duration
	err    error
}

func TestSSHBench(t *testing.T) {
	if os.Getenv("DROVE_BENCH") != "1" {
		t.Skip("set DROVE_BENCH=1 (bench/ssh.sh does)")
	}
	dir := t.TempDir()
	droveBin := droveBinary(t, dir)
	layouts := []layout{{2, *slots}}
	if *wide > 0 {
		layouts = append(layouts, layout{*wide, *wideSlots})
	}
	var md strings.Builder
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&md, `# SSH work queue benchmark

%d × `+"`true`"+` over loopback sshd hosts (127.0.0.2, 127.0.0.3, …; one OpenSSH sshd, the
internal/testutil/sshtest harness), every contender logging in as the
harness's clean-shell test user (login shell /bin/sh, no rc files), in two
layouts measured in the same run: 2 hosts × %d slots and %d hosts × %d slots.
Produced by `+"`bench/ssh.sh`"+` on %s, %d CPUs, %s; load average at the start
%s. Rounds of drove and of the floor are interleaved and the median counts
(the machine is shared; single runs vary by ±30%%); GNU parallel and pssh
take seconds per run, so they run %d time(s).
`, *jobs, *slots, *wide, *wideSlots, host, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		strings.Join(strings.Fields(string(load))[:3], " "), *slowRounds)
	for _, lay := range layouts {
		results := benchLayout(t, dir, droveBin, lay)
		writeLayout(&md, lay, results)
	}
	md.WriteString(`
Why: GNU parallel -S and pssh pay an ssh login (key exchange, authentication,
a fresh sshd child) per job, and GNU parallel also starts a Perl wrapper on the
remote side per job. With ssh's ControlMaster the login goes away but a local
ssh client process, a mux round trip and the remote Perl wrapper remain per
job. The raw floor keeps one connection per host and opens a session per
job on it: sshd still forks a process for each session, sets up its
environment and starts the login shell. drove run --no-agent does the same
work as the floor, plus one marker line with the pid of the job's shell
(the process group to kill on timeout or Ctrl-C), the scheduler, and the
start-up of the drove binary. drove run (with its agent) starts the drove
binary once per host over one session (probed, installed in the host's
cache by hash, started; a host that already has it receives nothing) and
sends each job to it as a few bytes on that session: the agent forks the
login shell with -c for the job, as sshd would, and streams its output and
exit status back, so no session is opened per job at all.

GNU parallel's own -M (Debian 12's GNU parallel 20221122) does not work here:
it exits 0 after running only a handful of the 200 jobs (its joblog lists
them), with a short --tmpdir for the control sockets or without. The row
"ControlMaster in ssh_config" is what -M is meant to give: every ssh
multiplexed over one master connection per host, and is the figure held
against the ≥ 20× target.
`)
	t.Logf("\n%s", md.String())
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(md.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// benchLayout runs every contender in one layout and returns their times,
// the floor first.
func benchLayout(t *testing.T, dir, droveBin string, lay layout) []result {
	s := sshtest.Start(t, sshtest.WithHosts(lay.hosts))
	defer s.Stop()
	var args []string
	for i := 1; i <= *jobs; i++ {
		args = append(args, strconv.Itoa(i))
	}
	var ls []string
	for _, a := range s.Aliases {
		ls = append(ls, fmt.Sprintf("%d/%s", lay.slots, a))
	}
	logins := strings.Join(ls, ",")
	short := logins
	if lay.hosts > 2 {
		short = fmt.Sprintf("%d/host0,…,%d/host%d", lay.slots, lay.slots, lay.hosts-1)
	}
	sshCmd := "ssh -F " + s.SSHConfig

	// pssh runs one command per hosts-file line: the jobs spread evenly
	// over the hosts, with -p hosts × slots.
	psshHosts := filepath.Join(dir, fmt.Sprintf("pssh-hosts-%d", lay.hosts))
	var hb strings.Builder
	for i := 0; i < *jobs; i++ {
		fmt.Fprintf(&hb, "host%d\n", i%lay.hosts)
	}
	os.WriteFile(psshHosts, []byte(hb.String()), 0o644)

	var cs []contender
	cs = append(cs, contender{name: "raw x/crypto/ssh (floor)", how: fmt.Sprintf("%d connections, %d goroutines per host, session.Run(\"true\")", lay.hosts, lay.slots), run: func(t *testing.T) error {
		return rawFloor(s, *jobs, lay.slots)
	}})
	if droveBin != "" {
		cs = append(cs,
			contender{name: "drove run", how: "drove run -F cfg -S " + short + " true ::: 1…" + strconv.Itoa(*jobs), run: func(t *testing.T) error {
				return command(droveBin, append([]string{"run", "-F", s.SSHConfig, "-S", logins, "true", ":::"}, args...)...)
			}},
			contender{name: "drove run --no-agent", how: "the same with a session per job", run: func(t *testing.T) error {
				return command(droveBin, append([]string{"run", "--no-agent", "-F", s.SSHConfig, "-S", logins, "true", ":::"}, args...)...)
			}},
		)
	} else {
		cs = append(cs, contender{name: "drove run (engine in process)", how: "parallel.Run, -S " + short + " (drove binary lacks the run command)", run: func(t *testing.T) error {
			return droveInProcess(s, logins, args)
		}})
	}
	if _, err := exec.LookPath("parallel"); err == nil {
		cs = append(cs,
			contender{name: "GNU parallel -S", slow: true, how: "parallel --ssh 'ssh -F cfg' -S " + short + " true ::: …", run: func(t *testing.T) error {
				return gnuParallel(t, sshCmd, logins, args)
			}},
			contender{name: "GNU parallel -S -M", slow: true, how: "the same with -M (ssh ControlMaster)", run: func(t *testing.T) error {
				return gnuParallel(t, sshCmd, logins, args, "-M")
			}},
			contender{name: "GNU parallel -S, ControlMaster in ssh_config", slow: true, how: "parallel -S with ControlMaster auto, ControlPersist in ssh_config (what -M is meant to do)", run: func(t *testing.T) error {
				cfg, stop, err := controlMasterConfig(s)
				if err != nil {
					return err
				}
				defer stop()
				return gnuParallel(t, "ssh -F "+cfg, logins, args)
			}},
		)
	}
	if p, err := exec.LookPath("parallel-ssh"); err == nil {
		cs = append(cs, contender{name: "pssh", slow: true, how: fmt.Sprintf("parallel-ssh -p %d -h (%d lines, spread over the hosts) -x '-F cfg' true", lay.hosts*lay.slots, *jobs), run: func(t *testing.T) error {
			return command(p, "-p", strconv.Itoa(lay.hosts*lay.slots), "-h", psshHosts, "-x", "-F "+s.SSHConfig, "true")
		}})
	}

	// Interleave the rounds, so that load from elsewhere on the machine
	// falls on every contender alike.
	times := make([][]time.Duration, len(cs))
	errs := make([]error, len(cs))
	for r := 0; r < *rounds; r++ {
		for i, c := range cs {
			if (c.slow && r >= *slowRounds) || errs[i] != nil {
				continue
			}
			start := time.Now()
			if err := c.run(t); err != nil {
				// drove and the floor must work; a broken competitor is
				// recorded as such.
				if !c.slow {
					t.Fatalf("%s: %v", c.name, err)
				}
				t.Logf("%s: %v", c.name, err)
				errs[i] = err
				continue
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	var results []result
	for i, c := range cs {
		ds := times[i]
		if len(ds) == 0 {
			results = append(results, result{c: c, err: errs[i]})
			continue
		}
		sorted := append([]time.Duration(nil), ds...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		results = append(results, result{c: c, median: sorted[len(sorted)/2], all: ds, err: errs[i]})
		t.Logf("%d×%d %-32s median %8.3fs  runs %v", lay.hosts, lay.slots, c.name, sorted[len(sorted)/2].Seconds(), ds)
	}
	return results
}

// writeLayout writes one layout's table and how drove compares.
func writeLayout(md *strings.Builder, lay layout, results []result) {
	floor := results[0].median
	var droveT time.Duration
	for _, r := range results {
		if r.c.name == "drove run" || r.c.name == "drove run (engine in process)" {
			droveT = r.median
		}
	}
	fmt.Fprintf(md, "\n## %d hosts × %d slots\n\n", lay.hosts, lay.slots)
	fmt.Fprintf(md, "| contender | how | runs | median wall time | per job | vs raw floor |\n|---|---|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.median == 0 {
			fmt.Fprintf(md, "| %s | `%s` | 0 | failed: %s | | |\n", r.c.name, r.c.how, oneLine(r.err))
			continue
		}
		note := ""
		if r.err != nil {
			note = " (a later run failed: " + oneLine(r.err) + ")"
		}
		fmt.Fprintf(md, "| %s | `%s` | %d | %.3f s%s | %.2f ms | %.2f× |\n", r.c.name, r.c.how, len(r.all), r.median.Seconds(), note,
			float64(r.median.Microseconds())/1000/float64(*jobs), float64(r.median)/float64(floor))
	}
	if droveT == 0 {
		return
	}
	fmt.Fprintf(md, "\ndrove run is **%.2f×** faster than the session-per-job floor (target ≥ 1.5×).\n\nHow much slower than drove run the others are (target for GNU parallel -M, i.e. ControlMaster: ≥ 20×):\n\n", float64(floor)/float64(droveT))
	for _, r := range results[1:] {
		if r.c.name == "drove run" || r.median == 0 {
			continue
		}
		fmt.Fprintf(md, "* %s: **%.1f×**\n", r.c.name, float64(r.median)/float64(droveT))
	}
}

// oneLine returns err's message on one line, for a table cell.
func oneLine(err error) string { return strings.Join(strings.Fields(fmt.Sprint(err)), " ") }

// droveBinary returns a drove binary whose run command exists, or "".
func droveBinary(t *testing.T, dir string) string {
	bin := *drove
	if bin == "" {
		bin = filepath.Join(dir, "drove")
		build := exec.Command("go", "build", "-o", bin, "github.com/drove-dev/drove/cmd/drove")
		if out, err := build.CombinedOutput(); err != nil {
			t.Logf("building drove: %v\n%s", err, out)
			return ""
		}
	}
	if err := exec.Command(bin, "run", "--help").Run(); err != nil {
		t.Logf("%s has no run command yet; measuring the engine in process", bin)
		return ""
	}
	return bin
}

// gnuParallel runs GNU parallel with a fresh $TMPDIR (where -M keeps its
// control sockets: a stale one from an earlier run silently loses jobs) and
// checks in its joblog that every job ran and succeeded.
func gnuParallel(t *testing.T, sshCmd, logins string, args []string, extra ...string) error {
	// Short, because ssh's control socket path must fit in 108 bytes.
	tmp, err := os.MkdirTemp("/tmp", "gp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	jl := filepath.Join(tmp, "joblog")
	a := append([]string{"--will-cite", "--tmpdir", tmp, "--joblog", jl}, extra...)
	a = append(a, "--ssh", sshCmd, "-S", logins, "true", ":::")
	if err := commandEnv([]string{"TMPDIR=" + tmp}, "parallel", append(a, args...)...); err != nil {
		return err
	}
	b, err := os.ReadFile(jl)
	if err != nil {
		return err
	}
	ok := map[string]bool{}
	lines := 0
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, "\t"); len(f) == 9 && f[0] != "Seq" {
			lines++
			if f[6] == "0" && f[7] == "0" {
				ok[f[0]] = true
			}
		}
	}
	if len(ok) != len(args) {
		return fmt.Errorf("only %d of %d jobs in its joblog succeeded (%d joblog lines), yet it exited 0", len(ok), len(args), lines)
	}
	return nil
}

// controlMasterConfig writes an ssh_config that multiplexes every ssh over
// one master connection per host; stop ends the masters.
func controlMasterConfig(s *sshtest.Server) (string, func(), error) {
	dir, err := os.MkdirTemp("/tmp", "cm")
	if err != nil {
		return "", nil, err
	}
	orig, err := os.ReadFile(s.SSHConfig)
	if err != nil {
		return "", nil, err
	}
	cfg := filepath.Join(dir, "ssh_config")
	head := "Host *\n  ControlMaster auto\n  ControlPath " + dir + "/%C\n  ControlPersist 60\n\n"
	if err := os.WriteFile(cfg, append([]byte(head), orig...), 0o644); err != nil {
		return "", nil, err
	}
	stop := func() {
		for _, h := range s.Aliases {
			exec.Command("ssh", "-F", cfg, "-O", "exit", h).Run()
		}
		os.RemoveAll(dir)
	}
	return cfg, stop, nil
}

func command(name string, args ...string) error { return commandEnv(nil, name, args...) }

func commandEnv(env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Output goes to a file, not a pipe: parallel -M leaves its ssh
	// ControlMaster running in the background with the pipe open.
	out, err := os.CreateTemp("", "bench-out-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// parallel -M leaves a process behind that keeps its ControlMasters;
	// it stays in the command's process group, which goes when it is done.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s: %w\n%s", name, err, b)
	}
	return nil
}

func droveInProcess(s *sshtest.Server, logins string, args []string) error {
	pool, err := sshconn.NewPool(sshconn.Config{ConfigFile: s.SSHConfig})
	if err != nil {
		return err
	}
	defer pool.Close()
	ls, err := hostset.ParseLogins(logins)
	if err != nil {
		return err
	}
	sum, err := parallel.Run(context.Background(), parallel.Config{
		Template: "true",
		Sources:  []parallel.Source{{Args: args}},
		Logins:   ls,
		Pool:     pool,
	})
	if err != nil {
		return err
	}
	if sum.ExitStatus() != 0 {
		return fmt.Errorf("exit status %d", sum.ExitStatus())
	}
	return nil
}

// rawFloor runs the jobs as bare sessions over one connection per host:
// what any SSH work queue must at least pay.
func rawFloor(s *sshtest.Server, jobs, slots int) error {
	work := make(chan int, jobs)
	for i := 0; i < jobs; i++ {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	errs := make(chan error, len(s.Addrs)*slots)
	for _, addr := range s.Addrs {
		c, err := ssh.Dial("tcp", addr, s.ClientConfig())
		if err != nil {
			return err
		}
		defer c.Close()
		for k := 0; k < slots; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					sess, err := c.NewSession()
					if err != nil {
						errs <- err
						return
					}
					err = sess.Run("true " + strconv.Itoa(i))
					sess.Close()
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
