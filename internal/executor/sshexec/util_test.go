package sshexec_test

import (
	osexec "os/exec"
	"strings"
)

func exec(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).Output()
	return strings.TrimSpace(string(out)), err
}
