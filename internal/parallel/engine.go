// Package parallel is the engine of `drove run`: GNU parallel's work queue
// over SSH hosts and this machine, on top of the scheduling core.
//
// Inputs come from argument lists (:::), files or standard input, one
// argument per line; each combination of inputs is one job whose command is
// the template with its replacement strings filled in (see [render]), or the
// input line itself when there is no template. Jobs go to the least-loaded
// host with a free slot. The engine groups or line-buffers their output,
// writes GNU parallel's joblog and a results directory, resumes from a
// joblog, retries on other hosts, enforces timeouts and halts, and counts
// failures into GNU parallel's exit status.
package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/metrics"
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Source is one input source: a fixed list of arguments (:::) or a reader
// giving one argument per line (::::, -a, standard input).
type Source struct {
	Args  []string
	Lines io.Reader
	// Linked links the source to the one before it (GNU parallel :::+ and
	// ::::+): their n-th values go to the same job, instead of every
	// combination; the longer one is cut to the shorter.
	Linked bool
}

// Config configures a run. Zero values mean GNU parallel's defaults.
type Config struct {
	// Template is the command template; empty means every input is itself a
	// command line.
	Template string
	// Sources are the input sources; several are combined as all their
	// combinations, the first varying slowest. At least one is required
	// (none with NonAll).
	Sources []Source
	// Link links all the sources (GNU parallel --link): the n-th values
	// of each go together, the shorter sources wrapping around.
	Link bool
	// Colsep, if set, splits every input value into columns, which are
	// the job's arguments ({1}, {2}, …) as GNU parallel --colsep does.
	Colsep *regexp.Regexp
	// MaxArgs is how many inputs (combinations of the sources) each job
	// takes, their values being its arguments {1}…{n} in order (GNU
	// parallel -N, -n); 0 means 1. NoArgs (-N 0) takes one input per job
	// and gives it none of it.
	MaxArgs int
	NoArgs  bool
	// Logins are the hosts (GNU parallel -S and --slf); empty means this
	// machine only.
	Logins []hostset.Login
	// Jobs is the slot count of hosts whose login has no "N/": fixed, or
	// relative to each host's CPU count; the zero value means that count.
	Jobs Jobs
	// Env holds NAME=value pairs exported to every job (GNU parallel
	// --env), besides $PARALLEL_SEQ, $PARALLEL_PID, $PARALLEL_SSHLOGIN (the
	// host as written, ":" for this machine) and $PARALLEL_JOBSLOT ({%}).
	Env []string
	// OnAll runs every job on every SSH host, one at a time on each, as
	// GNU parallel --onall does, on drove exec's code path (see
	// [Broadcast]): Jobs (fixed) is how many hosts run at once (32 by
	// default), and each host's output is printed in one piece. NonAll
	// runs Template, as it is, once on every host (--nonall). The exit
	// status counts the hosts where something failed.
	OnAll, NonAll bool
	// DryRun prints every job's command on Stdout, in order, instead of
	// running it; no host is connected to.
	DryRun bool
	// Verbose prints each job's command on Stdout before its output (GNU
	// parallel -v); Trace prints it on Stderr as the job starts (-t).
	Verbose, Trace bool
	// Pool connects to the SSH hosts. It is required when Logins names one.
	Pool *sshconn.Pool

	// Stdout and Stderr receive the jobs' output (and the engine's
	// messages on Stderr).
	Stdout, Stderr io.Writer
	// Tag prefixes every output line with the job's arguments and a tab.
	Tag bool
	// KeepOrder prints outputs in input order. With LineBuffer, the oldest
	// unprinted job's lines are printed as they arrive and later jobs' are
	// held back until its turn, as GNU parallel -k --line-buffer does.
	KeepOrder bool
	// LineBuffer prints whole lines as they arrive instead of whole jobs.
	LineBuffer bool
	// Results, if set, is a directory that gets <seq>/stdout, <seq>/stderr
	// and <seq>/exitcode for every job that ran.
	Results string
	// JobLog, if set, is written in GNU parallel's joblog format.
	JobLog string
	// Resume skips the jobs JobLog lists; ResumeFailed skips only those it
	// lists as successful.
	Resume, ResumeFailed bool
	// Retries is the number of attempts a failing job gets in all (GNU
	// parallel --retries), each preferably on another host; 0 or 1 mean one.
	Retries int
	// Timeout kills a job (its whole process group) after this long.
	Timeout time.Duration
	// Halt stops the run early.
	Halt Halt
	// Transfer, Return: file name templates copied to the host before a job
	// and back after it (GNU parallel --transferfile, --return).
	Transfer, Return []string
	// Cleanup removes transferred and returned files from the hosts.
	Cleanup bool
	// BaseFiles are copied to every host before its first job, into the
	// Workdir as transferred files are (into each job's own directory with
	// "..."); this machine without a Workdir already has them.
	BaseFiles []string
	// Workdir is the remote working directory; "..." makes a fresh one per
	// job under ~/.drove/tmp, removed afterwards.
	Workdir string
	// KillGrace is the time between SIGTERM and SIGKILL when a job is
	// stopped. Zero means 2 seconds.
	KillGrace time.Duration
	// ReconnectDelay is the wait before the second attempt to reconnect to
	// a host whose connection broke (the first is immediate), doubled
	// after each failure. Zero means 1 second.
	ReconnectDelay time.Duration
	// Progress, if set, gets a status line every ProgressEvery (--bar,
	// --eta, --progress); Bar selects a bar rather than GNU parallel's
	// --eta line, HostProgress --progress's jobs per host.
	Progress      io.Writer
	Bar           bool
	HostProgress  bool
	ProgressEvery time.Duration
	// Agent, if set, starts an agent on each SSH host that runs its jobs
	// over one session (internal/sshagent); nil, or a host that cannot run
	// one, runs a session per job.
	Agent *sshagent.Launcher
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Metrics, if set, count the run's commands and hosts (drove run
	// --monitor serves them at /metrics; see NewMetrics).
	Metrics *Metrics
	// Monitor, if set, serves the run's web monitor at this address
	// (package monitor): a loopback one unless $DROVE_SECRET is set, which
	// browsers then sign in with. OnMonitor, if set, is told the address
	// it serves on.
	Monitor   string
	OnMonitor func(addr string)
}

