package sshconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/proc"
	"golang.org/x/crypto/ssh"
)

// Cmd is a shell command for [Pool.Run].
type Cmd struct {
	// Command is a shell command line, run by the remote /bin/sh -c with
	// [Pool.Run], by the user's login shell with [Pool.RunLeader]. Build it
	// with [Quote] or [Join] from untrusted parts.
	Command string
	// Dir is the remote working directory. Empty means the login directory.
	Dir string
	// Env holds "NAME=value" pairs exported to the command. Values are
	// passed literally; names must be valid shell identifiers.
	Env []string
	// Stdin is sent to the command, followed by EOF. Nil means no input:
	// the command reads /dev/null.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output. Nil discards it.
	Stdout, Stderr io.Writer
	// KillGrace is how long each step of stopping the process group
	// waits when ctx ends: SIGINT, then SIGTERM, then SIGKILL (see
	// [proc.Steps]). Zero means [proc.DefaultGrace].
	KillGrace time.Duration
}

// ExitStatus describes how a remote command ended, as the SSH server
// reported it. [ExitStatus.End] turns it into the input of [proc.Classify].
type ExitStatus struct {
	Code   int            // exit code; -1 if the command died of a signal or was killed
	Signal syscall.Signal // the signal the server reported ("TERM"), or 0
	Killed bool           // true if Run killed the process group because ctx ended
}

// End returns how the command ended, for [proc.Classify], from st and the
// error Run returned with it: ctx is the context Run was given, whose
// cause is why a Killed command was stopped. A [*ConnError],
// [*HostKeyError] or [ErrClosed] means the host is lost.
func (st ExitStatus) End(ctx context.Context, err error) proc.End {
	e := proc.End{Code: st.Code, Signal: st.Signal}
	switch {
	case st.Killed:
		e.Stopped = context.Cause(ctx)
		if e.Stopped == nil {
			e.Stopped = context.Canceled
		}
	case err != nil:
		e.Err, e.Lost = err, IsHostError(err)
	default:
		e.Exited = true
	}
	return e
}

// pgidMarker starts the line on which the remote shell reports its pid,
// the process group to kill. A marker, rather than "the first line", lets
// a login shell print what it likes before it (a .bashrc that echoes, a
// banner from ForceCommand): that text is passed on as output and the pid
// is still found.
const pgidMarker = "drove-pgid:"

// grace returns cmd.KillGrace or its default.
func (c *Cmd) grace() time.Duration { return proc.Grace(c.KillGrace) }

// watchdog returns shell code that starts, in the background, a subshell
// that ends the command's process group if the SSH session ends (the
// connection dropped, the client was killed) while the command still runs:
// without a pty sshd signals nothing then, and the command would run on.
// It goes first in the shell whose pid ($$) is the group, sshd being the
// process whose pid sshd expands to. The group is stopped by [proc.Steps]
// (SIGINT, SIGTERM, SIGKILL, grace apart), as by [Pool.KillGroup]; the
// subshell ignores the SIGINT and SIGTERM it sends itself, and dies with
// the SIGKILL.
//
// Without cmd.Stdin the session's stdin, which Run keeps open and never
// writes to, is the signal: sshd closes it when the session or the
// connection ends, so the subshell, blocked reading it, wakes up exactly
// then at no cost, and finds the command still alive ($$ exists: sshd
// closes it only after reaping the command's shell) or not. The command
// itself reads /dev/null, as it would a stdin that was at EOF at once.
// The subshell is a fork of the shell, not a new program, and the rest
// are builtins.
//
// With cmd.Stdin the command needs the session's stdin, so the subshell
// polls instead, once a second, whether sshd is still there; it does not
// watch at all if sshd cannot be signalled (another user's process).
func (c *Cmd) watchdog(sshd string) string {
	kill := `kill -0 $$ && { trap '' INT TERM; ` + proc.ShellStop("$$", c.grace(), false) + `; }`
	if c.Stdin == nil {
		return "exec 3<&0 </dev/null\n" +
			"{ while read -r _; do :; done; " + kill + "; } <&3 3<&- >/dev/null 2>&1 &\n" +
			"exec 3<&-\n"
	}
	return "{ kill -0 " + sshd + " || exit; while kill -0 $$ && kill -0 " + sshd + "; do sleep 1; done; " +
		kill + "; } </dev/null >/dev/null 2>&1 &\n"
}

