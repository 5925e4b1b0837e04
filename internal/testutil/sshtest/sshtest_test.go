package sshtest_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

func TestStartTwoHosts(t *testing.T) {
	s := sshtest.Start(t, sshtest.WithHosts(2))
	if len(s.Addrs) != 2 || len(s.Aliases) != 2 {
		t.Fatalf("addrs %v aliases %v", s.Addrs, s.Aliases)
	}
	for _, addr := range s.Addrs {
		c, err := ssh.Dial("tcp", addr, s.ClientConfig())
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.Output("id -un; echo $SHELL")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(out); got != "drovetest\n/bin/sh\n" {
			t.Errorf("%s: got %q", addr, got)
		}
		c.Close()
	}
}

func TestOpenSSHClientUsesConfig(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	s := sshtest.Start(t)
	out, err := exec.Command("ssh", "-F", s.SSHConfig, s.Aliases[0], "echo ok").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("ssh -F: %v: %s", err, out)
	}
}

func TestDownAddrRefuses(t *testing.T) {
	s := sshtest.Start(t)
	c, err := net.DialTimeout("tcp", s.DownAddr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection", s.DownAddr)
	}
}
