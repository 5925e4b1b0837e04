//go:build !unix

package sshnode

import (
	"errors"
	"os"
)

// takeStdio is unsupported off Unix: drove nodes over SSH run on Unix hosts.
func takeStdio() (in, out *os.File, err error) {
	return nil, nil, errors.New("not supported on this system")
}
