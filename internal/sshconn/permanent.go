package sshconn

import "errors"

// Permanent reports whether err is one that dialling the host again cannot
// fix: a refused host key, or a pool that was closed. Whoever keeps hosts
// (internal/fleet) gives such a host up at once instead of redialling it.
func Permanent(err error) bool {
	var he *HostKeyError
	return errors.As(err, &he) || errors.Is(err, ErrClosed)
}
