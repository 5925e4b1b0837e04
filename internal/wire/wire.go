// Package wire is the framed protocol between an executor and a worker
// process: length-prefixed frames carrying small, hand-encoded messages.
//
// A frame is a 4-byte big-endian length n, then n bytes: one type byte and the
// message body. Bodies are sequences of unsigned varints and length-prefixed
// byte strings. Every decoder checks every length against what is left, so a
// truncated, oversized or otherwise malformed frame yields an error wrapping
// [ErrMalformed] or [ErrTooLarge], never a panic.
//
// The protocol is versioned by [Version]; the worker announces it, with its
// function registry's fingerprint, in its first frame ([Hello]).
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version. A peer speaking another version is refused.
// Version 2 added [FileDone]: a worker waits for it after sending a file.
// Version 3 added [Skip] and its answer [Begun]: a run taken back is
// skipped only if it has not begun.
const Version = 3

// DefaultMaxFrame is the largest frame a [Reader] accepts unless told otherwise.
const DefaultMaxFrame = 256 << 20

// Errors returned by the decoders.
var (
	// ErrMalformed is wrapped by every error about a frame that does not decode.
	ErrMalformed = errors.New("wire: malformed frame")
	// ErrTooLarge is wrapped by the error for a frame longer than the limit.
	ErrTooLarge = errors.New("wire: frame too large")
)

// Type identifies a message.
type Type uint8

// Message types.
const (
	THello Type = iota + 1
	TSetup
	TReady
	TRun
	TCancel
	TProvisional
	TFile
	TResult
	TFileDone
	TSkip
	TBegun
)

func (t Type) String() string {
	switch t {
	case THello:
		return "hello"
	case TSetup:
		return "setup"
	case TReady:
		return "ready"
	case TRun:
		return "run"
	case TCancel:
		return "cancel"
	case TProvisional:
		return "provisional"
	case TFile:
		return "file"
	case TResult:
		return "result"
	case TFileDone:
		return "file-done"
	case TSkip:
		return "skip"
	case TBegun:
		return "begun"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Writer writes frames to a buffered stream. It is not safe for concurrent
// use; callers serialise writes themselves.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write appends one frame holding m to the buffer. Call [Writer.Flush] to
// send it.
func (w *Writer) Write(m Message) error {
	b := w.buf[:0]
	b = append(b, 0, 0, 0, 0, byte(m.Type()))
	b = m.append(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	w.buf = b
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not pin a large argument's buffer forever
	}
	_, err := w.w.Write(b)
	return err
}

// Flush sends buffered frames.
func (w *Writer) Flush() error { return w.w.Flush() }

// Send writes m and flushes.
func (w *Writer) Send(m Message) error {
	if err := w.Write(m); err != nil {
		return err
	}
	return w.w.Flush()
}

// Reader reads frames from a stream.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader on r that refuses frames longer than max bytes
// (0 means [DefaultMaxFrame]).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Buffered reports whether a whole frame is already buffered, so that the
// next Read will not block: a caller can batch work until it would.
func (r *Reader) Buffered() bool {
	n := r.r.Buffered()
	if n < 4 {
		return false
	}
	hdr, _ := r.r.Peek(4) // buffered: no read
	return uint64(n-4) >= uint64(binary.BigEndian.Uint32(hdr))
}

// Read reads and decodes the next frame. At a clean end of stream it returns
// io.EOF; a stream cut inside a frame gives io.ErrUnexpectedEOF. The returned
// message may alias the reader's buffer only through fields documented as
// such; all byte slices in it are freshly allocated.
func (r *Reader) Read() (Message, error) {
	b, err := r.ReadFrame()
	if err != nil {
		return nil, err
	}
	m, err := Decode(b)
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	return m, err
}

// ReadFrame reads the next frame and returns its contents (type byte and
// body) undecoded, for a protocol framed as this one with messages of its
// own (decode them with [NewFields]). The bytes are the reader's buffer,
// valid until the next read. End of stream is as for [Reader.Read].
func (r *Reader) ReadFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if uint64(n) > uint64(r.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, r.max)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// Decode decodes one frame body (type byte and message). Byte slices in the
// result are copies, so b may be reused.
func Decode(b []byte) (Message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	var m Message
	switch Type(b[0]) {
	case THello:
		m = new(Hello)
	case TSetup:
		m = new(Setup)
	case TReady:
		m = new(Ready)
	case TRun:
		m = new(Run)
	case TCancel:
		m = new(Cancel)
	case TProvisional:
		m = new(Provisional)
	case TFile:
		m = new(File)
	case TResult:
		m = new(Result)
	case TFileDone:
		m = new(FileDone)
	case TSkip:
		m = new(Skip)
	case TBegun:
		m = new(Begun)
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, b[0])
	}
	d := Fields{b: b[1:]}
	m.decode(&d)
	if d.err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, Type(b[0]), d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, Type(b[0]), len(d.b))
	}
	return m, nil
}

// Fields reads the fields of a frame body: varints, bytes, strings,
// remembering the first error so that decoders stay linear. Message
// decoders here use it, and so does any other protocol framed the same way
// (internal/sshagent's).
type Fields struct {
	b   []byte
	err error
}

// NewFields reads the fields of body.
func NewFields(body []byte) *Fields { return &Fields{b: body} }

// Err returns the first error met, or, if every field decoded, an error
// for bytes left over; nil when the body was read exactly.
func (d *Fields) Err() error {
	if d.err == nil && len(d.b) > 0 {
		return fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// Uvarint reads an unsigned varint.
func (d *Fields) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a signed varint.
func (d *Fields) Varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Bytes reads a length-prefixed byte string, copied (nil when empty).
func (d *Fields) Bytes() []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b)
	d.b = d.b[n:]
	return v
}

// Text reads a length-prefixed string.
func (d *Fields) Text() string {
	n := d.Uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("field of %d bytes, %d left", n, len(d.b))
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

// Byte reads one byte.
func (d *Fields) Byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errors.New("short body")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// AppendBytes appends v as a length-prefixed field.
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Fail records msg as the error, unless one was met already.
func (d *Fields) Fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
}

// Bool reads a byte that must be 0 or 1.
func (d *Fields) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail("bad bool")
	return false
}

// AppendStrings encodes a list of strings (a program's arguments).
func AppendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// ParseStrings decodes what AppendStrings encoded.
func ParseStrings(b []byte) ([]string, error) {
	d := Fields{b: b}
	n := d.Uvarint()
	if n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d strings in %d bytes", ErrMalformed, n, len(b))
	}
	ss := make([]string, 0, n)
	for range n {
		ss = append(ss, d.Text())
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return ss, nil
}

// AppendExitCode encodes a program's exit code (a program job's output).
func AppendExitCode(b []byte, code int) []byte { return binary.AppendVarint(b, int64(code)) }

// ParseExitCode decodes what AppendExitCode encoded.
func ParseExitCode(b []byte) (int, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("%w: bad exit code", ErrMalformed)
	}
	return int(v), nil
}
