// Package sshserve starts this program's own executable on an SSH host in
// a serving mode over one SSH session, and holds both halves of that: the
// client's [Start] probes the host, installs the executable into the
// host's content-addressed cache (internal/sshconn/hostcache), runs it
// with the serving mode's environment variables set, skips what the login
// shell prints until the serving process's marker line, and hands over the
// session's stdin and stdout; the serving process's [TakeStdio] moves its
// stdin and stdout out of the way of the processes it starts.
//
// Two serving modes use it: the drove node protocol (internal/sshnode, for
// WithNodes("ssh://host")) and the shell agent (internal/sshagent, for
// drove run, drove exec and drove.Shell).
package sshserve