// wrapper starts the command as the leader of a new session (hence a new
// process group), first printing that leader's pid, which is the group id,
// on a marker line on stdout, then starting the [Cmd.watchdog]. setsid -w
// forks when the login shell is already a group leader (it always is
// under sshd) and relays the exit status. The login shell's parent, sshd,
// is passed on as $2 for the watchdog. setsid's own stderr goes to
// /dev/null (the command gets the session's back on fd 2 through fd 3):
// setsid -w says "child … did not exit normally: Success" when the command
// dies of a signal, which is drove's business to report, not the
// command's output.
func (c *Cmd) wrapper(script string) string {
	inner := `exec 2>&3 3>&-` + "\n" + `echo "` + pgidMarker + `$$" || exit` + "\n" + c.watchdog(`"$2"`) + `exec /bin/sh -c "$1"`
	return "exec 3>&2 && exec setsid -w /bin/sh -c " + Quote(inner) + " drove-run " + Quote(script) + ` "$PPID" 2>/dev/null`
}

// maxNoise bounds how much output before the marker line is buffered while
// looking for it; past that the command's output is passed on unparsed and
// no process group is known.
const maxNoise = 64 << 10

// readPGID reads lines from br up to and including the marker line and
// returns the pid it reports; lines before it are written to w. It returns
// 0 (nothing known to kill) when the output ends or exceeds maxNoise first,
// and a non-nil error when the output ended.
func readPGID(br *bufio.Reader, w io.Writer) (int, error) {
	seen := 0
	for seen < maxNoise {
		line, err := br.ReadString('\n')
		seen += len(line)
		// The marker may follow noise that did not end its line.
		if i := strings.LastIndex(line, pgidMarker); i >= 0 && err == nil {
			if pgid, cerr := strconv.Atoi(strings.TrimSpace(line[i+len(pgidMarker):])); cerr == nil && pgid > 1 {
				io.WriteString(w, line[:i])
				return pgid, nil
			}
		}
		io.WriteString(w, line)
		if err != nil {
			return 0, err
		}
	}
	return 0, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Script returns the shell script Run executes inside the new process group:
// cd to Dir, export Env, then Command.
func (c *Cmd) Script() (string, error) {
	var b strings.Builder
	if c.Dir != "" {
		if err := CheckArg(c.Dir); err != nil {
			return "", err
		}
		b.WriteString("cd -- " + Quote(c.Dir) + " || exit 126\n")
	}
	for _, kv := range c.Env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !envName.MatchString(name) {
			return "", fmt.Errorf("drove: bad environment entry %q", kv)
		}
		if err := CheckArg(val); err != nil {
			return "", err
		}
		b.WriteString(name + "=" + Quote(val) + "; export " + name + "\n")
	}
	if err := CheckArg(c.Command); err != nil {
		return "", err
	}
	b.WriteString(c.Command)
	return b.String(), nil
}

// Run runs cmd on target in a new remote process group and waits for it.
//
// A command that runs and exits non-zero is not an error: its code is in the
// ExitStatus. When ctx ends first, Run stops the whole remote process group
// over a second session ([Pool.KillGroup]: SIGINT, SIGTERM, then SIGKILL,
// cmd.KillGrace apart), and
// returns with Killed set and an error wrapping context.Cause(ctx), so no
// process the command started is left behind. The [Cmd.watchdog] does the
// same on the host when the session ends under the command (the client
// died, the connection broke). A host that cannot be reached or a
// connection lost mid-command yields a [*ConnError].
//
// The remote host needs a POSIX sh and setsid(1) (util-linux or busybox).
func (p *Pool) Run(ctx context.Context, target string, cmd *Cmd) (ExitStatus, error) {
	return p.run(ctx, target, cmd, cmd.wrapper)
}

