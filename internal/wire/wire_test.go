package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

var samples = []Message{
	&Hello{Version: Version, Fingerprint: "abc", PID: 42},
	&Setup{Func: "compute", Setup: "load"},
	&Ready{},
	&Ready{Err: "no such function"},
	&Run{ID: 7, Input: []byte{1, 2, 3}},
	&Run{ID: 1 << 60},
	&Cancel{ID: 9},
	&Skip{ID: 10},
	&Begun{ID: 11},
	&Provisional{ID: 3, Output: []byte("partial")},
	&File{ID: 4, Name: "out/a.txt", Mode: 0o644, Offset: 10, Data: []byte("xyz"), Last: true},
	&FileDone{ID: 4, Name: "out/a.txt", Err: "refused"},
	&Result{ID: 5, Kind: ResultPanic, Output: []byte("o"), Err: "boom", Stack: "goroutine 1", Stdout: []byte("hi\n"), Stderr: []byte("err\n"), Start: -5, End: 1 << 40},
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range samples {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf, 0)
	for _, want := range samples {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("read %T: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Errorf("after last frame: got %v, want io.EOF", err)
	}
}

func frame(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(b, body...)
}

func TestBadFrames(t *testing.T) {
	good := func(m Message) []byte {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.Send(m); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	run := good(&Run{ID: 1, Input: []byte("abcdef")})
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty frame", frame(nil), 0, ErrMalformed},
		{"unknown type", frame([]byte{200}), 0, ErrMalformed},
		{"truncated body", run[:len(run)-2], 0, io.ErrUnexpectedEOF},
		{"truncated header", run[:2], 0, io.ErrUnexpectedEOF},
		{"oversized", run, 5, ErrTooLarge},
		{"huge length", frame([]byte{byte(TRun), 1, 0xff, 0xff, 0xff, 0xff, 0x0f}), 0, ErrMalformed},
		{"trailing bytes", frame(append(append([]byte{}, run[4:]...), 0)), 0, ErrMalformed},
		{"bad varint", frame([]byte{byte(TCancel), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), 0, ErrMalformed},
		{"bad bool", frame([]byte{byte(TFile), 1, 0, 0, 0, 0, 7}), 0, ErrMalformed},
		{"bad result kind", frame([]byte{byte(TResult), 1, 9, 0, 0, 0, 0, 0, 0, 0}), 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.in), tt.max).Read()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzReadFrame feeds arbitrary streams to the reader: it must return
// messages or errors, never panic, and whatever it decodes must re-encode to
// a frame that decodes to the same message.
func FuzzReadFrame(f *testing.F) {
	for _, m := range samples {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		_ = w.Send(m)
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 1<<16)
		for {
			m, err := r.Read()
			if err != nil {
				return
			}
			var buf bytes.Buffer
			w := NewWriter(&buf)
			if err := w.Send(m); err != nil {
				t.Fatal(err)
			}
			again, err := NewReader(&buf, 0).Read()
			if err != nil {
				t.Fatalf("re-encoded %#v does not decode: %v", m, err)
			}
			if !reflect.DeepEqual(again, m) {
				t.Fatalf("round trip changed %#v to %#v", m, again)
			}
		}
	})
}

// FuzzParseStrings: program arguments decode or fail, never panic, and
// what decodes survives a round trip (varints may arrive in a longer form
// than the encoder writes, so the bytes themselves may differ).
func FuzzParseStrings(f *testing.F) {
	f.Add(AppendStrings(nil, []string{"a", "b c", ""}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := ParseStrings(b)
		if err != nil {
			return
		}
		again, err := ParseStrings(AppendStrings(nil, ss))
		if err != nil || !reflect.DeepEqual(again, ss) && !(len(again) == 0 && len(ss) == 0) {
			t.Fatalf("%q round-trips to %q, %v", ss, again, err)
		}
	})
}

// Buffered is true only while a whole frame waits in the buffer: a frame
// whose body is still in transit would block the next Read.
func TestBuffered(t *testing.T) {
	var one bytes.Buffer
	if err := NewWriter(&one).Send(&Run{ID: 1, Input: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	whole := one.Bytes()
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	go func() {
		// Two frames and the first 6 bytes of a third, then nothing.
		_, _ = pw.Write(append(append(append([]byte{}, whole...), whole...), whole[:6]...))
	}()
	for i, want := range []bool{true, false} {
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
		if got := r.Buffered(); got != want {
			t.Errorf("after frame %d: Buffered() = %v, want %v", i+1, got, want)
		}
	}
	pw.Close()
}
