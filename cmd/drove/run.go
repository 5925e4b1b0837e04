package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/parallel"
	"github.com/drove-dev/drove/internal/proc"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

type runFlags struct {
	ssh          sshFlags
	logins       []string
	loginFiles   []string
	jobs         int
	argFiles     []string
	tag          bool
	keepOrder    bool
	lineBuffer   bool
	group        bool
	results      string
	joblog       string
	resume       bool
	resumeFailed bool
	retries      int
	timeout      string
	halt         string
	transfer     bool
	transferFile []string
	returns      []string
	trc          []string
	cleanup      bool
	basefiles    []string
	workdir      string
	bar          bool
	eta          bool
	killGrace    time.Duration
	noAgent      bool
}

func newRunCmd() *cobra.Command {
	var fl runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] [COMMAND [ARG…]] [::: ARG…]… [:::: FILE…]…",
		Short: "Run many commands over SSH hosts and this machine (GNU parallel -S)",
		Long: `drove run is a work queue in the manner of GNU parallel: it runs one command per
input over a pool of hosts, each with a number of slots, handing the next
command to the least-loaded host with a free slot.

Inputs come after ::: (arguments), after :::: (files, one argument per line),
from -a FILE, or else from standard input, one per line. Several input sources
combine into every combination, the first varying slowest. Each input makes one
job: the COMMAND template with its replacement strings filled in, or, with no
COMMAND, the input line itself as a shell command.

Replacement strings (arguments are shell-quoted when inserted):
  {}    the input              {.}   the input without extension
  {/}   its basename           {//}  its directory
  {/.}  basename, no extension {#}   the job's sequence number
  {%}   the job slot number    {N}, {N.}, {N/}, {N//}, {N/.}  input source N
A COMMAND without any of them gets " {}" appended. Jobs also see $PARALLEL_SEQ.

Hosts: -S takes GNU parallel logins, "[N/][user@]host[:port]" or an ssh_config
alias, comma-separated, where N is the host's slot count and ":" is this
machine; the host part may be a ClusterShell node set ("4/node[01-10]").
--slf FILE reads one such entry per line (# comments). Without -S or --slf,
jobs run on this machine. A host that cannot be reached is reported as a
connection failure, not a job failure, and its jobs go to the other hosts.

Commands are run by the login shell of the user on the host, as with
"ssh host command" and GNU parallel (by /bin/sh -c on this machine), exactly
as given, whatever they contain, and run in their own process group: a
timeout, a halt or Ctrl-C kills the whole group on the remote host, so
nothing is left running.

Output is grouped per job (stdout then stderr, never interleaved) unless
--line-buffer. --joblog writes GNU parallel's TSV joblog (Seq Host Starttime
JobRuntime Send Receive Exitval Signal Command; Exitval -1 for a timeout), which
--resume and --resume-failed read back. --results DIR writes
DIR/<seq>/{stdout,stderr,exitcode}.

Exit status: the number of failed jobs (0 when all succeeded), 101 when more
than 100 failed; after --halt on a failure, the exit value of the failing job;
130 after Ctrl-C; 255 when no host could be used.`,
		Example: `  drove run -S 4/alice@build1,build2,: 'gzip -9 {}' ::: *.log
  drove run -S node[01-04] --joblog jobs.tsv --retries 3 ./simulate {1} {2} ::: 1 2 3 ::: a b
  ls *.csv | drove run --slf hosts --transfer --return {.}.out --cleanup 'sort {} > {.}.out'
  drove run -j 8 --timeout 60 --halt now,fail=1 < commands.txt`,
		Args:         cobra.ArbitraryArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, &fl, args)
		},
	}
	f := cmd.Flags()
	// Flags end at the command: its own options belong to it.
	f.SetInterspersed(false)
	fl.ssh.register(cmd)
	f.StringArrayVarP(&fl.logins, "sshlogin", "S", nil, "hosts: `[N/]LOGIN[,…]`, LOGIN being [user@]host[:port], an ssh_config alias, a node set, or : for this machine (repeatable)")
	f.StringArrayVar(&fl.loginFiles, "slf", nil, "read hosts from `FILE`, one -S entry per line (repeatable; alias --sshloginfile)")
	f.StringArrayVar(&fl.loginFiles, "sshloginfile", nil, "same as --slf")
	f.IntVarP(&fl.jobs, "jobs", "j", 0, "slots per host whose login has no N/ (default: the host's CPU count)")
	f.StringArrayVarP(&fl.argFiles, "arg-file", "a", nil, "read inputs from `FILE`, one per line (repeatable; - is standard input)")
	f.BoolVar(&fl.tag, "tag", false, "prefix each output line with the job's arguments and a tab")
	f.BoolVarP(&fl.keepOrder, "keep-order", "k", false, "print job outputs in input order")
	f.BoolVar(&fl.lineBuffer, "line-buffer", false, "print whole lines as jobs produce them instead of whole jobs (with -k: the oldest job live, later ones held until their turn)")
	f.BoolVar(&fl.group, "group", true, "print each job's output in one piece when it ends (the default)")
	f.StringVar(&fl.results, "results", "", "write `DIR`/<seq>/stdout, stderr and exitcode for every job")
	f.StringVar(&fl.joblog, "joblog", "", "write a GNU parallel joblog to `FILE`")
	f.BoolVar(&fl.resume, "resume", false, "skip the jobs the --joblog lists, appending to it")
	f.BoolVar(&fl.resumeFailed, "resume-failed", false, "skip the jobs the --joblog lists as successful; rerun failed and unrun ones")
	f.IntVar(&fl.retries, "retries", 0, "attempts a failing job gets in all, each on another host when there is one")
	f.StringVar(&fl.timeout, "timeout", "", "kill a job's process group after `DURATION` (seconds or 1m30s); it counts as failed")
	f.StringVar(&fl.halt, "halt", "never", "stop early: never, soon|now,fail|success|done=N|N% (soon: start no more jobs; now: also kill running ones)")
	f.BoolVar(&fl.transfer, "transfer", false, "copy each input file to the host before its job (= --tf {})")
	f.StringArrayVar(&fl.transferFile, "tf", nil, "copy `FILE` (a template, e.g. {}.dat) to the host before each job (repeatable; alias --transferfile)")
	f.StringArrayVar(&fl.transferFile, "transferfile", nil, "same as --tf")
	f.StringArrayVar(&fl.returns, "return", nil, "copy `FILE` (a template) back from the host after each job (repeatable)")
	f.StringArrayVar(&fl.trc, "trc", nil, "shorthand for --transfer --return `FILE` --cleanup (repeatable)")
	f.BoolVar(&fl.cleanup, "cleanup", false, "remove transferred and returned files (and basefiles at the end) from the hosts")
	f.StringArrayVar(&fl.basefiles, "basefile", nil, "copy `FILE` to every host before its first job, into the --workdir (repeatable; alias --bf)")
	f.StringArrayVar(&fl.basefiles, "bf", nil, "same as --basefile")
	f.StringVar(&fl.workdir, "workdir", "", "remote working `DIR`, created if missing (... : a fresh directory per job under ~/.drove/tmp, removed after; alias --wd)")
	f.StringVar(&fl.workdir, "wd", "", "same as --workdir")
	f.BoolVar(&fl.bar, "bar", false, "show a progress bar on standard error when it is a terminal")
	f.BoolVar(&fl.eta, "eta", false, "show the estimated time left on standard error when it is a terminal")
	f.BoolVar(&fl.noAgent, "no-agent", false, "run each job in an SSH session of its own instead of through an agent started on each host")
	f.DurationVar(&fl.killGrace, "term-grace", proc.DefaultGrace, "how long each step of stopping a job waits: SIGINT, SIGTERM, then SIGKILL to its process group")
	return cmd
}

