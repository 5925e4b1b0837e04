//go:build !unix

package sshserve

import (
	"errors"
	"os"
)

// TakeStdio is unsupported off Unix: drove nodes over SSH run on Unix hosts.
func TakeStdio() (in, out *os.File, err error) {
	return nil, nil, errors.New("not supported on this system")
}