// Metrics are drove run's Prometheus metrics: the scheduling core's job
// and node metrics (internal/metrics.Jobs), where a job is a command and a
// node an SSH host (or ":", this machine) — so drove_jobs_total{status} is
// the commands run by how they ended and drove_nodes{state="up"} the hosts
// up. Make them once with NewMetrics on the registry to serve and give them
// to Run in Config.Metrics; the registry is the caller's, never the global
// one.
type Metrics struct {
	jobs *metrics.Jobs
}

// NewMetrics registers drove run's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{jobs: metrics.NewJobs(reg)}
}

// Summary is how a run went.
type Summary struct {
	Jobs        int  // jobs that ended (successfully or not)
	Failed      int  // jobs that failed: non-zero exit, signal, timeout, lost host
	Skipped     int  // jobs skipped by --resume
	NotRun      int  // jobs never started because of a halt or interruption
	Interrupted bool // the context ended (Ctrl-C) and running jobs were killed
	Halted      bool // the --halt condition was met
	HaltExit    int  // with Halted on failures: the exit value of the job that triggered it
	HostsDown   []string
}

// ExitStatus returns GNU parallel's exit status for the run: the number of
// failed jobs, 101 for more than 100, the failing job's exit value after a
// halt on failure, and 130 after an interruption.
func (s *Summary) ExitStatus() int {
	switch {
	case s.Interrupted:
		return 130
	case s.Halted && s.HaltExit > 0:
		return s.HaltExit
	case s.Failed > 100:
		return 101
	}
	return s.Failed
}

// ErrNoHosts is returned when no host could be used.
var ErrNoHosts = errors.New("drove: no usable host")

type engine struct {
	cfg Config
	// metricsReg is the registry the monitor serves at /metrics when the
	// run made its own (Config.Monitor without Config.Metrics).
	metricsReg *prometheus.Registry
	sched      *sched.Scheduler
	hosts      *fleet.Fleet // the SSH hosts; nil with only this machine
	out        *output
	log        *slog.Logger
	base       map[string]int    // {%}: the slot numbers before each node's
	rec        *monitor.Recorder // the latest jobs, for the monitor
	mon        *monitor.Server   // nil without Config.Monitor

	mu       sync.Mutex
	sum      Summary
	live     map[*sched.Task]struct{}
	up       int
	halted   bool
	haltCh   chan struct{}
	joblog   *os.File
	done     int
	failed   int
	started  time.Time
	runtimes time.Duration
	total    int // inputs known so far
	allDown  bool
	down     map[string]bool // hosts whose connection broke and is not back
	gaveUp   map[string]bool // of those, the ones no longer being reconnected
	tokens   chan struct{}   // one per unfinished task: bounds the queue
}

