package sshexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/executor/process"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn"
)

// Config configures an [Executor].
type Config struct {
	// Slots is how many commands run at once on the host. Zero means the
	// host's CPU count, asked with nproc when the executor is made, less
	// FreeCPUs (at least one).
	Slots int
	// FreeCPUs is how many of the host's CPUs to leave free when Slots is
	// zero.
	FreeCPUs int
	// CPUSlots, if set, gives the slot count from the host's CPU count
	// when Slots is zero, instead of leaving FreeCPUs free (drove run -j
	// 200%, -j +2).
	CPUSlots func(cpus int) int
	// NonZeroIsResult makes a non-zero exit code an OK outcome carrying the
	// code in Output, as the program executor does, instead of a Failed
	// one with a *proc.ExitError. A death by signal still fails.
	NonZeroIsResult bool
	// KillGrace is how long each step of stopping a command's process
	// group waits: SIGINT, SIGTERM, then SIGKILL. Zero means
	// proc.DefaultGrace.
	KillGrace time.Duration
	// BaseFiles are local files copied to the host when the executor is
	// made, before any command runs (GNU parallel --basefile).
	BaseFiles []string
	// BaseDir is the directory the BaseFiles go to, as a Job's Transfer
	// files go to its Dir (GNU parallel puts them in the --workdir). Empty
	// means the login directory.
	BaseDir string
	// CleanupBase removes the BaseFiles from the host at Close.
	CleanupBase bool
	// Agent, if set, starts an agent on the host (internal/sshagent) when
	// the executor is made, and every command runs through it over one
	// session instead of a session of its own. A host that cannot run one
	// (another platform, no writable cache, a noexec cache) runs a session
	// per command, as without Agent; the Launcher says so once per host.
	Agent *sshagent.Launcher
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Executor runs shell commands on one SSH host, through an agent on the
// host (Config.Agent) or each in a session of a shared [sshconn.Pool]
// connection. It implements [sched.Executor].
type Executor struct {
	pool   *sshconn.Pool
	target string
	cfg    Config
	rep    Reporter
	log    *slog.Logger
	agent  *sshagent.Client // nil: a session per command

	process.Runner

	fmu     sync.Mutex    // guards session and dirs
	session *sshconn.SFTP // the pool's SFTP session dirs is about
	dirs    map[string]bool

	// The loss of the connection is reported once: the node is then
	// down for good, and whoever keeps the hosts (internal/fleet) dials
	// the host again with a new executor.
	rmu     sync.Mutex
	lost    bool
	closing bool
}

var _ sched.Executor = (*Executor)(nil)

// New returns an executor for target ("[user@]host[:port]" or an ssh_config
// alias) over pool, reporting to rep. It connects now, so an unreachable
// host (a [*sshconn.ConnError]) or a refused host key (a
// [*sshconn.HostKeyError]) is an error here; it also asks the host for its
// CPU count when cfg.Slots is 0 and copies cfg.BaseFiles.
func New(ctx context.Context, pool *sshconn.Pool, target string, cfg Config, rep Reporter) (*Executor, error) {
	if cfg.Slots < 0 {
		return nil, fmt.Errorf("drove: %s: negative slot count %d", target, cfg.Slots)
	}
	e := &Executor{
		pool:   pool,
		target: target,
		cfg:    cfg,
		rep:    rep,
		log:    cfg.Logger,
		dirs:   map[string]bool{},
	}
	e.Execute, e.Report, e.Closed = e.runCommand, e.done, ErrClosed
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Agent != nil {
		ag, err := cfg.Agent.Start(ctx, pool, target)
		switch {
		case err == nil:
			e.agent = ag
		case !errors.Is(err, sshagent.ErrUnavailable):
			return nil, err
		}
	}
	if cfg.Slots == 0 {
		// The host's CPUs: the agent says in its hello, else nproc.
		var n int
		var err error
		if e.agent != nil {
			n = e.agent.CPUs()
		} else if n, err = e.nproc(ctx); err != nil {
			return nil, err
		}
		e.cfg.Slots = max(1, n-max(0, cfg.FreeCPUs))
		if cfg.CPUSlots != nil {
			e.cfg.Slots = max(1, cfg.CPUSlots(n))
		}
	} else {
		l, err := pool.Acquire(ctx, target)
		if err != nil {
			return nil, err
		}
		l.Release()
	}
	if len(cfg.BaseFiles) > 0 {
		if _, err := e.transfer(ctx, cfg.BaseDir, cfg.BaseFiles); err != nil {
			if e.agent != nil {
				e.agent.Close()
			}
			return nil, fmt.Errorf("drove: %s: basefile: %w", target, err)
		}
	}
	return e, nil
}

// nproc asks the host for its number of online CPUs.
func (e *Executor) nproc(ctx context.Context) (int, error) {
	s, err := e.pool.NewSession(ctx, e.target)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Session.Close() })
	defer stop()
	out, err := s.Output("nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1")
	if err != nil {
		if ctx.Err() != nil {
			return 0, &sshconn.ConnError{Host: e.target, Err: context.Cause(ctx)}
		}
		return 0, fmt.Errorf("drove: %s: counting CPUs: %w", e.target, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n < 1 {
		return 1, nil
	}
	return n, nil
}

// Slots returns the number of commands the host runs at once: Config.Slots,
// or the CPU count found by New.
func (e *Executor) Slots() int { return e.cfg.Slots }

// Agent reports whether commands run through an agent on the host.
func (e *Executor) Agent() bool { return e.agent != nil }

// Target returns the host as given to New.
func (e *Executor) Target() string { return e.target }

// Close stops all runs and removes the base files if asked to. The pool,
// and its SFTP session for the host, stay open: they are shared.
func (e *Executor) Close(ctx context.Context) error {
	e.rmu.Lock()
	e.closing = true
	e.rmu.Unlock()
	var err error
	if serr := e.Stop(ctx); serr != nil {
		err = fmt.Errorf("drove: %s: close: %w", e.target, serr)
	}
	if e.agent != nil {
		e.agent.Close()
	}
	if e.cfg.CleanupBase && len(e.cfg.BaseFiles) > 0 {
		if cerr := e.remove(ctx, e.cfg.BaseDir, e.cfg.BaseFiles); cerr != nil {
			err = errors.Join(err, fmt.Errorf("drove: %s: removing basefiles: %w", e.target, cerr))
		}
	}
	return err
}

// done reports r's end, and the node as down when its connection was lost
// (once). The node goes down first, so that the scheduler sends r's task
// and the queued ones to other hosts rather than back to this one while it
// is unusable.
func (e *Executor) done(r *sched.Run, res sched.Result) {
	e.rmu.Lock()
	lost := res.Outcome == sched.Lost && !errors.Is(res.Err, ErrClosed) && !e.lost && !e.closing
	if lost {
		e.lost = true
	}
	e.rmu.Unlock()
	if lost {
		e.rep.NodeDown(r.Node, res.Err)
	}
	e.rep.Done(r, res) // dropped by the scheduler if NodeDown ended r
}

// cleanupTimeout bounds getting a connection to remove a job's files once
// the job was stopped.
const cleanupTimeout = 30 * time.Second

// runCommand runs r's job and returns its result.
func (e *Executor) runCommand(ctx context.Context, r *sched.Run, slot int) (res sched.Result) {
	if fj, ok := r.Task.Ref.(FileJob); ok {
		if op := fj.FileOp(); op != nil {
			return e.runFiles(ctx, op)
		}
	}
	j := process.JobOf(r.Task)
	stdout, stderr, collect := process.Outputs(j)
	rules := proc.Rules{NonZeroIsResult: e.cfg.NonZeroIsResult}
	res.Start = time.Now()
	// The job's files are removed however it ended (failed, timed out,
	// stopped), as GNU parallel does, unless the host is out of reach.
	defer func() {
		if res.Outcome != sched.Lost {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			e.cleanup(cctx, j)
		}
	}()
	fail := func(err error) sched.Result {
		res.End = time.Now()
		collect(&res)
		end := proc.End{Err: err, Lost: isConnErr(err), Stopped: context.Cause(ctx)}
		if end.Lost {
			end.Err = fmt.Errorf("drove: %s: %w", e.target, err)
		}
		proc.Classify(&res, end, rules)
		return res
	}
	if j.Dir != "" || len(j.Transfer) > 0 {
		n, err := e.transfer(ctx, j.Dir, j.Transfer)
		res.Sent += n
		if err != nil {
			return fail(fmt.Errorf("drove: %s: transfer: %w", e.target, err))
		}
	}
	command := j.CommandLine(r.Node, slot)
	res.Sent += int64(len(command) + len(j.Stdin))
	cmd := &sshconn.Cmd{
		Command:   command,
		Dir:       j.Dir,
		Env:       j.Env,
		Stdout:    stdout,
		Stderr:    stderr,
		KillGrace: e.cfg.KillGrace,
	}
	if j.Stdin != nil {
		cmd.Stdin = bytes.NewReader(j.Stdin)
	}
	var st sshconn.ExitStatus
	var err error
	if e.agent != nil {
		st, err = e.agent.Run(ctx, cmd)
	} else {
		st, err = e.pool.RunLeader(ctx, e.target, cmd)
	}
	res.End = time.Now()
	end := st.End(ctx, err)
	if end.Err != nil {
		return fail(err)
	}
	if end.Stopped != nil {
		collect(&res)
		proc.Classify(&res, end, rules)
		return res
	}
	if len(j.Return) > 0 {
		n, err := e.fetch(ctx, j.Dir, j.Return)
		res.Received += n
		// A command that failed may well not have made its files: its
		// exit is the result then, not the missing file.
		if err != nil && (st.Code == 0 && st.Signal == 0 || isConnErr(err)) {
			return fail(fmt.Errorf("drove: %s: return: %w", e.target, err))
		}
		if err != nil {
			e.log.Warn("ssh: return after a failed command", "host", e.target, "err", err)
		}
	}
	collect(&res)
	end.Stderr = res.Stderr
	proc.Classify(&res, end, rules)
	return res
}

// cleanup removes from the host what j asked to be removed after it: the
// transferred and returned files (Cleanup) and its directory (RemoveDir).
func (e *Executor) cleanup(ctx context.Context, j *Job) {
	if j.Cleanup && (len(j.Transfer) > 0 || len(j.Return) > 0) {
		if err := e.remove(ctx, j.Dir, append(append([]string(nil), j.Transfer...), j.Return...)); err != nil {
			e.log.Warn("ssh: cleanup failed", "host", e.target, "err", err)
		}
	}
	if j.RemoveDir && j.Dir != "" {
		if err := e.removeAll(ctx, j.Dir); err != nil {
			e.log.Warn("ssh: removing workdir failed", "host", e.target, "err", err)
		}
	}
}

// isConnErr reports whether err means the host is unusable rather than the
// command failing.
func isConnErr(err error) bool { return sshconn.IsHostError(err) }
