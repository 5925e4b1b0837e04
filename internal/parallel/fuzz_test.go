package parallel

import (
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/sshconn"
)

func FuzzRender(f *testing.F) {
	for _, s := range []string{"echo {}", "{1} {2.} {/} {//} {/.} {#} {%}", "{ x; } ${y}", "{", "}{", "{{}}"} {
		f.Add(s, "a b/c.d")
	}
	f.Fuzz(func(t *testing.T, tmpl, arg string) {
		got := render(tmpl, []string{arg}, 1, 1, true)
		if !strings.Contains(tmpl, "{") && got != tmpl {
			t.Fatalf("render(%q) = %q, changed a template without braces", tmpl, got)
		}
		if tmpl == "{}" && got != sshconn.Quote(arg) {
			t.Fatalf("{} of %q = %q, want %q", arg, got, sshconn.Quote(arg))
		}
		if !hasReplacement(tmpl) && got != tmpl {
			t.Fatalf("render(%q) = %q without a replacement string", tmpl, got)
		}
	})
}

func FuzzJobLog(f *testing.F) {
	f.Add(JobLogHeader+"1\t:\t1764100000.123\t     0.005\t0\t0\t0\t0\techo a\n", "host", "cmd\there", 3, -1)
	f.Fuzz(func(t *testing.T, log, host, cmd string, seq, exit int) {
		ParseJobLog(strings.NewReader(log)) // must not panic
		if seq < 0 || host == "" || strings.ContainsAny(host, "\t\n\r ") || strings.Contains(cmd, "\r") {
			return
		}
		e := LogEntry{Seq: seq, Host: host, Start: time.Unix(1764100000, 0), Runtime: time.Second, Exitval: exit, Command: cmd}
		got, err := ParseJobLog(strings.NewReader(e.format()))
		if err != nil || len(got) != 1 || got[0].Seq != seq || got[0].Host != host || got[0].Exitval != exit {
			t.Fatalf("round trip of %+v: %+v, %v", e, got, err)
		}
	})
}
