package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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
	exclude      []string // --exclude: see registerRunExclude
	jobs         string
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
	monitor      string
	link         bool
	colsep       string
	maxArgs      int
	maxReplace   int
	dryRun       bool
	verbose      bool
	trace        bool
	progress     bool
	env          []string
	onAll        bool
	nonAll       bool
	ignored      bool // GNU parallel options that change nothing here
	noAgent      bool
}

func newRunCmd() *cobra.Command {
	var fl runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] [COMMAND [ARG…]] [::: ARG…]… [:::+ ARG…]… [:::: FILE…]… [::::+ FILE…]…",
		Short: "Run many commands over SSH hosts and this machine (GNU parallel -S)",
		Long: `drove run is a work queue in the manner of GNU parallel: it runs one command per
input over a pool of hosts, each with a number of slots, handing the next
command to the least-loaded host with a free slot.

Inputs come after ::: (arguments), after :::: (files, one argument per line),
from -a FILE, or else from standard input, one per line. Several input sources
combine into every combination, the first varying slowest; a source after
:::+ or ::::+ is linked to the one before instead (their n-th values go
together), and --link links them all. Each input makes one job (-N N: N
inputs per job; --colsep REGEXP splits inputs into columns {1} {2}…): the
COMMAND template with its replacement strings filled in, or, with no
COMMAND, the input line itself as a shell command.

Replacement strings (arguments are shell-quoted when inserted):
  {}    the input              {.}   the input without extension
  {/}   its basename           {//}  its directory
  {/.}  basename, no extension {#}   the job's sequence number
  {%}   the job slot number    {N}, {N.}, {N/}, {N//}, {N/.}  argument N
  {-N}  argument N from the end
A COMMAND without any of them gets " {}" appended. {= perl =} strings are
refused. Jobs see $PARALLEL_SEQ, $PARALLEL_JOBSLOT, $PARALLEL_SSHLOGIN,
$PARALLEL_PID and the variables named with --env.

Hosts: -S takes GNU parallel logins, "[N/][user@]host[:port]" or an ssh_config
alias, comma-separated, where N is the host's slot count and ":" is this
machine; the host part may be a ClusterShell node set ("4/node[01-10]").
--slf FILE reads one such entry per line (# comments). Without -S or --slf,
jobs run on this machine. -j gives the slots of hosts without N/: N, N% of
the host's CPUs, +N or -N. A host that cannot be reached is reported as a
connection failure, not a job failure, and its jobs go to the other hosts.
--nonall runs the command once on every host, --onall every job on every
host, as drove exec does.

Commands are run by the login shell of the user on the host, as with
"ssh host command" and GNU parallel (by /bin/sh -c on this machine), exactly
as given, whatever they contain, and run in their own process group: a
timeout, a halt or Ctrl-C kills the whole group on the remote host, so
nothing is left running.

Output is grouped per job (stdout then stderr, never interleaved) unless
--line-buffer. --joblog writes GNU parallel's TSV joblog (Seq Host Starttime
JobRuntime Send Receive Exitval Signal Command; Exitval -1 for a timeout), which
--resume and --resume-failed read back. --results DIR writes
DIR/<seq>/{stdout,stderr,exitcode}. --dry-run prints the commands and runs
nothing; -v prints each command before its output. GNU parallel options
drove lacks are refused with what to use instead.

Exit status: the number of failed jobs (0 when all succeeded), 101 when more
than 100 failed; after --halt on a failure, the exit value of the failing job;
130 after Ctrl-C; 255 when no host could be used.

--monitor ADDR serves a web monitor of the run at http://ADDR/: the hosts,
the counts, and the latest commands with their hosts and exit codes, live;
a command can be cancelled there.`,
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
	registerRunExclude(cmd, &fl)
	f.StringArrayVarP(&fl.logins, "sshlogin", "S", nil, "hosts: `[N/]LOGIN[,…]`, LOGIN being [user@]host[:port], an ssh_config alias, a node set, or : for this machine (repeatable)")
	f.StringArrayVar(&fl.loginFiles, "slf", nil, "read hosts from `FILE`, one -S entry per line (repeatable; alias --sshloginfile)")
	f.StringArrayVar(&fl.loginFiles, "sshloginfile", nil, "same as --slf")
	f.StringVarP(&fl.jobs, "jobs", "j", "", "slots per host whose login has no N/: `N`, N% of the host's CPUs, +N or -N CPUs (default: the host's CPU count; alias -P, --max-procs)")
	f.StringVarP(&fl.jobs, "max-procs", "P", "", "same as -j")
	f.BoolVar(&fl.link, "link", false, "link the input sources: the n-th values of each go together, shorter sources wrapping around (alias --xapply)")
	f.BoolVar(&fl.link, "xapply", false, "same as --link")
	f.StringVarP(&fl.colsep, "colsep", "C", "", "split each input into columns at `REGEXP` (Go syntax): {1}, {2}… are the columns")
	f.IntVarP(&fl.maxArgs, "max-args", "n", 0, "give each job `N` inputs, {1}…{N} being their values (as -N)")
	f.IntVarP(&fl.maxReplace, "max-replace-args", "N", 0, "give each job `N` inputs, {1}…{N} being their values; 0 takes one input and inserts none")
	f.BoolVar(&fl.dryRun, "dry-run", false, "print the commands that would run, in order, and run nothing (no host is connected to)")
	f.BoolVarP(&fl.verbose, "print-commands", "v", false, "print each job's command on stdout before its output")
	f.BoolVarP(&fl.trace, "verbose", "t", false, "print each job's command on stderr as it starts")
	f.BoolVar(&fl.progress, "progress", false, "show the jobs running and done on each host on standard error when it is a terminal")
	f.StringArrayVar(&fl.env, "env", nil, "pass this process's environment variable `NAME` to the jobs (repeatable; for SSH hosts)")
	f.BoolVar(&fl.onAll, "onall", false, "run every job on every SSH host, one at a time on each (as drove exec does; -j: hosts at once)")
	f.BoolVar(&fl.nonAll, "nonall", false, "run the command, with no arguments, once on every SSH host (drove exec; -j: hosts at once)")
	for _, name := range []string{"will-cite", "no-notice", "silent", "plain", "no-keep-order"} {
		f.BoolVar(&fl.ignored, name, false, "accepted for GNU parallel, changes nothing")
		f.Lookup(name).Hidden = true
	}
	f.StringArrayVarP(&fl.argFiles, "arg-file", "a", nil, "read inputs from `FILE`, one per line (repeatable; - is standard input)")
	f.BoolVar(&fl.tag, "tag", false, "prefix each output line with the job's arguments and a tab")
	f.BoolVarP(&fl.keepOrder, "keep-order", "k", false, "print job outputs in input order")
	f.BoolVar(&fl.lineBuffer, "line-buffer", false, "print whole lines as jobs produce them instead of whole jobs (with -k: the oldest job live, later ones held until their turn; alias --lb)")
	f.BoolVar(&fl.lineBuffer, "lb", false, "same as --line-buffer")
	f.BoolVar(&fl.group, "group", true, "print each job's output in one piece when it ends (the default)")
	f.StringVar(&fl.results, "results", "", "write `DIR`/<seq>/stdout, stderr and exitcode for every job (alias --res)")
	f.StringVar(&fl.results, "res", "", "same as --results")
	f.StringVar(&fl.joblog, "joblog", "", "write a GNU parallel joblog to `FILE` (alias --jl)")
	f.StringVar(&fl.joblog, "jl", "", "same as --joblog")
	f.BoolVar(&fl.resume, "resume", false, "skip the jobs the --joblog lists, appending to it")
	f.BoolVar(&fl.resumeFailed, "resume-failed", false, "skip the jobs the --joblog lists as successful; rerun failed and unrun ones")
	f.IntVar(&fl.retries, "retries", 0, "attempts a failing job gets in all, each on another host when there is one")
	f.StringVar(&fl.timeout, "timeout", "", "kill a job's process group after `DURATION` (seconds or 1m30s); it counts as failed")
	f.StringVar(&fl.halt, "halt", "never", "stop early: never, soon|now,fail|success|done=N|N% (soon: start no more jobs; now: also kill running ones; alias --halt-on-error)")
	f.StringVar(&fl.halt, "halt-on-error", "never", "same as --halt")
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
	f.StringVar(&fl.monitor, "monitor", "", monitorFlagUsage+" ($DROVE_SECRET)")
	for _, alias := range []string{"max-procs", "xapply", "res", "jl", "halt-on-error", "lb"} {
		f.Lookup(alias).Hidden = true
	}
	// A GNU parallel option drove lacks says what drove offers instead.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if flag := unknownFlag(err); flag != "" {
			if msg, ok := parallel.UnsupportedFlag(flag); ok {
				return errors.New(msg)
			}
		}
		return err
	})
	return cmd
}

