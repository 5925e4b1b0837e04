package proc

import (
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultGrace is how long each step of a stop waits before the next when
// the caller sets no grace period (drove.WithCancelGrace, drove run
// --term-grace, remote.WithKillGrace).
//
// Two seconds: it is the default that drove run, drove exec and remote
// always had, long enough for a process to act on SIGINT or SIGTERM (flush,
// remove its temporary files, return its best result) and short enough
// that an interrupted drove run or a timed-out command does not hold the
// user up: a process that ignores both signals is gone after two periods.
// A job that needs longer to wind down asks for it.
const DefaultGrace = 2 * time.Second

// Grace returns d, or [DefaultGrace] when d is not positive.
func Grace(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return DefaultGrace
}

const numSteps = 3

// Steps are the signals of a stop, in order, each sent Grace after the one
// before while the process group lives: a polite request (SIGINT; a Go
// function's context is cancelled instead), then SIGTERM, then SIGKILL.
// Escalate and ShellStop both follow them, for local and remote groups.
func Steps() [numSteps]syscall.Signal {
	return [numSteps]syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL}
}

// Longest returns how long a stop with grace takes at most until its last
// step (SIGKILL) is sent.
func Longest(grace time.Duration) time.Duration {
	return (numSteps - 1) * Grace(grace)
}

// Group is a process group on this machine, named by its id (the pid of
// its leader).
type Group int

// Signal sends sig to every process in the group. Errors (the group is
// gone) are ignored: a stop only needs the group to end.
func (g Group) Signal(sig syscall.Signal) {
	if g > 1 {
		_ = syscall.Kill(-int(g), sig)
	}
}

// Kill sends SIGKILL to the group: whatever is left of a finished job goes.
func (g Group) Kill() { g.Signal(syscall.SIGKILL) }

// Stop is a stop in progress: see [Escalate]. Its methods are safe for
// concurrent use.
type Stop struct {
	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

// Escalate starts stopping a process group, in the background, by
// [Steps]: polite, then signal(SIGTERM), then signal(SIGKILL), each after
// grace ([DefaultGrace] if not positive). polite is the first step; nil
// means signal(SIGINT). The caller calls Halt once the process has ended,
// which cancels the steps not yet taken.
func Escalate(grace time.Duration, polite func(), signal func(syscall.Signal)) *Stop {
	grace = Grace(grace)
	steps := Steps()
	s := &Stop{}
	var step func(i int)
	step = func(i int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.done {
			return
		}
		if i == 0 && polite != nil {
			polite()
		} else {
			signal(steps[i])
		}
		if i+1 < len(steps) {
			s.timer = time.AfterFunc(grace, func() { step(i + 1) })
		}
	}
	// The first step may write to a pipe or signal: off the caller's
	// goroutine, which may hold locks the process's reader needs.
	s.mu.Lock()
	s.timer = time.AfterFunc(0, func() { step(0) })
	s.mu.Unlock()
	return s
}

// Halt cancels the steps not taken yet. It may be called more than once.
func (s *Stop) Halt() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
}

// ShellStop returns POSIX sh code that stops the process group whose id is
// the shell word group ("$$", "1234") by [Steps], for a group on a remote
// host. With poll, each step waits up to grace for the group to be gone,
// checking every 100ms, and the code exits once it is; without it (code
// that runs inside the group itself, which must ignore SIGINT and SIGTERM)
// each step waits the full grace.
func ShellStop(group string, grace time.Duration, poll bool) string {
	grace = Grace(grace)
	steps := Steps()
	secs := strconv.FormatFloat(grace.Seconds(), 'f', -1, 64)
	tries := strconv.Itoa(max(1, int(grace/(100*time.Millisecond))))
	var b []byte
	for i, sig := range steps {
		// No "--" before the negative pid: dash's kill does not accept it,
		// and a leading signal option already ends option parsing.
		b = append(b, "kill -"+SignalName(sig)+" -"+group+" 2>/dev/null"...)
		if i+1 == len(steps) {
			break
		}
		if poll {
			b = append(b, " || exit 0; i=0; while kill -0 -"+group+" 2>/dev/null; do [ $i -ge "+tries+
				" ] && break; sleep 0.1; i=$((i+1)); done; kill -0 -"+group+" 2>/dev/null || exit 0; "...)
		} else {
			b = append(b, "; sleep "+secs+"; "...)
		}
	}
	if poll {
		b = append(b, "; exit 0"...)
	}
	return string(b)
}
