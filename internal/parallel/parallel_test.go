package parallel

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drove-dev/drove/internal/sshagent"
)

// TestMain makes the test binary the agent too: the executors install it
// on the SSH hosts and start it there with the agent's environment.
func TestMain(m *testing.M) {
	if sshagent.Serving() {
		os.Exit(sshagent.Main())
	}
	goleak.VerifyTestMain(m)
}

func TestRender(t *testing.T) {
	tests := []struct {
		tmpl string
		args []string
		want string
	}{
		{"echo {}", []string{"a b"}, "echo 'a b'"},
		{"echo {.} {/} {//} {/.}", []string{"/x/y.tar.gz"}, "echo /x/y.tar y.tar.gz /x y.tar"},
		{"echo {//}", []string{"/top"}, "echo /"},
		{"echo {.}", []string{"dir.d/file"}, "echo dir.d/file"},
		{"echo {.}", []string{".hidden"}, "echo .hidden"},
		{"echo {#}-{%}", []string{"z"}, "echo 7-3"},
		{"cp {1} {2}.bak {3}", []string{"a", "$(b)"}, "cp a '$(b)'.bak "},
		{"{ echo; } ${HOME} {x} {0}", []string{"q"}, "{ echo; } ${HOME} {x} {0}"},
		{"echo {}", []string{"a", "b c"}, "echo a 'b c'"},
		{"echo {", []string{"q"}, "echo {"},
	}
	for _, tt := range tests {
		if got := render(tt.tmpl, tt.args, 7, 3, true); got != tt.want {
			t.Errorf("render(%q, %q) = %q, want %q", tt.tmpl, tt.args, got, tt.want)
		}
	}
	if hasReplacement("{ echo; } ${HOME}") || !hasReplacement("x {2/.}") {
		t.Error("hasReplacement")
	}
}

