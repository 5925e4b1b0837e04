package sshconn

// RunLeader runs the command in the session's own login shell instead of
// under setsid and two more shells, which halves the cost of a short job
// (measured in bench/ssh.md).

import (
	"context"
)

// leaderPrefix prints the login shell's pid after [pgidMarker]; the pid is
// its process group id:
// OpenSSH's sshd (like dropbear) calls setsid() for every session before it
// starts the user's shell, so that shell already leads its own session and
// process group, and every process the command starts stays in that group
// unless it leaves on purpose. A newline, not ";", follows, so that the pid
// is printed even when the rest of the script does not parse.
const leaderPrefix = "echo '" + pgidMarker + "'$$\n"

// RunLeader is [Pool.Run] without the setsid wrapper: the command runs in
// the login shell sshd started for the session, which leads its own process
// group, so a cancelled command's group is stopped the same way (SIGINT,
// SIGTERM, then SIGKILL, cmd.KillGrace apart, over a second session), and so is it
// when the session ends under the command. It saves the setsid(1) process
// and two shells per command, and so needs nothing on the remote host but
// a POSIX login shell. A death by signal is reported as
// such (ExitStatus.Signal) instead of as setsid's exit code.
//
// The command is read by the user's login shell, as with `ssh host
// command` and GNU parallel -S; for an account whose shell is a POSIX sh
// that is the same as /bin/sh -c. Whatever the shell prints before running
// the command (rc files sourced by bash) is passed on as output.
func (p *Pool) RunLeader(ctx context.Context, target string, cmd *Cmd) (ExitStatus, error) {
	return p.run(ctx, target, cmd, func(script string) string { return leaderPrefix + cmd.watchdog("$PPID") + script })
}
