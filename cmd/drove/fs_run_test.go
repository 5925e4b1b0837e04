package main

import (
	"encoding/json"
	"strings"
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
	// A timeout takes bare seconds as run and exec do, and says what
	// happened in drove's words: none of setsid's.
	for _, d := range []string{"300ms", "0.3"} {
		code, out, errs := fsRun(t, s, "", "host0", "run", "--timeout", d, "sleep 30")
		if code == 0 || out != "" || errs != "drove: fs run: remote: host0: \"sleep 30\" killed: timed out after 300ms\n" {
			t.Errorf("--timeout %s: exit %d, stdout %q, stderr %q", d, code, out, errs)
		}
	}
	code, _, errs = fsRun(t, s, "", "host0", "run", "--timeout", "soon", "true")
	if code == 0 || !strings.Contains(errs, `"soon" is not a duration`) {
		t.Errorf("--timeout soon: exit %d, stderr %q", code, errs)
	}
	// A command killed by a signal reports it, without setsid's message.
	code, _, errs = fsRun(t, s, "", "host0", "run", "echo err >&2; kill -TERM $$")
	if code == 0 || strings.Contains(errs, "setsid") || !strings.HasPrefix(errs, "err\n") {
		t.Errorf("killed by a signal: exit %d, stderr %q", code, errs)
	}
}
