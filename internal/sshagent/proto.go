package sshagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/drove-dev/drove/internal/wire"
)

// Version is the protocol version the agent announces in its hello; a
// client refuses another.
const Version = 1

// The protocol: after the [Marker] line, both ends exchange frames on the
// session's stdin (client to agent) and stdout (agent to client). A frame
// is a 4-byte big-endian length n, then n bytes: a type byte and the body,
// a sequence of unsigned varints (signed for exit codes), single bytes and
// length-prefixed byte strings, as internal/wire encodes its messages.
// Every job has an id chosen by the client, unique while it runs; frames
// of different jobs interleave freely.
const (
	// tHello (agent): Version, the host's CPU count.
	tHello byte = iota + 1
	// tStart (client): id, grace in milliseconds, whether stdin follows
	// (1) or the command reads /dev/null (0), the script.
	tStart
	// tStdin (client): id, data; empty data closes the command's stdin.
	tStdin
	// tStop (client): id; the agent stops the job's process group
	// (SIGINT, SIGTERM, SIGKILL, the job's grace apart).
	tStop
	// tOut (agent): id, stream (1 stdout, 2 stderr), data.
	tOut
	// tExit (agent): id, exit code (-1 for a signal), signal number. The
	// last frame of a job: its output has all come before.
	tExit
)

// maxFrame bounds a frame: output and stdin travel in chunks of at most
// chunkSize, and a script is at most what a command line may be.
const (
	chunkSize = 32 << 10
	maxFrame  = 4 << 20
)

// errMalformed is wrapped by every error about a frame that does not
// decode.
var errMalformed = errors.New("sshagent: malformed frame")

// frame is one message; the fields its type does not use are zero.
type frame struct {
	typ      byte
	id       uint64
	version  uint64
	cpus     uint64
	grace    time.Duration // whole milliseconds
	hasStdin bool
	stream   byte
	data     []byte // the script of a tStart, the bytes of tStdin and tOut
	code     int64
	signal   uint64
}

// appendFrame appends f's encoding, length first, to b.
func appendFrame(b []byte, f *frame) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0, f.typ)
	switch f.typ {
	case tHello:
		b = binary.AppendUvarint(b, f.version)
		b = binary.AppendUvarint(b, f.cpus)
	case tStart:
		b = binary.AppendUvarint(b, f.id)
		b = binary.AppendUvarint(b, uint64(f.grace/time.Millisecond))
		b = append(b, boolByte(f.hasStdin))
		b = wire.AppendBytes(b, f.data)
	case tStdin:
		b = binary.AppendUvarint(b, f.id)
		b = wire.AppendBytes(b, f.data)
	case tStop:
		b = binary.AppendUvarint(b, f.id)
	case tOut:
		b = binary.AppendUvarint(b, f.id)
		b = append(b, f.stream)
		b = wire.AppendBytes(b, f.data)
	case tExit:
		b = binary.AppendUvarint(b, f.id)
		b = binary.AppendVarint(b, f.code)
		b = binary.AppendUvarint(b, f.signal)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// decodeFrame decodes the contents of one frame (type byte and body,
// without the length), with internal/wire's field reader.
func decodeFrame(p []byte) (frame, error) {
	if len(p) == 0 {
		return frame{}, fmt.Errorf("%w: empty", errMalformed)
	}
	d := wire.NewFields(p[1:])
	f := frame{typ: p[0]}
	switch f.typ {
	case tHello:
		f.version = d.Uvarint()
		f.cpus = d.Uvarint()
	case tStart:
		f.id = d.Uvarint()
		ms := d.Uvarint()
		if ms > uint64(24*time.Hour/time.Millisecond) {
			d.Fail("grace too long")
		}
		f.grace = time.Duration(ms) * time.Millisecond
		f.hasStdin = d.Bool()
		f.data = d.Bytes()
	case tStdin:
		f.id = d.Uvarint()
		f.data = d.Bytes()
	case tStop:
		f.id = d.Uvarint()
	case tOut:
		f.id = d.Uvarint()
		f.stream = d.Byte()
		if f.stream != 1 && f.stream != 2 {
			d.Fail("bad stream")
		}
		f.data = d.Bytes()
	case tExit:
		f.id = d.Uvarint()
		f.code = d.Varint()
		f.signal = d.Uvarint()
		if f.signal > 255 {
			d.Fail("bad signal")
		}
	default:
		return frame{}, fmt.Errorf("%w: unknown type %d", errMalformed, f.typ)
	}
	if err := d.Err(); err != nil {
		return frame{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return f, nil
}

// newReader reads the agent protocol's frames from r.
func newReader(r io.Reader) *wire.Reader { return wire.NewReader(r, maxFrame) }

// readFrame reads and decodes one frame.
func readFrame(r *wire.Reader) (frame, error) {
	p, err := r.ReadFrame()
	if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) {
		return frame{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if err != nil {
		return frame{}, err
	}
	return decodeFrame(p)
}