// run starts cmd's script, as turned into a command line by line, which
// must print the process group to kill on cancel on a [pgidMarker] line
// before the command's own output and start the [Cmd.watchdog], and waits
// for it.
func (p *Pool) run(ctx context.Context, target string, cmd *Cmd, line func(script string) string) (ExitStatus, error) {
	st := ExitStatus{Code: -1}
	script, err := cmd.Script()
	if err != nil {
		return st, err
	}
	s, err := p.NewSession(ctx, target)
	if err != nil {
		return st, err
	}
	defer s.Close()
	addr := s.lease.c.ep.Addr()

	stdout, err := s.StdoutPipe()
	if err != nil {
		return st, &ConnError{Host: target, Addr: addr, Err: err}
	}
	if cmd.Stderr != nil {
		s.Stderr = cmd.Stderr
	}
	// Without cmd.Stdin the pipe stays open, unused, until the session is
	// closed: its EOF tells the watchdog that the session ended.
	stdin, err := s.StdinPipe()
	if err != nil {
		return st, &ConnError{Host: target, Addr: addr, Err: err}
	}
	if err := s.Start(line(script)); err != nil {
		return st, &ConnError{Host: target, Addr: addr, Err: err}
	}
	if cmd.Stdin != nil {
		// Not waited for: a Stdin that blocks must not hold up Run (the
		// copy ends at its next read once the session is closed).
		go func() {
			io.Copy(stdin, cmd.Stdin)
			stdin.Close()
		}()
	}

	pgidc := make(chan int, 1)
	copied := make(chan error, 1)
	go func() {
		w := cmd.Stdout
		if w == nil {
			w = io.Discard
		}
		br := bufio.NewReader(stdout)
		pgid, err := readPGID(br, w)
		pgidc <- pgid
		if err != nil {
			copied <- nil
			return
		}
		_, err = io.Copy(w, br)
		copied <- err
	}()

	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()

	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		st.Killed = true
		var pgid int
		select {
		case pgid = <-pgidc:
		case werr = <-waited: // finished anyway
			st.Killed = false
		case <-time.After(5 * time.Second):
		}
		if st.Killed {
			if pgid > 0 {
				if kerr := p.KillGroup(context.WithoutCancel(ctx), target, pgid, cmd.grace()); kerr != nil {
					p.cfg.Logger.Warn("ssh: killing remote process group failed", "host", target, "pgid", pgid, "err", kerr)
				}
			}
			select {
			case werr = <-waited:
			case <-time.After(5 * time.Second):
				s.Session.Close()
				select {
				case werr = <-waited:
				case <-time.After(5 * time.Second):
					return st, &ConnError{Host: target, Addr: addr, Err: errors.New("session did not end after kill")}
				}
			}
		}
	}
	// Let stdout drain: Wait returns once the server closed the channel, so
	// the copy ends promptly.
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}

	var exitErr *ssh.ExitError
	switch {
	case werr == nil:
		st.Code = 0
	case errors.As(werr, &exitErr):
		st.Code = exitErr.ExitStatus()
		st.Signal = proc.SignalNum(exitErr.Signal())
		if st.Signal != 0 {
			st.Code = -1
		}
	case st.Killed:
	default:
		return st, &ConnError{Host: target, Addr: addr, Err: fmt.Errorf("command interrupted: %w", werr)}
	}
	if st.Killed {
		return st, fmt.Errorf("drove: %s: command killed: %w", target, context.Cause(ctx))
	}
	return st, nil
}

// KillGroup stops the remote process group pgid on target by [proc.Steps]:
// SIGINT, then SIGTERM, then SIGKILL, each sent if a member is still alive
// grace ([proc.DefaultGrace] if not positive) after the one before. It
// returns once the group is gone or has been sent SIGKILL.
func (p *Pool) KillGroup(ctx context.Context, target string, pgid int, grace time.Duration) error {
	if pgid <= 1 {
		return fmt.Errorf("drove: refusing to kill process group %d", pgid)
	}
	grace = proc.Grace(grace)
	ctx, cancel := context.WithTimeout(ctx, proc.Longest(grace)+15*time.Second)
	defer cancel()
	s, err := p.NewSession(ctx, target)
	if err != nil {
		return err
	}
	defer s.Close()
	script := proc.ShellStop(strconv.Itoa(pgid), grace, true)
	done := make(chan error, 1)
	go func() { done <- s.Run(script) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Session.Close()
		<-done
		err = context.Cause(ctx)
	}
	if err != nil {
		return fmt.Errorf("drove: kill process group %d on %s: %w", pgid, target, err)
	}
	return nil
}
