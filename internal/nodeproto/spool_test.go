package nodeproto

import (
	"bytes"
	"errors"
	"testing"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
)

func TestSpoolRoundTrip(t *testing.T) {
	evs := []*drovev1.Event{
		{Seq: 1, RunId: 7, Kind: &drovev1.Event_StartedUnixNano{StartedUnixNano: 42}},
		{Seq: 2, RunId: 7, Kind: &drovev1.Event_Result{Result: &drovev1.Result{Outcome: drovev1.Outcome_OUTCOME_OK, Output: []byte("out")}}},
	}
	var b []byte
	for _, ev := range evs {
		var err error
		if b, err = AppendEvent(b, ev); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadEvents(bytes.NewReader(b))
	if err != nil || len(got) != 2 || got[1].GetResult().GetOutcome() != drovev1.Outcome_OUTCOME_OK {
		t.Fatalf("%v %v", got, err)
	}
	// A spool cut short (the node died writing) keeps what came before.
	got, err = ReadEvents(bytes.NewReader(b[:len(b)-2]))
	if !errors.Is(err, ErrSpool) || len(got) != 1 {
		t.Fatalf("truncated: %v %v", got, err)
	}
	// An absurd length is refused before allocating it.
	got, err = ReadEvents(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 1}))
	if !errors.Is(err, ErrSpool) || len(got) != 0 {
		t.Fatalf("oversized: %v %v", got, err)
	}
}

func FuzzReadEvents(f *testing.F) {
	b, _ := AppendEvent(nil, &drovev1.Event{Seq: 1, Kind: &drovev1.Event_Provisional{Provisional: []byte("p")}})
	f.Add(b)
	f.Add([]byte{0, 0, 0, 3, 1, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := ReadEvents(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrSpool) {
			t.Fatalf("error not wrapping ErrSpool: %v", err)
		}
		for _, ev := range evs {
			_ = ResultFromProto(ev.GetResult())
			_ = ErrorFromProto(ev.GetResult().GetError())
		}
	})
}
