package sshconn

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

var (
	// ErrClosed is returned by a [Pool] after Close.
	ErrClosed = errors.New("remote: SSH connections closed")
	errNUL    = errors.New("remote: argument contains a NUL byte")
)

// ConnError reports that a host could not be reached, authenticated to, or
// that its connection was lost. It is distinct from a remote command failing.
type ConnError struct {
	Host string // the target as given (alias or [user@]host[:port])
	Addr string // the address dialled, host:port
	Err  error
}

// Error names the host, the address and the cause.
func (e *ConnError) Error() string {
	if e.Addr != "" && !strings.Contains(e.Host, e.Addr) {
		return fmt.Sprintf("remote: %s (%s): %v", e.Host, e.Addr, e.Err)
	}
	return fmt.Sprintf("remote: %s: %v", e.Host, e.Err)
}

// Unwrap returns the cause.
func (e *ConnError) Unwrap() error { return e.Err }

// IsHostError reports whether err means that the host is unusable (it
// could not be reached or authenticated to, its connection was lost, or the
// pool is closed) rather than a command on it failing.
func IsHostError(err error) bool {
	var ce *ConnError
	var he *HostKeyError
	return errors.As(err, &ce) || errors.As(err, &he) || errors.Is(err, ErrClosed)
}

// HostKeyError reports that a host's key is not in known_hosts (Changed is
// false) or differs from the one recorded there (Changed is true). The
// connection was refused in both cases.
type HostKeyError struct {
	Host    string        // the target as given
	Addr    string        // the address checked, host:port
	Key     ssh.PublicKey // the key the server presented
	Changed bool          // true if known_hosts holds a different key
	Files   []string      // the known_hosts files consulted
	Err     error         // the underlying *knownhosts.KeyError, if any
}

// Error names the host, the key fingerprint and the known_hosts files.
func (e *HostKeyError) Error() string {
	fp := ""
	if e.Key != nil {
		fp = e.Key.Type() + " " + ssh.FingerprintSHA256(e.Key)
	}
	files := strings.Join(e.Files, ", ")
	if e.Changed {
		return fmt.Sprintf("remote: HOST KEY CHANGED for %s (%s): server offered %s, which differs from %s; refusing to connect",
			e.Host, e.Addr, fp, files)
	}
	return fmt.Sprintf("remote: unknown host key for %s (%s): %s is not in %s (use accept-new to trust it on first use)",
		e.Host, e.Addr, fp, files)
}

// Unwrap returns the known_hosts check error, if any.
func (e *HostKeyError) Unwrap() error { return e.Err }
