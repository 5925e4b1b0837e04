//go:build unix

package sshserve

import (
	"os"

	"golang.org/x/sys/unix"
)

// TakeStdio moves stdin and stdout to new descriptors closed on exec and
// returns them; fd 0 becomes /dev/null and fd 1 a copy of fd 2, so that
// nothing the process starts or prints reaches the connection.
func TakeStdio() (in, out *os.File, err error) {
	ifd, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, nil, err
	}
	ofd, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		unix.Close(ifd)
		return nil, nil, err
	}
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = dup2(null, 0)
		unix.Close(null)
	}
	if err == nil {
		err = dup2(2, 1)
	}
	if err != nil {
		unix.Close(ifd)
		unix.Close(ofd)
		return nil, nil, err
	}
	return os.NewFile(uintptr(ifd), "ssh-stdin"), os.NewFile(uintptr(ofd), "ssh-stdout"), nil
}
