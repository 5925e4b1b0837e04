package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/executor/sshexec"
	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/sshagent"
	"github.com/drove-dev/drove/internal/sshconn"
)

// BroadcastConfig configures [Broadcast]: one command on every host, as
// pssh, pdsh and clush run it (drove exec).
type BroadcastConfig struct {
	// Command is the shell command line, run exactly as given by the login
	// shell of the user on each host, in its own process group.
	Command string
	// Hosts are the hosts to run it on; one may be given more than once.
	// Each is named as pssh names its output files (see
	// [hostset.OutputNames]: the user and port only as written), and that
	// name is its node in the scheduler and its [HostResult.Name].
	Hosts []hostset.Host
	// User is the login name for hosts that name none; empty leaves it to
	// SSH (ssh_config, then SSH.User).
	User string
	// SSH configures the connections.
	SSH sshconn.Config
	// Pool, if set, is used for the connections instead of a pool made
	// from SSH (drove run --onall shares the run's).
	Pool *sshconn.Pool
	// HostEnv, if set, returns NAME=value pairs exported to the command
	// on a host, given as "[user@]host[:port]" as written, besides
	// $PSSH_HOST.
	HostEnv func(target string) []string
	// Fanout is how many hosts run the command at once (pssh -p), and how
	// many are dialled at once; at least 1.
	Fanout int
	// Timeout stops the command on a host, its whole process group, after
	// this long; zero means no limit.
	Timeout time.Duration
	// Files, if set, is run on every host instead of Command, with the
	// host's SFTP session and its name (see Hosts), to copy files to or
	// from it (drove exec --copy and --rcopy). Its error fails the host
	// with code 1 (HostResult.Failure "Copy failed: …"), unless the host was
	// unreachable or lost (255), as a command's would.
	Files func(ctx context.Context, s *sshconn.SFTP, name string) error
	// Stdin, if not nil, is sent to the command on every host.
	Stdin []byte
	// Live prints every line of output as it arrives, prefixed with the
	// host's name and ": ", stdout to Stdout and stderr to Stderr (clush).
	// The output is kept in the results all the same.
	Live           bool
	Stdout, Stderr io.Writer
	// OnDone, if set, is called with each host's result as it ends (its
	// command ended, or it could not be reached), one call at a time and
	// never in the middle of a live line, so that what it prints on Stdout
	// or Stderr stays whole. Hosts that never started because ctx ended
	// get no call.
	OnDone func(HostResult)
	// Agent, if set, starts an agent on each host that runs the command
	// (internal/sshagent); nil, or a host that cannot run one, runs it in
	// a session of its own.
	Agent *sshagent.Launcher
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// HostResult is how the command went on one host.
type HostResult struct {
	// Name is the host as pssh names it (see BroadcastConfig.Hosts).
	Name string
	// Code is the command's exit code, or 255 (as ssh reports them) for a
	// host that could not be reached or was lost, a refused host key, a
	// command killed by a signal, by the Timeout or by the end of ctx.
	Code int
	// Stdout and Stderr are the command's whole output.
	Stdout, Stderr []byte
	// Failure is pssh's text for what went wrong ("Exited with error code
	// 3", "Killed by signal TERM", "Timed out, Killed by signal 9",
	// "Interrupted", or the connection error); "" on success.
	Failure string
}

// failureInterrupted is the Failure of a host whose command was stopped, or
// never started, because the context ended.
const failureInterrupted = "Interrupted"

// failureExited starts the Failure of a command that exited non-zero.
const failureExited = "Exited with error code "

// Broadcast runs cfg.Command on every host and returns each one's result,
// in the order of cfg.Hosts. It runs on the scheduling core: each host is a
// node of one slot kept by internal/fleet (dialled at once, in parallel;
// an unreachable host, or one whose key is refused, fails with 255 and is
// not dialled again), the command a task pinned to it, at most cfg.Fanout
// of them unfinished at a time. A host whose connection breaks under the
// command fails with 255; the command is not run again. When ctx ends, the
// running commands are stopped (their process groups included) before
// Broadcast returns and the hosts not started fail as interrupted. The
// error is for a configuration that cannot run at all.
func Broadcast(ctx context.Context, cfg BroadcastConfig) ([]HostResult, error) {
	if cfg.Fanout < 1 {
		return nil, errors.New("drove: fan-out must be at least 1")
	}
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("drove: no hosts")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	pool := cfg.Pool
	if pool == nil {
		var err error
		if pool, err = sshconn.NewPool(cfg.SSH); err != nil {
			return nil, err
		}
		defer pool.Close()
	}

	b := &broadcast{
		cfg:     cfg,
		names:   hostset.OutputNames(cfg.Hosts),
		results: make([]HostResult, len(cfg.Hosts)),
		out:     newOutput(cfg.Stdout, cfg.Stderr, false),
	}
	for i, name := range b.names {
		b.results[i] = HostResult{Name: name, Code: 255, Failure: failureInterrupted}
	}
	b.sched = sched.New(sched.Config{MaxPending: cfg.Fanout, OnTask: b.onTask, Logger: cfg.Logger})
	// Unreachable hosts are left out for good (no RetryUnreachable): a
	// host down at the start fails at once rather than after the backoff.
	hosts := fleet.New(b.sched, fleet.Config{Permanent: sshconn.Permanent, MaxDials: cfg.Fanout, Logger: cfg.Logger})

	// Every host is dialled, cfg.Fanout at a time; its command is submitted as soon as it
	// answers (a slow host holds up no other), lowest host first among
	// those waiting for the fan-out.
	type dialled struct {
		i   int
		err error
	}
	dials := make(chan dialled, len(cfg.Hosts))
	var wg sync.WaitGroup
	for i := range cfg.Hosts {
		m := b.member(pool, i)
		wg.Go(func() { dials <- dialled{i, hosts.Add(ctx, m)[0]} })
	}
	var ready []int // hosts up, not submitted yet, in order
	for dialling := len(cfg.Hosts); (dialling > 0 || len(ready) > 0) && ctx.Err() == nil; {
		var d dialled
		if len(ready) == 0 {
			select {
			case d = <-dials:
			case <-ctx.Done():
				continue
			}
		} else {
			select {
			case d = <-dials:
			default:
				i := ready[0]
				ready = ready[1:]
				b.submit(ctx, i)
				continue
			}
		}
		dialling--
		switch {
		case d.err == nil:
			at, _ := slices.BinarySearch(ready, d.i)
			ready = slices.Insert(ready, at, d.i)
		case ctx.Err() == nil:
			b.fail(d.i, d.err)
		}
	}
	wg.Wait()

	// Once every command has ended, nothing is redialled: a host lost
	// under its command does not hold up the end.
	werr := b.sched.Wait(ctx)
	hosts.Close()
	// With ctx ended, Close stops what still runs and waits for the
	// executors to have killed their remote process groups.
	if cerr := b.sched.Close(ctx); cerr != nil && werr == nil && cfg.Logger != nil {
		cfg.Logger.Debug("drove: close", "err", cerr)
	}
	return b.results, nil
}

type broadcast struct {
	cfg     BroadcastConfig
	names   []string
	sched   *sched.Scheduler
	out     *output
	results []HostResult // each written once, by fail or onTask
}

// hostJob is the task of one host: its Ref.
type hostJob struct {
	i              int
	sj             sshexec.Job
	stdout, stderr *lineWriter // nil unless live
	op             func(context.Context, *sshconn.SFTP) error
}

func (j *hostJob) ShellJob() *sshexec.Job { return &j.sj }

func (j *hostJob) FileOp() func(context.Context, *sshconn.SFTP) error { return j.op }

// copyError is the error of a host's Files: what went wrong with the
// files, the host being fine.
type copyError struct{ err error }

func (e *copyError) Error() string { return "Copy failed: " + e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

// member is host i for the fleet: a node of one slot, named as pssh names
// the host.
func (b *broadcast) member(pool *sshconn.Pool, i int) fleet.Member {
	h := b.cfg.Hosts[i]
	if h.User == "" {
		h.User = b.cfg.User
	}
	return fleet.Member{Key: b.names[i], Dial: func(ctx context.Context) (fleet.Conn, error) {
		x, err := sshexec.New(ctx, pool, h.Target(), sshexec.Config{Slots: 1, Agent: b.cfg.Agent, Logger: b.cfg.Logger}, b.sched)
		if err != nil {
			return fleet.Conn{}, err
		}
		return fleet.Conn{Executor: x, Slots: 1}, nil
	}}
}

// submit queues the command of host i, pinned to it; it waits while
// Fanout hosts have not finished.
func (b *broadcast) submit(ctx context.Context, i int) {
	j := &hostJob{i: i, sj: sshexec.Job{
		Command: b.cfg.Command,
		Env:     []string{"PSSH_HOST=" + b.cfg.Hosts[i].Host},
		Stdin:   b.cfg.Stdin,
	}}
	if b.cfg.HostEnv != nil {
		j.sj.Env = append(j.sj.Env, b.cfg.HostEnv(b.cfg.Hosts[i].Target())...)
	}
	if f := b.cfg.Files; f != nil {
		name := b.names[i]
		j.op = func(ctx context.Context, s *sshconn.SFTP) error {
			err := f(ctx, s, name)
			if err == nil || sshconn.IsHostError(s.ConnErr(err, false)) || ctx.Err() != nil {
				return err
			}
			return &copyError{err}
		}
	}
	if b.cfg.Live {
		prefix := b.names[i] + ": "
		j.stdout = &lineWriter{o: b.out, tag: prefix, copy: newBuf()}
		j.stderr = &lineWriter{o: b.out, tag: prefix, toErr: true, copy: newBuf()}
		j.sj.Stdout, j.sj.Stderr = j.stdout, j.stderr
	}
	t := &sched.Task{ID: int64(i + 1), Node: b.names[i], Timeout: b.cfg.Timeout, Ref: j}
	if err := b.sched.Submit(ctx, t); err != nil && ctx.Err() == nil {
		b.fail(i, err)
	}
}

// fail ends host i whose command could not be run.
func (b *broadcast) fail(i int, err error) {
	b.done(i, HostResult{Name: b.names[i], Code: 255, Failure: hostFailure(err)})
}

func (b *broadcast) onTask(ev sched.TaskEvent) {
	if !ev.State.Final() {
		return
	}
	t := ev.Task
	j := t.Ref.(*hostJob)
	res := t.Result()
	r := HostResult{Name: b.names[j.i], Stdout: res.Stdout, Stderr: res.Stderr}
	if j.stdout != nil {
		j.stdout.flush()
		j.stderr.flush()
		r.Stdout, r.Stderr = j.stdout.saved(), j.stderr.saved()
	}
	r.Code, r.Failure = classifyHost(t)
	b.done(j.i, r)
}

func (b *broadcast) done(i int, r HostResult) {
	b.results[i] = r
	if b.cfg.OnDone == nil {
		return
	}
	b.out.mu.Lock()
	defer b.out.mu.Unlock()
	b.cfg.OnDone(r)
}

// classifyHost maps how a host's task ended to pssh's exit code and
// failure text.
func classifyHost(t *sched.Task) (code int, failure string) {
	res := t.Result()
	var xe *proc.ExitError
	switch {
	case t.State() == sched.Finished:
		return 0, ""
	case t.State() == sched.Cancelled:
		return 255, failureInterrupted
	case errors.Is(res.Err, sched.ErrTimeout):
		// The stop escalation ends in SIGKILL, which pssh reports.
		return 255, "Timed out, Killed by signal 9"
	case errors.As(res.Err, &xe) && xe.Signal != 0:
		return 255, "Killed by signal " + xe.SignalName()
	case xe != nil:
		return xe.Code, fmt.Sprintf("%s%d", failureExited, xe.Code)
	}
	var ce *copyError
	if errors.As(res.Err, &ce) && !sshconn.IsHostError(res.Err) {
		return 1, ce.Error()
	}
	return 255, hostFailure(res.Err)
}

// hostFailure is the text of an error that is about the host, not the
// command: the SSH layer's own message when there is one (the scheduler
// and the executor wrap it with what pssh does not say).
func hostFailure(err error) string {
	var ce *sshconn.ConnError
	var he *sshconn.HostKeyError
	switch {
	case errors.As(err, &he):
		return he.Error()
	case errors.As(err, &ce):
		return ce.Error()
	}
	return fmt.Sprint(err)
}