func TestParseHalt(t *testing.T) {
	tests := []struct {
		in   string
		want Halt
	}{
		{"never", Halt{}},
		{"0", Halt{}},
		{"1", Halt{When: HaltSoon, On: "fail", Count: 1}},
		{"2", Halt{When: HaltNow, On: "fail", Count: 1}},
		{"-2", Halt{When: HaltNow, On: "success", Count: 1}},
		{"now,fail=3", Halt{When: HaltNow, On: "fail", Count: 3}},
		{"soon,done=10%", Halt{When: HaltSoon, On: "done", Percent: 10}},
		{"20%", Halt{When: HaltSoon, On: "fail", Percent: 20}},
	}
	for _, tt := range tests {
		got, err := ParseHalt(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseHalt(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"later", "now", "now,fail", "now,fail=0", "now,oops=1", "soon,fail=200%", "now,fail=x"} {
		if _, err := ParseHalt(bad); err == nil {
			t.Errorf("ParseHalt(%q) accepted", bad)
		}
	}
	h := Halt{When: HaltSoon, On: "fail", Percent: 50}
	if h.met(2, 2) || !h.met(4, 2) || h.met(4, 1) {
		t.Error("percentage needs three jobs done and the share reached")
	}
}

func TestJobLogRoundTrip(t *testing.T) {
	e := LogEntry{Seq: 12, Host: "alice@h1:2222", Start: time.Unix(1764100000, 123_000_000), Runtime: 1500 * time.Millisecond,
		Send: 10, Receive: 20, Exitval: -1, Signal: 15, Command: "echo 'a\tb'\nnext"}
	line := e.format()
	if want := "12\talice@h1:2222\t1764100000.123\t     1.500\t10\t20\t-1\t15\techo 'a b' next\n"; line != want {
		t.Fatalf("format = %q, want %q", line, want)
	}
	got, err := ParseJobLog(strings.NewReader(JobLogHeader + line + "13\ttorn"))
	if err != nil || len(got) != 1 || got[0].Seq != 12 || got[0].Exitval != -1 || got[0].Signal != 15 || got[0].Runtime != 1500*time.Millisecond {
		t.Fatalf("parse = %+v, %v", got, err)
	}
}

func TestOutputKeepOrder(t *testing.T) {
	var out, errb bytes.Buffer
	o := newOutput(&out, &errb, true)
	o.done(3, "", []byte("3\n"), nil)
	o.done(2, "t\t", []byte("2a\n2b"), []byte("e\n"))
	if out.Len() != 0 {
		t.Fatalf("printed early: %q", out.String())
	}
	o.skip(1)
	o.done(5, "", []byte("5\n"), nil)
	if out.String() != "t\t2a\nt\t2b\n3\n" || errb.String() != "t\te\n" {
		t.Fatalf("out %q err %q", out.String(), errb.String())
	}
	o.flushAll()
	if out.String() != "t\t2a\nt\t2b\n3\n5\n" {
		t.Fatalf("after flushAll: %q", out.String())
	}
}

func TestEngineLocal(t *testing.T) {
	var out, errb bytes.Buffer
	sum, err := Run(context.Background(), Config{
		Template:  "echo {%} {#}; exit {}",
		Sources:   []Source{{Args: []string{"0", "1", "0", "2"}}},
		Jobs:      Jobs{Count: 2},
		KeepOrder: true,
		Stdout:    &out,
		Stderr:    &errb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Jobs != 4 || sum.Failed != 2 || sum.ExitStatus() != 2 {
		t.Errorf("summary %+v", sum)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], " 1") || !strings.HasSuffix(lines[3], " 4") {
		t.Errorf("output %q", out.String())
	}
	for _, l := range lines {
		if slot := l[:1]; slot != "1" && slot != "2" {
			t.Errorf("slot %q out of 1-2", slot)
		}
	}
}

func TestEngineInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	sum, err := Run(ctx, Config{
		Template:  "sleep",
		Sources:   []Source{{Args: []string{"30", "30", "30"}}},
		Jobs:      Jobs{Count: 2},
		KillGrace: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Interrupted || sum.ExitStatus() != 130 || sum.Failed != 0 || time.Since(start) > 10*time.Second {
		t.Errorf("summary %+v after %v", sum, time.Since(start))
	}
}

func TestSummaryExitStatus(t *testing.T) {
	for _, tt := range []struct {
		s    Summary
		want int
	}{
		{Summary{}, 0},
		{Summary{Failed: 7}, 7},
		{Summary{Failed: 100}, 100},
		{Summary{Failed: 101}, 101},
		{Summary{Failed: 5000}, 101},
		{Summary{Failed: 3, Halted: true, HaltExit: 42}, 42},
		{Summary{Failed: 3, Halted: true}, 3},
		{Summary{Failed: 3, Interrupted: true}, 130},
	} {
		if got := tt.s.ExitStatus(); got != tt.want {
			t.Errorf("%+v: %d, want %d", tt.s, got, tt.want)
		}
	}
}

// syncBuf is a bytes.Buffer safe for the progress goroutine and the test.
type syncBuf struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuf() *syncBuf { return &syncBuf{mu: make(chan struct{}, 1)} }

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func TestProgress(t *testing.T) {
	for _, bar := range []bool{false, true} {
		prog := newSyncBuf()
		var out bytes.Buffer
		_, err := Run(context.Background(), Config{
			Template:      "sleep 0.1; echo",
			Sources:       []Source{{Args: []string{"a", "b", "c", "d"}}},
			Jobs:          Jobs{Count: 2},
			Stdout:        &out,
			Progress:      prog,
			Bar:           bar,
			ProgressEvery: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		p := prog.String()
		want := "ETA: "
		if bar {
			want = "% "
		}
		if !strings.Contains(p, want) || !strings.HasPrefix(p, "\r") {
			t.Errorf("bar=%v: progress %q lacks %q", bar, p, want)
		}
		// The line is wiped at the end, so the last thing written is a
		// carriage return after blanks.
		if !strings.HasSuffix(p, " \r") {
			t.Errorf("bar=%v: progress line not cleared: %q", bar, p[max(0, len(p)-40):])
		}
		if len(strings.Fields(out.String())) != 4 {
			t.Errorf("output %q", out.String())
		}
	}
}

// stampWriter records when each line was written.
type stampWriter struct {
	mu    sync.Mutex
	lines []string
	at    []time.Time
}

func (w *stampWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l != "" {
			w.lines = append(w.lines, strings.TrimSuffix(l, "\n"))
			w.at = append(w.at, time.Now())
		}
	}
	return len(p), nil
}

// TestLineBuffer checks that --line-buffer prints lines while the job still
// runs, and that with -k the oldest job is live while later ones wait for
// their turn (GNU parallel's -k --line-buffer).
func TestLineBuffer(t *testing.T) {
	for _, keep := range []bool{false, true} {
		w := &stampWriter{}
		start := time.Now()
		_, err := Run(context.Background(), Config{
			Sources:    []Source{{Args: []string{"echo 1a; sleep 0.8; echo 1b", "sleep 0.2; echo 2a; echo 2b"}}},
			Jobs:       Jobs{Count: 2},
			LineBuffer: true,
			KeepOrder:  keep,
			Stdout:     w,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := "1a 2a 2b 1b"
		if keep {
			want = "1a 1b 2a 2b"
		}
		if got := strings.Join(w.lines, " "); got != want {
			t.Errorf("keep=%v: lines %q, want %q", keep, got, want)
			continue
		}
		// 1a is printed live, long before its job ends.
		if d := w.at[0].Sub(start); d > 500*time.Millisecond {
			t.Errorf("keep=%v: first line after %v: not live", keep, d)
		}
		if keep {
			// 2a and 2b were held back until job 1 was done.
			if w.at[2].Sub(start) < 700*time.Millisecond {
				t.Errorf("keep: job 2 printed before job 1 ended")
			}
		}
	}
}
