// Package sshnode makes an SSH host a drove node for the length of one SSH
// session: the client installs its own executable into the host's cache
// (internal/sshconn/hostcache), starts it there with EnvServe set, and
// speaks the node protocol (HTTP/2 without TLS) over the session's stdin
// and stdout. drove.Main sees EnvServe and calls Main, which runs
// internal/node's daemon with this host's CPUs on that one connection,
// authenticated by SSH, and exits — stopping every job — when the session
// ends. Start is the client's side: it gives nodeexec an HTTP client whose
// one connection is the session.
package sshnode
