package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/drove-dev/drove"
)

// TestMain lets the test binary serve as a worker for the commands' clusters.
func TestMain(m *testing.M) {
	drove.Main()
	if path := os.Getenv("DROVE_TEST_RECOVER_FILE"); path != "" {
		os.Exit(gatedClientMain(path, os.Getenv("DROVE_TEST_RECOVER_NODE"), os.Getenv("DROVE_TEST_RECOVER_DIR"))) // a client killed while its jobs run
	}
	dir, err := os.MkdirTemp("", "drove-cmd-test")
	if err != nil {
		panic(err)
	}
	builtDrove.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCmd runs the command line and returns its exit code and output.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDemo(t *testing.T) {
	code, out, errs := runCmd(t, "", "demo", "--unit", "1ms", "--jobs", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	line := regexp.MustCompile(`(?m)^\S+ executed job [1-7] at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} with ([1-9]|10)$`)
	if got := len(line.FindAllString(out, -1)); got != 7 {
		t.Errorf("%d job lines in\n%s", got, out)
	}
	if !strings.Contains(out, "            Node |  CPUs |    Jobs |  Sec/Job | Node Time Sec |    Sent |    Rcvd\n") ||
		!regexp.MustCompile(`Total job time: \d+\.\d{3} sec, wall time: \d+\.\d{3} sec, speedup: \d+\.\d{3}`).MatchString(out) {
		t.Errorf("no stats table in\n%s", out)
	}
}

func TestSubmit(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"[$1] [$2]\"; cat data.txt >&2; exit $3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte("staged"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", "submit", "-f", data, "-a", "'a b' c 0", "-a", `"x\"y" z 3`, prog)
	if code != 1 {
		t.Errorf("exit %d, want 1 (one job exited non-zero); stderr %s", code, errs)
	}
	want := []string{
		"job 1 [a b c 0] on ", ": exit status 0\n--- stdout ---\n[a b] [c]\n--- stderr ---\nstaged\n",
		"job 2 [x\"y z 3] on ", ": exit status 3\n--- stdout ---\n[x\"y] [z]\n--- stderr ---\nstaged\n",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestSubmitErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing program", []string{"submit", "/no/such/program"}, "no such file"},
		{"no program", []string{"submit"}, "accepts 1 arg"},
		{"bad quoting", []string{"submit", "-a", "'open", "true"}, "unterminated single quote"},
		{"bad timeout", []string{"submit", "--timeout", "soon", "true"}, "--timeout"},
		{"missing file", []string{"submit", "-f", "/no/such/file", "true"}, "no such file"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"exclusive embedded", []string{"submit", "--exclusive", "true"}, "--exclusive needs --scheduler or --nodes"},
		{"demo exclusive embedded", []string{"demo", "--exclusive"}, "--exclusive needs --scheduler or --nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runCmd(t, "", tt.args...)
			if code == 0 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, errs, tt.want)
			}
		})
	}
}

func TestSubmitTimeout(t *testing.T) {
	code, out, _ := runCmd(t, "", "submit", "--timeout", "0.1", "-a", "30", "sleep")
	if code != 1 || !strings.Contains(out, "Terminated: drove: job timed out") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := runCmd(t, "", "version")
	if code != 0 || !regexp.MustCompile(`^drove \S+ go1\.\d+`).MatchString(out) {
		t.Errorf("version: exit %d %q", code, out)
	}
	for _, cmd := range []string{"demo", "submit", "version"} {
		code, out, _ := runCmd(t, "", cmd, "--help")
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, out)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"a b  c", []string{"a", "b", "c"}, false},
		{`'a b' "c d" e\ f`, []string{"a b", "c d", "e f"}, false},
		{`"$(x)" '$y'`, []string{"$(x)", "$y"}, false},
		{`"a\"b" 'it''s'`, []string{`a"b`, "its"}, false},
		{`x''`, []string{"x"}, false},
		{`''`, []string{""}, false},
		{`'open`, nil, true},
		{`"open`, nil, true},
		{`trailing\`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.err || strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestInterruptedDemoStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"demo", "--unit", "1h"}, strings.NewReader(""), &out, &errb); code == 0 {
		t.Errorf("interrupted demo exited 0:\n%s", out.String())
	}
}

func TestRevisionOf(t *testing.T) {
	for _, tc := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, ""},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}, "rev 0123456789ab"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}, "rev abc+dirty"},
		{[]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, ""},
	} {
		if got := revisionOf(tc.settings); got != tc.want {
			t.Errorf("revisionOf(%v) = %q, want %q", tc.settings, got, tc.want)
		}
	}
}
