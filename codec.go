package drove

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"sync"
)

// gobCodec encodes values of one type as self-contained gob messages: the
// type's descriptor, then the value. A fresh gob.Encoder per message
// rebuilds the descriptor every time; for types whose descriptor cannot
// change between messages (no interface inside, so no concrete type can be
// introduced mid-stream), the descriptor is computed once and primed
// encoders are reused, which halves the client's allocations per job. Other
// types take the plain path. Either way a worker decodes each message on
// its own.
type gobCodec[T any] struct {
	once   sync.Once
	fast   bool
	prefix []byte    // the descriptor messages
	pool   sync.Pool // of *primed
}

type primed struct {
	buf bytes.Buffer
	enc *gob.Encoder
}

func (c *gobCodec[T]) init() {
	if hasInterface(reflect.TypeFor[T](), map[reflect.Type]bool{}) {
		return
	}
	p, err := c.prime()
	if err != nil {
		return
	}
	// The primed encoder has sent the descriptor and one zero value; a
	// second zero value shows how long a value message alone is.
	first := bytes.Clone(p.buf.Bytes())
	p.buf.Reset()
	var zero T
	if err := p.enc.Encode(&zero); err != nil || p.buf.Len() > len(first) || !bytes.HasSuffix(first, p.buf.Bytes()) {
		return
	}
	c.prefix = first[:len(first)-p.buf.Len()]
	c.fast = true
}

func (c *gobCodec[T]) prime() (*primed, error) {
	p := &primed{}
	p.enc = gob.NewEncoder(&p.buf)
	var zero T
	if err := p.enc.Encode(&zero); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *gobCodec[T]) encode(v T) ([]byte, error) {
	c.once.Do(c.init)
	if !c.fast {
		return gobEncode(v)
	}
	p, _ := c.pool.Get().(*primed)
	if p == nil {
		var err error
		if p, err = c.prime(); err != nil {
			return gobEncode(v)
		}
	}
	p.buf.Reset()
	if err := p.enc.Encode(&v); err != nil {
		// An encoder that failed may be in any state: drop it.
		return nil, err
	}
	out := make([]byte, 0, len(c.prefix)+p.buf.Len())
	out = append(append(out, c.prefix...), p.buf.Bytes()...)
	if p.buf.Cap() <= 64<<10 {
		c.pool.Put(p)
	}
	return out, nil
}

// hasInterface reports whether values of t can hold an interface, whose
// concrete types gob describes on first use in a stream.
func hasInterface(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	if t.Implements(reflect.TypeFor[gob.GobEncoder]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[gob.GobEncoder]()) {
		return false // encodes itself as bytes
	}
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return hasInterface(t.Elem(), seen)
	case reflect.Map:
		return hasInterface(t.Key(), seen) || hasInterface(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && hasInterface(f.Type, seen) {
				return true
			}
		}
	}
	return false
}
