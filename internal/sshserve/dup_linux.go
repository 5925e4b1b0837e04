package sshserve

import "golang.org/x/sys/unix"

// dup2 makes newfd a copy of oldfd (Linux on some architectures has no
// dup2 system call).
func dup2(oldfd, newfd int) error { return unix.Dup3(oldfd, newfd, 0) }
