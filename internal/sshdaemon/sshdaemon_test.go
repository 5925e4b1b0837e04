package sshdaemon

import (
	"os/exec"
	"strings"
	"testing"
)

func TestInstanceName(t *testing.T) {
	tests := []struct {
		role, bind string
		port       int
		name       string
	}{
		{RoleNode, "10.0.0.5", 9701, "node-10.0.0.5-9701"},
		{RoleScheduler, BindAll, 9700, "scheduler-any-9700"},
		{RoleNode, "::1", 0, "node-::1-0"},
		{RoleNode, "fe80::1%eth0", 9701, "node-fe80::1%eth0-9701"},
	}
	for _, tt := range tests {
		name := instanceName(tt.role, tt.bind, tt.port)
		if name != tt.name {
			t.Errorf("instanceName(%q, %q, %d) = %q, want %q", tt.role, tt.bind, tt.port, name, tt.name)
		}
		role, bind, port, ok := parseInstance(name)
		wantBind := tt.bind
		if wantBind == BindAll {
			wantBind = "any"
		}
		if !ok || role != tt.role || bind != wantBind || port != tt.port {
			t.Errorf("parseInstance(%q) = %q, %q, %d, %v", name, role, bind, port, ok)
		}
	}
	for _, bad := range []string{"", "node", "node-9701", "other-1.2.3.4-9701", "node-1.2.3.4-x", ".drove-1234.part"} {
		if _, _, _, ok := parseInstance(bad); ok {
			t.Errorf("parseInstance(%q) accepted", bad)
		}
	}
}

// TestScriptsParse checks that every script is valid sh, whatever the
// quoting its paths and arguments need.
func TestScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	dir := "/home/o'brien/.cache/drove/up/node-::1-9701"
	args := []string{"node", "--port", "9701", "--name", `it's "$(odd)"; name`, "--dest-path", dir + "/dest"}
	scripts := map[string]string{
		"status": statusScript(dir),
		"stop":   stopScript(dir),
	}
	for _, l := range []string{LaunchAuto, LaunchSystemd, LaunchSetsid} {
		scripts["launch "+l] = launchScript(l, dir, "/home/o'brien/.cache/drove/blobs/abc", args, RoleNode, 9701, "::1")
	}
	for name, s := range scripts {
		if out, err := exec.Command(sh, "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v: %s\n%s", name, err, out, s)
		}
		if strings.Contains(s, "drove-node-::1") {
			t.Errorf("%s: a ':' in the systemd unit name", name)
		}
	}
}
