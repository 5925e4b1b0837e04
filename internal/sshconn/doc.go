// Package sshconn is drove's SSH client layer, shared by `drove run`,
// `drove exec`, `drove fs`, Shell clusters and package remote, which is its
// public face: [Config] is remote.Config (and drove.SSHConfig), and
// [ConnError] and [HostKeyError] are remote's, so their messages start with
// "remote:".
//
// A [Pool] resolves targets the way OpenSSH does (ssh_config Host aliases,
// HostName, User, Port, IdentityFile, ProxyJump, ConnectTimeout,
// UserKnownHostsFile), authenticates with ssh-agent and key files, checks host
// keys against known_hosts (strict by default, or accept-new), and keeps one
// connection per host that carries many sessions at once. When a connection
// already holds [Config.MaxSessions] sessions (sshd's MaxSessions, 10 by
// default) the pool opens another one; keepalives detect dead connections and
// the next request dials again.
//
// [Pool.SFTP] returns the one SFTP session the pool keeps per host, shared
// by all its users; this package is the only one in drove that creates SFTP
// clients, and package sftpengine moves files over them.
//
// [Pool.Run] runs a shell command in its own process group on the remote
// host, so that a timeout or cancellation kills everything it started, and
// [Quote] turns arbitrary bytes into one POSIX shell word.
//
// # Errors
//
// A host that cannot be reached or authenticated to yields a [*ConnError]; a
// host key that is unknown or changed yields a [*HostKeyError]. Neither is
// ever returned for a command that ran and failed: that is an exit status.
package sshconn
