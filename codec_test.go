package drove

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type plain struct {
	A int
	B string
	C []float64
	D map[string][]byte
	E *plain
	T time.Time
}

type withIface struct {
	V any
}

// Every message from the cached codec decodes on its own, with a fresh
// decoder, to the value encoded, whatever came before it.
func TestGobCodecSelfContained(t *testing.T) {
	var c gobCodec[plain]
	rapid.Check(t, func(rt *rapid.T) {
		v := plain{
			A: rapid.Int().Draw(rt, "a"),
			B: rapid.String().Draw(rt, "b"),
			C: rapid.SliceOf(rapid.Float64()).Draw(rt, "c"),
			D: rapid.MapOf(rapid.String(), rapid.SliceOf(rapid.Byte())).Draw(rt, "d"),
		}
		if rapid.Bool().Draw(rt, "nested") {
			v.E = &plain{A: 1, B: "inner"}
		}
		b, err := c.encode(v)
		if err != nil {
			rt.Fatal(err)
		}
		var got plain
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&got); err != nil {
			rt.Fatalf("decode: %v", err)
		}
		want, _ := gobDecode[plain](mustEncode(rt, v))
		if !reflect.DeepEqual(got, want) {
			rt.Fatalf("got %+v, want %+v", got, want)
		}
	})
	if !c.fast {
		t.Error("a type without interfaces did not take the cached path")
	}
}

func mustEncode[T any](t interface{ Fatal(...any) }, v T) []byte {
	b, err := gobEncode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGobCodecFallsBack(t *testing.T) {
	gob.Register(time.Duration(0))
	var c gobCodec[withIface]
	for _, v := range []withIface{{V: 1}, {V: "s"}, {V: time.Second}, {V: 2}} {
		b, err := c.encode(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := gobDecode[withIface](b)
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Fatalf("%+v: got %+v, %v", v, got, err)
		}
	}
	if c.fast {
		t.Error("a type with an interface took the cached path")
	}
	var p gobCodec[*plain] // the zero value, a nil pointer, does not encode
	if b, err := p.encode(&plain{A: 7}); err != nil {
		t.Fatal(err)
	} else if got, err := gobDecode[*plain](b); err != nil || got.A != 7 {
		t.Fatalf("pointer: %+v %v", got, err)
	}
	var f gobCodec[func()]
	if _, err := f.encode(func() {}); err == nil {
		t.Error("a func encoded")
	}
}
