package main

import (
	"encoding/json"
	"testing"

	"github.com/drove-dev/drove/internal/testutil/sshtest"
)

func TestFSRun(t *testing.T) {
	s := sshtest.Start(t)
	code, out, _ := fsRun(t, s, "piped\n", "host0", "run", "-i", "cat; echo", "'$HOME'", "$HOME")
	if code != 0 || out != "piped\n$HOME /home/drovetest\n" {
		t.Fatalf("run: %d %q", code, out)
	}
	code, _, errs := fsRun(t, s, "", "host0", "run", "echo bad >&2; exit 3")
	if code != 3 || errs != "bad\n" {
		t.Fatalf("exit status: %d %q", code, errs)
	}
	code, out, _ = fsRun(t, s, "", "--json", "host0", "run", "echo hi; exit 4")
	var res map[string]any
	json.Unmarshal([]byte(out), &res)
	if code != 4 || res["stdout"] != "hi\n" || res["exit_code"] != float64(4) {
		t.Fatalf("run --json: %d %q", code, out)
	}
	code, _, _ = fsRun(t, s, "", "host0", "run", "--timeout", "300ms", "sleep 30")
	if code == 0 {
		t.Fatal("timeout did not fail")
	}
}
