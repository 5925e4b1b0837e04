package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/wire"
)

// TestPolicies: two clients' computations share a node of one CPU. Alice
// submits eight jobs, then Bob eight. Each job logs its start and end, so
// the log shows the order the node ran them in and that it never ran two at
// once. Under fsfs Alice's jobs, submitted first, all run before Bob's;
// under fair the two alternate while both have jobs, so each gets about
// half of the first eight. Fair shares slot-time, and a job slowed down by
// a loaded machine earns the other computation runs to make up for it: the
// fair jobs are long enough for such noise to shift a run or two, not
// half of them.
func TestPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy sched.Policy
		sleep  string // each job's length, in seconds
		check  func(order []string) error
	}{
		{sched.FSFS, "0.02", func(order []string) error {
			want := "a0 a1 a2 a3 a4 a5 a6 a7 b0 b1 b2 b3 b4 b5 b6 b7"
			if got := strings.Join(order, " "); got != want {
				return fmt.Errorf("ran %s, want %s", got, want)
			}
			return nil
		}},
		{sched.Fair, "0.2", func(order []string) error {
			bob := 0
			for _, j := range order[:8] {
				if j[0] == 'b' {
					bob++
				}
			}
			if bob < 2 || bob > 6 {
				return fmt.Errorf("bob ran %d of the first 8 jobs while both had jobs, want about half: %v", bob, order)
			}
			return nil
		}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			n := start(t, func(c *node.Config) { c.CPUs = 1; c.Policy = tc.policy })
			c := api(n, "")
			logFile := filepath.Join(t.TempDir(), "log")
			prog := fmt.Appendf(nil, "#!/bin/sh\necho \"$1 start\" >> %s\nsleep %s\necho \"$1 end\" >> %s\n", logFile, tc.sleep, logFile)
			sum := putBlob(t, n, prog)
			for _, client := range []string{"alice", "bob"} {
				resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: client, Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p"}))
				if err != nil {
					t.Fatal(err)
				}
				var jobs []*drovev1.Job
				for i := range 8 {
					jobs = append(jobs, &drovev1.Job{RunId: uint64(i + 1), JobId: int64(i), Input: wire.AppendStrings(nil, []string{fmt.Sprintf("%c%d", client[0], i)})})
				}
				if _, err := c.Submit(t.Context(), connect.NewRequest(&drovev1.SubmitRequest{ComputationId: resp.Msg.ComputationId, Jobs: jobs})); err != nil {
					t.Fatal(err)
				}
			}
			var lines []string
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				b, _ := os.ReadFile(logFile)
				if lines = strings.Fields(string(b)); len(lines) == 64 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("jobs not done: %q", lines)
				}
			}
			var order []string
			for i := 0; i < len(lines); i += 4 {
				if lines[i+1] != "start" || lines[i+3] != "end" || lines[i+2] != lines[i] {
					t.Fatalf("two jobs ran at once on one CPU: %q", lines)
				}
				order = append(order, lines[i])
			}
			if err := tc.check(order); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRecall: a client's recall gives back a job still queued at the node
// (NOT_STARTED) and leaves a running one alone; a plain cancel then stops
// the running one (KILLED).
func TestRecall(t *testing.T) {
	n := start(t, func(c *node.Config) { c.CPUs = 1 })
	c := api(n, "")
	prog := []byte("#!/bin/sh\nsleep 100\n")
	sum := putBlob(t, n, prog)
	resp, err := c.Setup(t.Context(), connect.NewRequest(&drovev1.SetupRequest{ClientId: "r", Program: &drovev1.Blob{Sum: sum, Mode: 0o755}, ProgramName: "p", GraceMs: 100}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.ComputationId
	jobs := []*drovev1.Job{{RunId: 1, Input: []byte{0}}, {RunId: 2, Input: []byte{0}}}
	if _, err := c.Submit(t.Context(), connect.NewRequest(&drovev1.SubmitRequest{ComputationId: id, Jobs: jobs})); err != nil {
		t.Fatal(err)
	}
	st, err := c.Results(t.Context(), connect.NewRequest(&drovev1.ResultsRequest{ComputationId: id}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// next returns the next result event, past Started events.
	next := func() *drovev1.Event {
		t.Helper()
		for {
			for st.Msg() != nil && len(st.Msg().Events) > 0 {
				ev := st.Msg().Events[0]
				st.Msg().Events = st.Msg().Events[1:]
				if ev.GetResult() != nil {
					return ev
				}
				if ev.RunId == 1 && ev.GetStartedUnixNano() != 0 {
					// Job 1 runs: recall both.
					if _, err := c.Cancel(t.Context(), connect.NewRequest(&drovev1.CancelRequest{ComputationId: id, RunIds: []uint64{1, 2}, Recall: true})); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !st.Receive() {
				t.Fatalf("results stream ended: %v", st.Err())
			}
		}
	}
	ev := next()
	if ev.RunId != 2 || ev.GetResult().GetOutcome() != drovev1.Outcome_OUTCOME_NOT_STARTED {
		t.Fatalf("after the recall: run %d %v, want run 2 not started", ev.RunId, ev.GetResult())
	}
	if _, err := c.Cancel(t.Context(), connect.NewRequest(&drovev1.CancelRequest{ComputationId: id, RunIds: []uint64{1}})); err != nil {
		t.Fatal(err)
	}
	ev = next()
	if ev.RunId != 1 || ev.GetResult().GetOutcome() != drovev1.Outcome_OUTCOME_KILLED {
		t.Fatalf("after the cancel: run %d %v, want run 1 killed", ev.RunId, ev.GetResult())
	}
}
