package sshagent

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

var sampleFrames = []frame{
	{typ: tHello, version: Version, cpus: 64},
	{typ: tStart, id: 1, grace: 2 * time.Second, data: []byte("echo 'hi'\nexit 3")},
	{typ: tStart, id: 1 << 40, grace: 300 * time.Millisecond, hasStdin: true, data: []byte{}},
	{typ: tStdin, id: 7, data: []byte("input\x00bytes")},
	{typ: tStdin, id: 7, data: []byte{}},
	{typ: tStop, id: 9},
	{typ: tOut, id: 3, stream: 1, data: []byte("out")},
	{typ: tOut, id: 3, stream: 2, data: []byte("err\n")},
	{typ: tExit, id: 3, code: 127},
	{typ: tExit, id: 4, code: -1, signal: 9},
}

func TestFrameRoundTrip(t *testing.T) {
	var stream []byte
	for i := range sampleFrames {
		stream = appendFrame(stream, &sampleFrames[i])
	}
	r := newReader(bytes.NewReader(stream))
	for i, want := range sampleFrames {
		got, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want.data != nil && got.data == nil {
			got.data = []byte{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("frame %d: got %+v, want %+v", i, got, want)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown type", []byte{99}},
		{"truncated varint", []byte{tStop, 0x80}},
		{"string past the end", []byte{tStdin, 1, 5, 'a'}},
		{"trailing bytes", []byte{tStop, 1, 0}},
		{"bad stream", []byte{tOut, 1, 3, 0}},
		{"bad stdin flag", []byte{tStart, 1, 0, 2, 0}},
		{"huge signal", []byte{tExit, 1, 0, 0x80, 0x04}},
	}
	for _, tt := range tests {
		if _, err := decodeFrame(tt.b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want errMalformed", tt.name, err)
		}
	}
	big := []byte{0xff, 0xff, 0xff, 0xff}
	if _, err := readFrame(newReader(bytes.NewReader(big))); !errors.Is(err, errMalformed) {
		t.Errorf("oversized frame: %v", err)
	}
}

// FuzzDecodeFrame: no input makes the decoder panic, and whatever decodes
// encodes back to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for i := range sampleFrames {
		f.Add(appendFrame(nil, &sampleFrames[i])[4:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		again := appendFrame(nil, &fr)[4:]
		fr2, err := decodeFrame(again)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !reflect.DeepEqual(normal(fr), normal(fr2)) {
			t.Fatalf("round trip changed %+v into %+v", fr, fr2)
		}
	})
}

// normal makes empty data compare equal to nil.
func normal(f frame) frame {
	if len(f.data) == 0 {
		f.data = nil
	}
	return f
}