// job is one input combination; it is the task's Ref.
type job struct {
	e      *engine
	seq    int
	args   []string
	tag    string
	sj     sshexec.Job
	stdout *lineWriter
	stderr *lineWriter

	mu  sync.Mutex
	cmd string // the command of the latest attempt
}

func (j *job) ShellJob() *sshexec.Job { return &j.sj }

func (j *job) command(node string, slot int) string {
	if j.stdout != nil {
		j.stdout.reset()
		j.stderr.reset()
	}
	jobslot := j.e.base[node] + slot
	var c string
	if j.e.cfg.Template == "" {
		c = strings.Join(j.args, " ")
	} else {
		c = render(j.e.cfg.Template, j.args, j.seq, jobslot, true)
	}
	j.mu.Lock()
	j.cmd = c
	j.mu.Unlock()
	o := j.e.out
	if j.e.cfg.Trace {
		o.mu.Lock()
		o.write(true, []byte(c+"\n"))
		o.mu.Unlock()
	}
	if j.e.cfg.Verbose && j.stdout != nil {
		o.mu.Lock()
		o.lines(j.seq, false, tagLines(j.tag, []byte(c+"\n")))
		o.mu.Unlock()
	}
	// The host and slot are known only now, so these two travel in front
	// of the command rather than in the job's Env.
	return fmt.Sprintf("PARALLEL_SSHLOGIN=%s PARALLEL_JOBSLOT=%d; export PARALLEL_SSHLOGIN PARALLEL_JOBSLOT\n%s",
		sshconn.Quote(node), jobslot, c)
}

func (j *job) lastCommand() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd == "" && j.e.cfg.Template == "" {
		return strings.Join(j.args, " ")
	}
	if j.cmd == "" {
		return render(j.e.cfg.Template, j.args, j.seq, 0, true)
	}
	return j.cmd
}

