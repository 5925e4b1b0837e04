package nodeexec_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/registry"
	"github.com/drove-dev/drove/internal/sched"
)

func init() {
	// logged appends "<tag> start" to a log file, sleeps, then appends
	// "<tag> end": the log shows which jobs ran at once. Its input is
	// "<log file> <tag> <milliseconds>".
	registry.Register(&registry.Func{Name: "logged", In: "string", Out: "string", Call: func(ctx context.Context, in []byte) ([]byte, error) {
		f := strings.Fields(string(in))
		ms, _ := strconv.Atoi(f[2])
		logLine(f[0], f[1]+" start")
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		logLine(f[0], f[1]+" end")
		return in, nil
	}})
}

func logLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
}

// jobsStarted reads how many jobs the node has handed to its computations'
// executors, from its metrics.
func jobsStarted(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "drove_node_jobs_handed_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no drove_node_jobs_handed_total in the node's metrics: %v", sc.Err())
	return 0
}

// TestNodeQueuesAhead: a lone function computation on a node of one CPU
// gets its next jobs handed to its workers while its first one runs, so a
// worker never waits for the node between jobs.
func TestNodeQueuesAhead(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.CPUs = 1 })
	logFile := filepath.Join(t.TempDir(), "log")
	s := sched.New(sched.Config{})
	defer s.Close(context.WithoutCancel(t.Context()))
	dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "logged"))
	submit(t, s, 3, func(i int) []byte { return fmt.Appendf(nil, "%s a%d 2000", logFile, i) })
	// The count is read before the log, so a second job counted while
	// the log does not show the first one's end was handed to the
	// executor while the first ran.
	for {
		handed := jobsStarted(t, n.addr)
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "a0 end") {
			t.Fatalf("the first job ended before the node handed a second one to the computation's executor: no queue-ahead")
		}
		if handed >= 2 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodeNoQueueAheadShared: with two function computations open on a
// node of one CPU, no job queues ahead at either's worker, so the two never
// run jobs at once: the log shows each job's start followed by its end.
func TestNodeNoQueueAheadShared(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.CPUs = 1 })
	logFile := filepath.Join(t.TempDir(), "log")
	var ss []*sched.Scheduler
	for _, client := range []string{"alice", "bob"} {
		s := sched.New(sched.Config{})
		defer s.Close(context.WithoutCancel(t.Context()))
		dial(t, s, nodeexec.Config{Addr: n.addr, ClientID: client}, funcComp(t, "logged"))
		ss = append(ss, s)
	}
	for i, s := range ss {
		submit(t, s, 6, func(j int) []byte { return fmt.Appendf(nil, "%s %c%d 50", logFile, 'a'+i, j) })
	}
	for _, s := range ss {
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 24 {
		t.Fatalf("%d log lines, want 24: %q", len(lines), lines)
	}
	for i := 0; i < len(lines); i += 2 {
		tag, _, _ := strings.Cut(lines[i], " ")
		if lines[i] != tag+" start" || lines[i+1] != tag+" end" {
			t.Fatalf("two jobs ran at once on one CPU: %q", lines)
		}
	}
}

// TestPrefetchFollowsRunTime: the client queues jobs deep at a node while
// they are short and shallow once they are long, so a node never holds
// much work another could run.
func TestPrefetchFollowsRunTime(t *testing.T) {
	n := startNode(t, nil)
	s := sched.New(sched.Config{})
	defer s.Close(context.WithoutCancel(t.Context()))
	ex := dial(t, s, nodeexec.Config{Addr: n.addr}, funcComp(t, "sleep"))
	shallow := 2*ex.Slots() + 16
	if got := ex.Prefetch(); got != shallow {
		t.Fatalf("before any result: prefetch %d, want %d", got, shallow)
	}
	cases := []struct {
		name  string
		ms    int
		check func(got int) bool
		want  string
	}{
		{"short jobs", 0, func(got int) bool { return got > shallow }, fmt.Sprintf("more than %d", shallow)},
		{"20 ms jobs", 20, func(got int) bool { return got == shallow }, fmt.Sprint(shallow)},
	}
	for _, c := range cases {
		submit(t, s, 60, func(int) []byte { return enc(uint64(c.ms)) })
		if err := s.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := ex.Prefetch(); !c.check(got) {
			t.Errorf("after %s: prefetch %d, want %s", c.name, got, c.want)
		}
	}
}
