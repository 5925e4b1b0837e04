// Package sshagent is the agent of the SSH work queue (drove run, drove
// exec, drove.Shell): one process per host and executor, started over one
// SSH session, that runs every shell command of that host without a new
// session each.
//
// The agent is the client's own executable (the drove binary, or a
// program that calls drove.Main), installed in the host's
// content-addressed cache and started with [EnvAgent] set by
// internal/sshserve, the launcher internal/sshnode shares; drove.Main
// sees the variable and calls [Main]. Each command is run as sshd runs a
// session's command: `$SHELL -c SCRIPT` with the environment sshd gave
// the agent's session, in the login directory, the leader of a new
// session and process group. Its output is streamed back as it comes, its
// exit code or signal when it has ended and its output is closed; a stop
// takes internal/proc's steps (SIGINT, SIGTERM, SIGKILL, the grace apart)
// on its process group. When the agent's stdin ends — the session closed,
// the connection cut, the client killed — it stops every running command
// that way and exits.
//
// The protocol, after the [Marker] line, is frames on the session's stdin
// and stdout: a 4-byte length, a type byte and a body of varints and
// length-prefixed bytes (see proto.go). The client is [Client], started
// by a [Launcher], which remembers the hosts that cannot run an agent
// (another platform, no writable cache, a noexec cache: errors wrapping
// [ErrUnavailable]) and reports each once.
package sshagent