// Run runs every job and returns the summary. It returns an error only when
// the run could not start (bad options, no usable host, an unwritable
// joblog); failed jobs are counted in the summary. When ctx ends, running
// jobs are killed (their remote process groups included) before Run
// returns, and the summary says Interrupted.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if len(cfg.Sources) == 0 && !cfg.NonAll {
		return nil, errors.New("drove: no input source")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if (cfg.Resume || cfg.ResumeFailed) && cfg.JobLog == "" {
		return nil, errors.New("drove: --resume and --resume-failed need --joblog")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(cfg.Logins) == 0 {
		cfg.Logins = []hostset.Login{{Host: hostset.Local}}
	}
	if cfg.Template != "" && !hasReplacement(cfg.Template) && !cfg.NonAll {
		cfg.Template += " {}"
	}
	if cfg.DryRun {
		return dryRun(&cfg)
	}
	if cfg.OnAll || cfg.NonAll {
		return runOnAll(ctx, &cfg)
	}
	e := &engine{
		cfg:     cfg,
		out:     newOutput(cfg.Stdout, cfg.Stderr, cfg.KeepOrder),
		log:     cfg.Logger,
		live:    map[*sched.Task]struct{}{},
		down:    map[string]bool{},
		gaveUp:  map[string]bool{},
		haltCh:  make(chan struct{}),
		started: time.Now(),
	}
	if cfg.Monitor != "" {
		e.rec = monitor.NewRecorder(0)
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	skip := map[int]bool{}
	if cfg.JobLog != "" {
		if cfg.Resume || cfg.ResumeFailed {
			var err error
			if skip, err = resumeSet(cfg.JobLog, cfg.ResumeFailed); err != nil {
				return nil, fmt.Errorf("drove: %w", err)
			}
		}
		f, err := openJobLog(cfg.JobLog, cfg.Resume || cfg.ResumeFailed)
		if err != nil {
			return nil, fmt.Errorf("drove: joblog: %w", err)
		}
		e.joblog = f
		defer f.Close()
	}
	if cfg.Results != "" {
		if err := os.MkdirAll(cfg.Results, 0o755); err != nil {
			return nil, fmt.Errorf("drove: results: %w", err)
		}
	}
	inputs, err := newInputs(&e.cfg)
	if err != nil {
		return nil, err
	}

	var obs sched.Observer
	if cfg.Monitor != "" && cfg.Metrics == nil {
		// The monitor serves the run's metrics at /metrics, from a
		// registry of the run's own.
		e.metricsReg = prometheus.NewRegistry()
		cfg.Metrics = NewMetrics(e.metricsReg)
	}
	if cfg.Metrics != nil {
		obs = cfg.Metrics.jobs
	}
	e.sched = sched.New(sched.Config{
		Reentrant: true,
		OnTask:    e.onTask,
		OnNode:    e.onNode,
		Logger:    cfg.Logger,
		Observer:  obs,
	})
	if cfg.Metrics != nil {
		cfg.Metrics.jobs.Bind(e.sched)
	}
	total, err := e.connect(ctx)
	if e.hosts != nil {
		defer e.hosts.Close()
	}
	if err == nil {
		err = e.startMonitor()
	}
	if err != nil {
		e.sched.Close(context.Background())
		return &e.sum, err
	}
	if e.mon != nil {
		defer e.mon.Close()
	}
	stopProgress := func() {}
	if cfg.Progress != nil {
		if cfg.HostProgress {
			e.progressHeader()
		}
		stopProgress = e.progress(total)
	}

	// Enough queued work that a slot never waits for the producer, little
	// enough that a huge input is never all in memory. With --halt nothing
	// is queued beyond the free slots, so that no job starts between the
	// one that meets the condition and the halt taking effect.
	window := 2*total + 16
	if cfg.Halt.When != HaltNever {
		window = total
	}
	e.tokens = make(chan struct{}, window)
	e.produce(ctx, inputs, skip)

	werr := e.sched.Wait(ctx)
	if werr != nil {
		e.mu.Lock()
		e.sum.Interrupted = true
		e.mu.Unlock()
	}
	// Close kills what still runs when ctx has ended (Ctrl-C), and waits
	// for the executors to have stopped their remote process groups.
	cerr := e.sched.Close(ctx)
	stopProgress()
	e.out.flushAll()
	if cerr != nil && werr == nil {
		e.log.Debug("drove: close", "err", cerr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return &e.sum, nil
}

// connect adds an executor per login, dialling the SSH hosts in parallel
// (internal/fleet), and returns the total slot count. Hosts that cannot be
// reached are reported (as node events) and left out; a host whose
// connection breaks later is dialled again, and given up after about half
// a minute (fleet.DefaultBackoff).
func (e *engine) connect(ctx context.Context) (int, error) {
	e.base = map[string]int{}
	slots := make([]int, len(e.cfg.Logins))
	locals := make([]*process.Executor, len(e.cfg.Logins))
	var members []fleet.Member
	var index []int // the login of each member
	for i, l := range e.cfg.Logins {
		n := l.Slots
		if n == 0 {
			n = e.cfg.Jobs.Fixed()
		}
		if l.IsLocal() {
			if n == 0 {
				n = e.cfg.Jobs.Slots(runtime.NumCPU())
			}
			lx := process.New(process.Config{Slots: n, Grace: e.cfg.KillGrace, BaseFiles: e.hostBaseFiles(),
				BaseDir: e.cfg.Workdir, CleanupBase: e.cfg.Cleanup, Logger: e.cfg.Logger}, e.sched)
			slots[i], locals[i] = lx.Slots(), lx
			continue
		}
		if e.cfg.Pool == nil {
			return 0, errors.New("drove: SSH hosts given without a connection pool")
		}
		members = append(members, fleet.Member{Key: l.Host, Dial: func(ctx context.Context) (fleet.Conn, error) {
			x, err := sshexec.New(ctx, e.cfg.Pool, l.Host, sshexec.Config{
				Slots:       n,
				CPUSlots:    e.cfg.Jobs.Slots,
				KillGrace:   e.cfg.KillGrace,
				BaseFiles:   e.hostBaseFiles(),
				BaseDir:     e.cfg.Workdir,
				CleanupBase: e.cfg.Cleanup,
				Agent:       e.cfg.Agent,
				Logger:      e.cfg.Logger,
			}, e.sched)
			if err != nil {
				return fleet.Conn{}, err
			}
			return fleet.Conn{Executor: x, Slots: x.Slots()}, nil
		}})
		index = append(index, i)
	}
	var errs []error
	if len(members) > 0 {
		e.hosts = fleet.New(e.sched, fleet.Config{
			Backoff:   fleet.Backoff{Initial: e.cfg.ReconnectDelay},
			Permanent: sshconn.Permanent,
			Logger:    e.cfg.Logger,
		})
		for k, err := range e.hosts.Add(ctx, members...) {
			if err != nil {
				errs = append(errs, err)
				slots[index[k]] = -1 // left out
			}
		}
	}
	// The hosts the fleet added are in the scheduler with their slots.
	for _, n := range e.sched.Stats().Nodes {
		for i, l := range e.cfg.Logins {
			if l.Host == n.Name && slots[i] == 0 {
				slots[i] = n.Slots
			}
		}
	}
	total := 0
	for i, l := range e.cfg.Logins {
		if slots[i] < 0 {
			continue
		}
		e.base[l.Host] = total
		total += slots[i]
		e.up++
		if l.IsLocal() {
			if err := e.sched.AddNode(l.Host, slots[i], locals[i]); err != nil {
				return 0, err
			}
		}
	}
	if e.up == 0 {
		return 0, fmt.Errorf("%w: %w", ErrNoHosts, errors.Join(errs...))
	}
	return total, nil
}

// hostBaseFiles returns the basefiles a host gets once, before its first
// job: none with --workdir ..., where they travel with each job.
func (e *engine) hostBaseFiles() []string {
	if e.cfg.Workdir == "..." {
		return nil
	}
	return e.cfg.BaseFiles
}

// produce submits a task per input, at most window unfinished at a time.
func (e *engine) produce(ctx context.Context, in *inputs, skip map[int]bool) {
	tokens := e.tokens
	for seq := 1; ; seq++ {
		args, ok, err := in.next()
		if err != nil {
			fmt.Fprintf(e.cfg.Stderr, "drove: reading input: %v\n", err)
		}
		if !ok {
			return
		}
		e.mu.Lock()
		e.total = seq
		if skip[seq] {
			e.sum.Skipped++
			e.mu.Unlock()
			e.out.skip(seq)
			continue
		}
		e.mu.Unlock()
		select {
		case tokens <- struct{}{}:
		case <-ctx.Done():
			e.notRun(seq)
			return
		case <-e.haltCh:
			e.notRun(seq)
			return
		}
		t := e.newTask(seq, args)
		e.mu.Lock()
		if e.halted || e.allDown {
			e.mu.Unlock()
			<-tokens
			e.notRun(seq)
			return
		}
		e.live[t] = struct{}{}
		e.mu.Unlock()
		if err := e.sched.Submit(ctx, t); err != nil {
			e.mu.Lock()
			delete(e.live, t)
			e.mu.Unlock()
			<-tokens
			e.notRun(seq)
			return
		}
	}
}

func (e *engine) notRun(seq int) {
	e.mu.Lock()
	e.sum.NotRun++
	e.mu.Unlock()
	e.out.skip(seq)
}

func (e *engine) newTask(seq int, args []string) *sched.Task {
	j := &job{e: e, seq: seq, args: args}
	if e.cfg.Tag {
		j.tag = strings.Join(args, " ") + "\t"
	}
	j.sj.CommandFor = j.command
	j.sj.Env = append([]string{"PARALLEL_SEQ=" + strconv.Itoa(seq), "PARALLEL_PID=" + strconv.Itoa(os.Getpid())}, e.cfg.Env...)
	if e.cfg.LineBuffer {
		j.stdout = &lineWriter{o: e.out, seq: seq, tag: j.tag}
		j.stderr = &lineWriter{o: e.out, seq: seq, toErr: true, tag: j.tag}
		if e.cfg.Results != "" {
			j.stdout.copy, j.stderr.copy = newBuf(), newBuf()
		}
		j.sj.Stdout, j.sj.Stderr = j.stdout, j.stderr
	}
	for _, f := range e.cfg.Transfer {
		if f == "{}" {
			// --transfer: each of the job's arguments is a file.
			j.sj.Transfer = append(j.sj.Transfer, args...)
			continue
		}
		j.sj.Transfer = append(j.sj.Transfer, render(f, args, seq, 0, false))
	}
	for _, f := range e.cfg.Return {
		j.sj.Return = append(j.sj.Return, render(f, args, seq, 0, false))
	}
	j.sj.Cleanup = e.cfg.Cleanup
	switch e.cfg.Workdir {
	case "":
	case "...":
		j.sj.Dir = fmt.Sprintf(".drove/tmp/%d-%d-%d", os.Getpid(), e.started.UnixNano(), seq)
		j.sj.RemoveDir = true
		// Each job has a directory of its own, so the basefiles, which GNU
		// parallel puts where transferred files go, come with every job.
		j.sj.Transfer = append(j.sj.Transfer, e.cfg.BaseFiles...)
	default:
		j.sj.Dir = e.cfg.Workdir
	}
	retries := 0
	if e.cfg.Retries > 1 {
		retries = e.cfg.Retries - 1
	}
	return &sched.Task{ID: int64(seq), Timeout: e.cfg.Timeout, Retries: retries, Ref: j}
}

// onNode keeps the hosts' count and says on stderr what happens to them.
func (e *engine) onNode(ev sched.NodeEvent) {
	if e.rec != nil {
		e.rec.Notify()
	}
	var msg string
	var stop []*sched.Task
	e.mu.Lock()
	switch ev.Kind {
	case sched.NodeUp:
		if e.down[ev.Node] {
			delete(e.down, ev.Node)
			delete(e.gaveUp, ev.Node)
			e.up++
			e.sum.HostsDown = slices.DeleteFunc(e.sum.HostsDown, func(h string) bool { return h == ev.Node })
			msg = "reconnected"
		}
	case sched.NodeUnreachable:
		msg = fmt.Sprintf("connection failed: %v", ev.Err)
		e.sum.HostsDown = append(e.sum.HostsDown, ev.Node)
	case sched.NodeDown:
		msg = fmt.Sprintf("connection lost: %v", ev.Err)
		e.sum.HostsDown = append(e.sum.HostsDown, ev.Node)
		e.down[ev.Node] = true
		e.up--
		stop = e.checkAllDownLocked()
	case sched.NodeGone:
		// A host left out at the start was reported unreachable already.
		if e.down[ev.Node] {
			msg = fmt.Sprintf("giving up: %v", ev.Err)
			e.gaveUp[ev.Node] = true
			stop = e.checkAllDownLocked()
		}
	}
	e.mu.Unlock()
	if msg != "" {
		e.out.mu.Lock()
		fmt.Fprintf(e.cfg.Stderr, "drove: %s: %s\n", ev.Node, msg)
		e.out.mu.Unlock()
	}
	e.stopAll(stop)
}

// checkAllDownLocked returns the live tasks to stop when no host is up and
// none is being reconnected: nothing can run them, so they fail rather
// than wait for ever.
func (e *engine) checkAllDownLocked() []*sched.Task {
	if e.up > 0 || e.allDown {
		return nil
	}
	for h := range e.down {
		if !e.gaveUp[h] {
			return nil // it may come back
		}
	}
	e.allDown = true
	stop := []*sched.Task{}
	for t := range e.live {
		stop = append(stop, t)
	}
	return stop
}

func (e *engine) stopAll(stop []*sched.Task) {
	if stop == nil {
		return
	}
	e.out.mu.Lock()
	fmt.Fprintf(e.cfg.Stderr, "drove: no host left; %d jobs not run\n", len(stop))
	e.out.mu.Unlock()
	for _, t := range stop {
		e.sched.Cancel(t)
	}
}

// outcome is how a job ended, as the joblog and exit status see it.
type outcome struct {
	exitval, signal int
	failed, logged  bool
	msg             string
}

func (e *engine) classify(t *sched.Task) outcome {
	res := t.Result()
	switch t.State() {
	case sched.Finished:
		return outcome{logged: true}
	case sched.Cancelled:
		e.mu.Lock()
		allDown := e.allDown
		e.mu.Unlock()
		if allDown {
			return outcome{exitval: 255, failed: true, msg: "no host left to run it"}
		}
		// Interrupted or halted: not logged, so --resume runs it again.
		return outcome{}
	case sched.Abandoned:
		return outcome{exitval: 255, failed: true, logged: true, msg: fmt.Sprint(res.Err)}
	}
	o := outcome{failed: true, logged: true}
	var xe *proc.ExitError
	switch {
	case errors.Is(res.Err, sched.ErrTimeout):
		o.exitval, o.signal = -1, int(syscall.SIGTERM)
		o.msg = "timed out"
	case errors.As(res.Err, &xe):
		o.exitval, o.signal = xe.Code, int(xe.Signal)
		if xe.Signal != 0 {
			o.exitval = -1
		}
	default:
		o.exitval, o.msg = 255, fmt.Sprint(res.Err)
	}
	return o
}

func (e *engine) onTask(ev sched.TaskEvent) {
	if e.rec != nil {
		e.rec.Observe(ev, "")
	}
	if !ev.State.Final() {
		return
	}
	t := ev.Task
	j := t.Ref.(*job)
	res := t.Result()
	o := e.classify(t)

	stdout, stderr := res.Stdout, res.Stderr
	if j.stdout != nil {
		j.stdout.flush()
		j.stderr.flush()
		e.out.linesDone(j.seq)
		stdout, stderr = j.stdout.saved(), j.stderr.saved()
	} else {
		out := stdout
		if e.cfg.Verbose && (o.logged || o.failed) {
			out = append([]byte(j.lastCommand()+"\n"), stdout...)
		}
		e.out.done(j.seq, j.tag, out, stderr)
	}
	if o.msg != "" && o.failed {
		e.out.mu.Lock()
		fmt.Fprintf(e.cfg.Stderr, "drove: job %d (%s) on %s: %s\n", j.seq, j.lastCommand(), hostOf(t), o.msg)
		e.out.mu.Unlock()
	}
	if o.logged && e.cfg.Results != "" {
		if err := writeResults(e.cfg.Results, j.seq, stdout, stderr, o.exitval); err != nil {
			fmt.Fprintf(e.cfg.Stderr, "drove: results: %v\n", err)
		}
	}

	e.mu.Lock()
	delete(e.live, t)
	select {
	case <-e.tokens:
	default:
	}
	if o.logged && e.joblog != nil {
		entry := LogEntry{
			Seq: j.seq, Host: hostOf(t), Start: res.Start, Runtime: res.End.Sub(res.Start),
			Send: res.Sent, Receive: res.Received, Exitval: o.exitval, Signal: o.signal, Command: j.lastCommand(),
		}
		if entry.Start.IsZero() {
			entry.Start, entry.Runtime = time.Now(), 0
		}
		io.WriteString(e.joblog, entry.format())
	}
	if o.logged || o.failed {
		e.sum.Jobs++
		e.done++
		e.runtimes += res.End.Sub(res.Start)
	} else {
		e.sum.NotRun++
	}
	if o.failed {
		e.sum.Failed++
		e.failed++
	}
	var stop []*sched.Task
	if !e.halted && (o.logged || o.failed) && e.cfg.Halt.met(e.done, e.failed) {
		e.halted = true
		e.sum.Halted = true
		if e.cfg.Halt.On == "fail" && o.failed {
			e.sum.HaltExit = o.exitval
			if o.exitval <= 0 {
				e.sum.HaltExit = 0
			}
		}
		close(e.haltCh)
		for lt := range e.live {
			if e.cfg.Halt.When == HaltNow || lt.State() == sched.Created {
				stop = append(stop, lt)
			}
		}
	}
	e.mu.Unlock()
	if len(stop) > 0 {
		e.out.mu.Lock()
		fmt.Fprintf(e.cfg.Stderr, "drove: halting (--halt): stopping %d jobs\n", len(stop))
		e.out.mu.Unlock()
	}
	for _, lt := range stop {
		e.sched.Cancel(lt)
	}
}

func hostOf(t *sched.Task) string {
	if n := t.NodeName(); n != "" {
		return n
	}
	return hostset.Local
}

func writeResults(dir string, seq int, stdout, stderr []byte, exitval int) error {
	d := filepath.Join(dir, strconv.Itoa(seq))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"stdout":   stdout,
		"stderr":   stderr,
		"exitcode": []byte(strconv.Itoa(exitval) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
