package nodeproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
)

// MaxSpoolFrame bounds one event in a spool file.
const MaxSpoolFrame = 256 << 20

// ErrSpool is wrapped by every error about a spool file that does not
// decode: a frame cut short (the node died while writing it), a length over
// the limit, or bytes that are not an event.
var ErrSpool = errors.New("drove: malformed event spool")

// AppendEvent appends ev to b as one spool frame: a 4-byte big-endian length
// and the event's protobuf encoding.
func AppendEvent(b []byte, ev *drovev1.Event) ([]byte, error) {
	m, err := proto.Marshal(ev)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
	return append(b, m...), nil
}

// ReadEvents decodes spool frames from r until EOF. On a bad frame it
// returns the events before it and an error wrapping ErrSpool.
func ReadEvents(r io.Reader) ([]*drovev1.Event, error) {
	br := bufio.NewReader(r)
	var evs []*drovev1.Event
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return evs, nil
			}
			return evs, fmt.Errorf("%w: truncated frame header", ErrSpool)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxSpoolFrame {
			return evs, fmt.Errorf("%w: frame of %d bytes over the limit of %d", ErrSpool, n, MaxSpoolFrame)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return evs, fmt.Errorf("%w: truncated frame of %d bytes", ErrSpool, n)
		}
		ev := &drovev1.Event{}
		if err := proto.Unmarshal(buf, ev); err != nil {
			return evs, fmt.Errorf("%w: %w", ErrSpool, err)
		}
		evs = append(evs, ev)
	}
}
