// Package hostcache installs files, above all drove's own executable, into
// a content-addressed cache on an SSH host, over the connection and the SFTP
// session an [sshconn.Pool] keeps for it.
//
// [Probe] asks the host, through the user's login shell and one SSH
// session, for its operating system and architecture (`uname -sm`, mapped
// to Go's GOOS and GOARCH), its cache directory
// (${XDG_CACHE_HOME:-$HOME/.cache}/drove) and the address the connection
// reached it at ($SSH_CONNECTION). [Host.Install] then puts a local file
// at DIR/blobs/SHA256 unless a file of that name and size is already
// there, writing it under a temporary name and renaming it into place
// (package sftpengine), so that a blob in the cache is always complete; the
// cache directories are created with mode 0700. [Host.InstallExecutable]
// also checks that the host's platform is the executable's and that the
// installed file can run there, by running it with a harmless argument.
//
// It is the first step of everything that runs drove on an SSH host: drove
// up (persistent nodes), and the Go functions and the agent that run over
// SSH.
//
// # Errors
//
// The reasons a host cannot run what it was given are errors callers can
// match to fall back to something else (a session per job, say):
//
//   - [ErrPlatform]: the host's platform is not the executable's
//     ([*PlatformError] names both);
//   - [ErrNoCache]: the cache directory cannot be created or written
//     ([*CacheError]);
//   - [ErrNotExecutable]: the installed file does not run there, typically
//     because the file system is mounted noexec ([*ExecError]).
//
// A host that cannot be reached, or whose connection is lost, yields an
// [*sshconn.ConnError] (or [*sshconn.HostKeyError]) as everywhere in the SSH
// layer; those are not reasons to fall back.
package hostcache
