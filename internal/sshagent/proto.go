package sshagent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
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
		b = appendBytes(b, f.data)
	case tStdin:
		b = binary.AppendUvarint(b, f.id)
		b = appendBytes(b, f.data)
	case tStop:
		b = binary.AppendUvarint(b, f.id)
	case tOut:
		b = binary.AppendUvarint(b, f.id)
		b = append(b, f.stream)
		b = appendBytes(b, f.data)
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

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decodeFrame decodes the contents of one frame (type byte and body,
// without the length). The data it returns aliases p.
func decodeFrame(p []byte) (frame, error) {
	if len(p) == 0 {
		return frame{}, fmt.Errorf("%w: empty", errMalformed)
	}
	d := decoder{b: p[1:]}
	f := frame{typ: p[0]}
	switch f.typ {
	case tHello:
		f.version = d.uvarint()
		f.cpus = d.uvarint()
	case tStart:
		f.id = d.uvarint()
		ms := d.uvarint()
		if ms > uint64(24*time.Hour/time.Millisecond) {
			d.fail("grace too long")
		}
		f.grace = time.Duration(ms) * time.Millisecond
		switch d.byte() {
		case 0:
		case 1:
			f.hasStdin = true
		default:
			d.fail("bad stdin flag")
		}
		f.data = d.bytes()
	case tStdin:
		f.id = d.uvarint()
		f.data = d.bytes()
	case tStop:
		f.id = d.uvarint()
	case tOut:
		f.id = d.uvarint()
		f.stream = d.byte()
		if f.stream != 1 && f.stream != 2 {
			d.fail("bad stream")
		}
		f.data = d.bytes()
	case tExit:
		f.id = d.uvarint()
		f.code = d.varint()
		f.signal = d.uvarint()
		if f.signal > 255 {
			d.fail("bad signal")
		}
	default:
		return frame{}, fmt.Errorf("%w: unknown type %d", errMalformed, f.typ)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return frame{}, d.err
	}
	return f, nil
}

// decoder reads a body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMalformed, msg)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("string longer than the frame")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// readFrame reads one frame into buf (grown as needed) and decodes it; the
// frame's data aliases the returned buffer, which the next call reuses.
func readFrame(r *bufio.Reader, buf []byte) (frame, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return frame{}, buf, fmt.Errorf("%w: frame of %d bytes", errMalformed, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, buf, err
	}
	f, err := decodeFrame(buf)
	return f, buf, err
}
