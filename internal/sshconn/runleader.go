package sshconn

// This file was added by the drove run / drove exec work (issue 4) beside
// helper-1's Run: it runs the command in the session's own login shell
// instead of under setsid and two more shells, which halves the cost of a
// short job (measured in bench/ssh.md).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// leaderPrefix prints the login shell's pid, which is its process group id:
// OpenSSH's sshd (like dropbear) calls setsid() for every session before it
// starts the user's shell, so that shell already leads its own session and
// process group, and every process the command starts stays in that group
// unless it leaves on purpose. A newline, not ";", follows, so that the pid
// is printed even when the rest of the script does not parse.
const leaderPrefix = "echo $$\n"

// RunLeader is [Pool.Run] without the setsid wrapper: the command runs in
// the login shell sshd started for the session, which leads its own process
// group, so a cancelled command's group is killed the same way (SIGTERM,
// then SIGKILL after cmd.KillGrace, over a second session). It saves the
// setsid(1) process and two shells per command, and so needs nothing on the
// remote host but a POSIX login shell. A death by signal is reported as
// such (ExitStatus.Signal) instead of as setsid's exit code.
//
// The command is read by the user's login shell, as with `ssh host
// command`; for a POSIX shell that is the same as /bin/sh -c.
func (p *Pool) RunLeader(ctx context.Context, target string, cmd *Cmd) (ExitStatus, error) {
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
	var stdin io.WriteCloser
	if cmd.Stdin != nil {
		if stdin, err = s.StdinPipe(); err != nil {
			return st, &ConnError{Host: target, Addr: addr, Err: err}
		}
	}
	if err := s.Start(leaderPrefix + script); err != nil {
		return st, &ConnError{Host: target, Addr: addr, Err: err}
	}
	if stdin != nil {
		// Not waited for: a Stdin that blocks must not hold up the run.
		go func() {
			io.Copy(stdin, cmd.Stdin)
			stdin.Close()
		}()
	}

	pgidc := make(chan int, 1)
	copied := make(chan error, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, err := br.ReadString('\n')
		pgid, convErr := strconv.Atoi(strings.TrimSpace(line))
		if err != nil || convErr != nil || pgid <= 1 {
			pgid = 0 // not a POSIX login shell: nothing known to kill
			if cmd.Stdout != nil {
				io.WriteString(cmd.Stdout, line)
			}
		}
		pgidc <- pgid
		if err != nil {
			copied <- nil
			return
		}
		w := cmd.Stdout
		if w == nil {
			w = io.Discard
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
		case werr = <-waited:
			st.Killed = false
		case <-time.After(5 * time.Second):
		}
		if st.Killed {
			if pgid > 0 {
				grace := cmd.KillGrace
				if grace <= 0 {
					grace = 2 * time.Second
				}
				if kerr := p.KillGroup(context.WithoutCancel(ctx), target, pgid, grace); kerr != nil {
					p.cfg.Logger.Warn("sshconn: killing remote process group failed", "host", target, "pgid", pgid, "err", kerr)
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
		st.Signal = exitErr.Signal()
		if st.Signal != "" {
			st.Code = -1
		}
	case st.Killed:
	default:
		return st, &ConnError{Host: target, Addr: addr, Err: fmt.Errorf("command interrupted: %w", werr)}
	}
	if st.Killed {
		return st, fmt.Errorf("sshconn: %s: command killed: %w", target, context.Cause(ctx))
	}
	return st, nil
}