// unknownFlag returns the flag pflag's error is about when the error says
// the flag does not exist ("--pipe", "-X"), else "".
func unknownFlag(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "unknown flag: "); ok {
		return rest
	}
	// "unknown shorthand flag: 'X' in -kX"
	if rest, ok := strings.CutPrefix(msg, "unknown shorthand flag: '"); ok {
		if name, _, ok := strings.Cut(rest, "'"); ok {
			return "-" + name
		}
	}
	return ""
}

// splitInputs separates the command template from the input sources: the
// -a files first, then the ::: :::+ :::: ::::+ ones, as GNU parallel
// orders them; standard input when there is none (and the run takes
// inputs at all).
func splitInputs(args []string, stdin io.Reader, argFiles []string, noInputs bool) (tmpl []string, srcs []parallel.Source, closers []io.Closer, err error) {
	tmpl, ins := parallel.SplitArgs(args)
	for _, name := range argFiles {
		ins = append([]parallel.InputArg{{Files: true, Values: []string{name}}}, ins...)
	}
	for _, in := range ins {
		if !in.Files {
			srcs = append(srcs, parallel.Source{Args: in.Values, Linked: in.Linked})
			continue
		}
		for _, name := range in.Values {
			r, c, err := openInput(name, stdin)
			if err != nil {
				return nil, nil, closers, err
			}
			closers = append(closers, c)
			srcs = append(srcs, parallel.Source{Lines: r, Linked: in.Linked})
		}
	}
	if len(srcs) == 0 && !noInputs {
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
	tmpl, srcs, closers, err := splitInputs(args, cmd.InOrStdin(), fl.argFiles, fl.nonAll)
	for _, c := range closers {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	var logins []hostset.Login
	expander := hostset.NewExpander()
	for _, s := range fl.logins {
		ls, err := expander.ParseLogins(s)
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
		ls, err := expander.ParseLoginFile(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		logins = hostset.MergeLogins(logins, ls...)
	}
	if logins, err = expander.ExcludeLogins(logins, fl.exclude); err != nil {
		return err
	}
	var jobs parallel.Jobs
	if fl.jobs != "" {
		if jobs, err = parallel.ParseJobs(fl.jobs); err != nil {
			return err
		}
	}
	var timeout time.Duration
	if strings.HasSuffix(fl.timeout, "%") {
		return parallel.TimeoutPercentError(fl.timeout)
	}
	if fl.timeout != "" {
		timeout, err = parseDuration(fl.timeout)
	}
	if err != nil {
		return fmt.Errorf("--timeout: %w", err)
	}
	var colsep *regexp.Regexp
	if cmd.Flags().Changed("colsep") {
		if colsep, err = parallel.ParseColsep(fl.colsep); err != nil {
			return err
		}
	}
	maxArgs, noArgs := 0, false
	for _, n := range []struct {
		flag, name string
		v          int
	}{{"-n", "max-args", fl.maxArgs}, {"-N", "max-replace-args", fl.maxReplace}} {
		switch {
		case !cmd.Flags().Changed(n.name):
		case n.v == 0:
			noArgs = true
		case n.v > 0:
			maxArgs = n.v
		default:
			return fmt.Errorf("drove: %s %d: must be 0 or more", n.flag, n.v)
		}
	}
	env, err := jobEnv(fl.env)
	if err != nil {
		return err
	}
	halt, err := parallel.ParseHalt(fl.halt)
	if err != nil {
		return err
	}
	cfg := parallel.Config{
		Template:     strings.Join(tmpl, " "),
		Sources:      srcs,
		Logins:       logins,
		Jobs:         jobs,
		Link:         fl.link,
		Colsep:       colsep,
		MaxArgs:      maxArgs,
		NoArgs:       noArgs,
		Env:          env,
		OnAll:        fl.onAll,
		NonAll:       fl.nonAll,
		DryRun:       fl.dryRun,
		Verbose:      fl.verbose,
		Trace:        fl.trace,
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
		Monitor:      fl.monitor,
		OnMonitor: func(addr string) {
			fmt.Fprintf(stderr, "drove: monitor at http://%s/\n", addr)
		},
	}
	if fl.transfer || len(fl.trc) > 0 {
		cfg.Transfer = append(cfg.Transfer, "{}")
	}
	cfg.Return = append(cfg.Return, fl.trc...)
	if (fl.bar || fl.eta || fl.progress) && isTerminal(stderr) {
		cfg.Progress, cfg.Bar, cfg.HostProgress = stderr, fl.bar, fl.progress && !fl.bar && !fl.eta
	}
	for _, l := range logins {
		if !l.IsLocal() && !fl.dryRun {
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

// jobEnv returns the NAME=value pairs of the --env variables, as this
// process has them; a variable that is not set is not passed, as with GNU
// parallel.
func jobEnv(names []string) ([]string, error) {
	var env []string
	for _, name := range names {
		v, ok := os.LookupEnv(name)
		_, fn := os.LookupEnv("BASH_FUNC_" + name + "%%")
		if err := parallel.CheckEnvName(name, fn && !ok); err != nil {
			return nil, err
		}
		if ok {
			env = append(env, name+"="+v)
		}
	}
	return env, nil
}
