package state

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKeptAcrossOpen writes what a scheduler writes in a computation's
// life, closes the database without a Sync (Close commits what is
// queued) and checks what a scheduler started again would load.
func TestKeptAcrossOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	d := open(t, path)
	d.PutComputation(Computation{ID: "c1", ClientID: "cl", HeartbeatMs: 100, Slots: 4, Setup: []byte("setup")})
	d.PutComputation(Computation{ID: "gone", ClientID: "cl", HeartbeatMs: 100})
	d.AddJobs("c1", 3, []Job{{RunID: 1, JobID: 10, Input: []byte("a")}, {RunID: 2, JobID: 20, Input: []byte("b")}, {RunID: 3, JobID: 30}})
	d.AddJobs("nosuch", 9, []Job{{RunID: 1}}) // a computation closed meanwhile: ignored
	d.PutNode("c1", "n1:9701", "nc1")
	d.PutNode("c1", "n2:9701", "nc2")
	d.DeleteNode("c1", "n2:9701", "other") // another computation there now: kept
	d.Dispatched("c1", "n1:9701", "nc1", []Dispatch{{RunID: 1, NodeRun: 7}, {RunID: 2, NodeRun: 8}, {RunID: 99, NodeRun: 9}})
	d.Undispatched("c1", 2)
	d.Result("c1", 3, []byte("res3"))
	d.Finish("c1", 1, Event{Seq: 5, Data: []byte("ev5")})
	d.Finish("c1", 4, Event{Seq: 6, Data: []byte("ev6")}) // a job not kept: its event is
	d.Ack("c1", 5)
	d.DeleteComputation("gone")
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.Finish("c1", 99, Event{Seq: 7, Data: []byte("ev7")})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = open(t, path)
	defer d.Close()
	saved, bad, err := d.Load()
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	want := []Saved{{
		Computation: Computation{ID: "c1", ClientID: "cl", HeartbeatMs: 100, Slots: 4, Setup: []byte("setup"), MaxRunID: 3, Seq: 7},
		Jobs: []Job{
			{RunID: 2, JobID: 20, Input: []byte("b")},
			{RunID: 3, JobID: 30, Result: []byte("res3")},
		},
		Events: []Event{{Seq: 6, Data: []byte("ev6")}, {Seq: 7, Data: []byte("ev7")}},
		Nodes:  map[string]string{"n1:9701": "nc1", "n2:9701": "nc2"},
	}}
	if !reflect.DeepEqual(saved, want) {
		t.Fatalf("loaded\n%+v\nwant\n%+v", saved, want)
	}
}

// TestOneProcess checks that a second scheduler cannot open the state a
// running one has.
func TestOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	d := open(t, path)
	defer d.Close()
	if d2, err := Open(path); err == nil {
		d2.Close()
		t.Fatal("a second Open of the same database succeeded")
	}
}

func TestBadRecords(t *testing.T) {
	tests := []struct {
		name string
		comp []byte
	}{
		{"not json", []byte("{")},
		{"no client", []byte(`{"id":"x","heartbeat_ms":1}`)},
		{"no heartbeat", []byte(`{"id":"x","client_id":"c"}`)},
		{"negative slots", []byte(`{"id":"x","client_id":"c","heartbeat_ms":1,"slots":-1}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeComputation(tt.comp); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
	good := AppendJob(nil, Job{RunID: 1, JobID: -3, Input: []byte("in"), Node: "n", NodeComp: "c", NodeRun: 4, Result: []byte("r")})
	for i := range good {
		if _, err := DecodeJob(1, good[:i]); !errors.Is(err, ErrFormat) {
			t.Fatalf("a job record cut at %d of %d bytes: err = %v, want ErrFormat", i, len(good), err)
		}
	}
	if _, err := DecodeJob(1, append(good, 0)); !errors.Is(err, ErrFormat) {
		t.Fatalf("a job record with a byte more: err = %v, want ErrFormat", err)
	}
}

func FuzzDecodeJob(f *testing.F) {
	f.Add(AppendJob(nil, Job{JobID: -3, Input: []byte("in"), Node: "n", NodeComp: "c", NodeRun: 4, Result: []byte("r")}))
	f.Add(AppendJob(nil, Job{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := DecodeJob(7, b)
		if err != nil {
			return
		}
		again := AppendJob(nil, j)
		j2, err := DecodeJob(7, again)
		if err != nil || !reflect.DeepEqual(j, j2) {
			t.Fatalf("decoded %+v, encoded again and decoded %+v (%v)", j, j2, err)
		}
	})
}

func FuzzDecodeComputation(f *testing.F) {
	f.Add([]byte(`{"id":"x","client_id":"c","heartbeat_ms":1,"slots":2,"setup":"AAE=","max_run_id":3,"seq":4}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeComputation(b)
		if err != nil {
			return
		}
		if c.ID == "" || c.ClientID == "" || c.HeartbeatMs <= 0 || c.Slots < 0 {
			t.Fatalf("accepted %+v", c)
		}
	})
}