// splitInputs separates the command template from the ::: and :::: input
// sources.
func splitInputs(args []string, stdin io.Reader, argFiles []string) (tmpl []string, srcs []parallel.Source, closers []io.Closer, err error) {
	i := 0
	for i < len(args) && args[i] != ":::" && args[i] != "::::" {
		i++
	}
	tmpl = args[:i]
	for i < len(args) {
		sep := args[i]
		i++
		start := i
		for i < len(args) && args[i] != ":::" && args[i] != "::::" {
			i++
		}
		if sep == ":::" {
			srcs = append(srcs, parallel.Source{Args: append([]string{}, args[start:i]...)})
			continue
		}
		for _, name := range args[start:i] {
			r, c, err := openInput(name, stdin)
			if err != nil {
				return nil, nil, closers, err
			}
			closers = append(closers, c)
			srcs = append(srcs, parallel.Source{Lines: r})
		}
	}
	for _, name := range argFiles {
		r, c, err := openInput(name, stdin)
		if err != nil {
			return nil, nil, closers, err
		}
		closers = append(closers, c)
		srcs = append(srcs, parallel.Source{Lines: r})
	}
	if len(srcs) == 0 {
		srcs = []parallel.Source{{Lines: stdin}}
	}
	return tmpl, srcs, closers, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func openInput(name string, stdin io.Reader) (io.Reader, io.Closer, error) {
	if name == "-" {
		return stdin, nopCloser{}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

func runRun(cmd *cobra.Command, fl *runFlags, args []string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	tmpl, srcs, closers, err := splitInputs(args, cmd.InOrStdin(), fl.argFiles)
	for _, c := range closers {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	var logins []hostset.Login
	for _, s := range fl.logins {
		ls, err := hostset.ParseLogins(s)
		if err != nil {
			return err
		}
		logins = hostset.MergeLogins(logins, ls...)
	}
	for _, name := range fl.loginFiles {
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		ls, err := hostset.ParseLoginFile(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		logins = hostset.MergeLogins(logins, ls...)
	}
	if fl.jobs < 0 {
		return errors.New("-j must not be negative")
	}
	var timeout time.Duration
	if fl.timeout != "" {
		timeout, err = parseDuration(fl.timeout)
	}
	if err != nil {
		return fmt.Errorf("--timeout: %w", err)
	}
	halt, err := parallel.ParseHalt(fl.halt)
	if err != nil {
		return err
	}
	cfg := parallel.Config{
		Template:     strings.Join(tmpl, " "),
		Sources:      srcs,
		Logins:       logins,
		Jobs:         fl.jobs,
		Stdout:       stdout,
		Stderr:       stderr,
		Tag:          fl.tag,
		KeepOrder:    fl.keepOrder,
		LineBuffer:   fl.lineBuffer,
		Results:      fl.results,
		JobLog:       fl.joblog,
		Resume:       fl.resume,
		ResumeFailed: fl.resumeFailed,
		Retries:      fl.retries,
		Timeout:      timeout,
		Halt:         halt,
		Transfer:     fl.transferFile,
		Return:       fl.returns,
		Cleanup:      fl.cleanup || len(fl.trc) > 0,
		BaseFiles:    fl.basefiles,
		Workdir:      fl.workdir,
		KillGrace:    fl.killGrace,
	}
	if fl.transfer || len(fl.trc) > 0 {
		cfg.Transfer = append(cfg.Transfer, "{}")
	}
	cfg.Return = append(cfg.Return, fl.trc...)
	if (fl.bar || fl.eta) && isTerminal(stderr) {
		cfg.Progress, cfg.Bar = stderr, fl.bar
	}
	for _, l := range logins {
		if !l.IsLocal() {
			pool, err := fl.ssh.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			cfg.Pool = pool
			cfg.Agent = agentLauncher(fl.noAgent, stderr)
			break
		}
	}
	sum, err := parallel.Run(cmd.Context(), cfg)
	if err != nil {
		if errors.Is(err, parallel.ErrNoHosts) {
			fmt.Fprintln(stderr, "drove: run: no host could be used")
			return &exitError{code: 255}
		}
		return err
	}
	if sum.Interrupted {
		fmt.Fprintf(stderr, "drove: run: interrupted; %d jobs done, running jobs killed\n", sum.Jobs)
	}
	if code := sum.ExitStatus(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}
