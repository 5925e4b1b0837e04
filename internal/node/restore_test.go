package node_test

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/node"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
)

func spoolOf(t *testing.T, evs ...*drovev1.Event) []byte {
	t.Helper()
	var b []byte
	for _, ev := range evs {
		var err error
		if b, err = nodeproto.AppendEvent(b, ev); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func resultEv(seq, run uint64, job int64, res sched.Result) *drovev1.Event {
	return &drovev1.Event{Seq: seq, RunId: run, JobId: job, Kind: &drovev1.Event_Result{Result: nodeproto.ResultProto(res)}}
}

// A node started on the directory of one that died picks up the events its
// computations had not delivered, for their client to recover; what it
// cannot read it leaves alone, and it starts and serves all the same.
func TestRestoreLeftComputations(t *testing.T) {
	const client, id = "cl-1", "0123456789abcdef01234567"
	meta := []byte(`{"client_id":"cl-1","id":"0123456789abcdef01234567","heartbeat_ms":50}`)
	good := spoolOf(t,
		resultEv(1, 1, 101, sched.Result{Outcome: sched.OK, Output: []byte("one")}),
		&drovev1.Event{Seq: 2, RunId: 2, JobId: 102, Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: 1}},
		&drovev1.Event{Seq: 3, RunId: 3, JobId: 103, Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: 1}},
		resultEv(4, 3, 103, sched.Result{Outcome: sched.Failed, Err: errors.New("boom")}),
	)
	for _, tc := range []struct {
		name  string
		files map[string][]byte // in the computation's directory; nil content: absent
		want  map[int64]sched.Outcome
		kept  bool // the directory is still there after recovery
	}{
		{"undelivered results", map[string][]byte{"computation.json": meta, "events.spool": good},
			map[int64]sched.Outcome{101: sched.OK, 102: sched.Lost, 103: sched.Failed}, false},
		{"spool cut short", map[string][]byte{"computation.json": meta, "events.spool": append(good, 0, 0, 1, 0, 'x')},
			map[int64]sched.Outcome{101: sched.OK, 102: sched.Lost, 103: sched.Failed}, false},
		{"garbled spool", map[string][]byte{"computation.json": meta, "events.spool": []byte("\xff\xff\xff\xffgarbage")}, nil, true},
		{"garbled metadata", map[string][]byte{"computation.json": []byte(`{"client_id":`), "events.spool": good}, nil, true},
		{"metadata of another computation", map[string][]byte{"computation.json": []byte(`{"client_id":"cl-1","id":"other","heartbeat_ms":50}`), "events.spool": good}, nil, true},
		{"no metadata", map[string][]byte{"events.spool": good}, nil, true},
		{"all delivered", map[string][]byte{"computation.json": meta, "jobs/x": []byte("x")}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cdir := filepath.Join(dir, "comp", client, id)
			for name, b := range tc.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(cdir, name)), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(cdir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n := start(t, func(c *node.Config) { c.Dir = dir })
			alive(t, n, "")
			got, err := nodeexec.Recover(t.Context(), nodeexec.Config{Addr: n.Addr().String(), ClientID: client})
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(got, func(i, j int) bool { return got[i].JobID < got[j].JobID })
			if len(got) != len(tc.want) {
				t.Fatalf("recovered %+v, want %v", got, tc.want)
			}
			for _, r := range got {
				if o, ok := tc.want[r.JobID]; !ok || r.Result.Outcome != o {
					t.Errorf("job %d: %v (%v), want %v", r.JobID, r.Result.Outcome, r.Result.Err, o)
				}
				if r.JobID == 101 && string(r.Result.Output) != "one" {
					t.Errorf("job 101 output %q", r.Result.Output)
				}
				if r.JobID == 102 && (r.Result.Err == nil || !strings.Contains(r.Result.Err.Error(), "restarted")) {
					t.Errorf("job 102 error %v, want one saying the node restarted", r.Result.Err)
				}
			}
			if _, err := os.Stat(cdir); (err == nil) != tc.kept {
				t.Errorf("directory kept: %v, want %v", err == nil, tc.kept)
			}
		})
	}
}
