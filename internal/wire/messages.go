package wire

import "encoding/binary"

// Message is one protocol message.
type Message interface {
	Type() Type
	append(b []byte) []byte
	decode(d *Fields)
}

// Hello is the worker's first frame: who it is and what it can run.
type Hello struct {
	Version     uint64
	Fingerprint string // of the worker's function registry
	PID         uint64
}

// Setup tells a worker which computation it serves.
type Setup struct {
	Func  string // registered function name
	Setup string // registered setup hook name, or ""
}

// Ready answers Setup; Err is empty when the worker can take jobs.
type Ready struct {
	Err string
}

// Run starts a job on the worker.
type Run struct {
	ID    uint64
	Input []byte
}

// Cancel cancels the context of the running job ID.
type Cancel struct {
	ID uint64
}

// Skip tells the worker not to start job ID if it has not begun it: the
// executor took it back. The worker answers at once: a Result of kind
// ResultSkipped if the job never started (and never will), else [Begun];
// a job that has begun goes on, and its result comes as usual.
type Skip struct {
	ID uint64
}

// Begun answers a [Skip] of a job the worker had already begun (or
// finished): it goes on, and its Result comes, or came, as usual. The
// worker sends it after every frame of the jobs before it, so the job is
// the head of the executor's queue when it arrives.
type Begun struct {
	ID uint64
}

// Provisional carries an intermediate result of a running job.
type Provisional struct {
	ID     uint64
	Output []byte
}

// File is one chunk of a file a job sends back. Chunks of one file arrive in
// order; Offset 0 starts (and truncates) the file, Last ends it.
type File struct {
	ID     uint64
	Name   string
	Mode   uint32
	Offset uint64
	Data   []byte
	Last   bool
}

// FileDone answers the last chunk of a [File] (or a chunk that failed): the
// client has the file, or refused it for Err. A worker's SendFile returns
// after it.
type FileDone struct {
	ID   uint64
	Name string
	Err  string
}

// ResultKind says how a job ended on the worker.
type ResultKind uint8

// Result kinds.
const (
	ResultOK      ResultKind = iota // the function returned a nil error
	ResultError                     // the function returned an error
	ResultPanic                     // the function panicked; Stack is set
	ResultSkipped                   // cancelled before it started: never run
)

// Result is a finished job.
type Result struct {
	ID     uint64
	Kind   ResultKind
	Output []byte
	Err    string
	Stack  string
	Stdout []byte
	Stderr []byte
	Start  int64 // Unix nanoseconds
	End    int64
}

// Type implements Message.
func (*Hello) Type() Type { return THello }

// Type implements Message.
func (*Setup) Type() Type { return TSetup }

// Type implements Message.
func (*Ready) Type() Type { return TReady }

// Type implements Message.
func (*Run) Type() Type { return TRun }

// Type implements Message.
func (*Cancel) Type() Type { return TCancel }

// Type implements Message.
func (*Skip) Type() Type { return TSkip }

// Type implements Message.
func (*Begun) Type() Type { return TBegun }

// Type implements Message.
func (*Provisional) Type() Type { return TProvisional }

// Type implements Message.
func (*File) Type() Type { return TFile }

// Type implements Message.
func (*Result) Type() Type { return TResult }

// Type implements Message.
func (*FileDone) Type() Type { return TFileDone }

func (m *FileDone) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Name)
	return appendString(b, m.Err)
}

func (m *FileDone) decode(d *Fields) {
	m.ID = d.Uvarint()
	m.Name = d.Text()
	m.Err = d.Text()
}

func (m *Hello) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.Version)
	b = appendString(b, m.Fingerprint)
	return binary.AppendUvarint(b, m.PID)
}

func (m *Hello) decode(d *Fields) {
	m.Version = d.Uvarint()
	m.Fingerprint = d.Text()
	m.PID = d.Uvarint()
}

func (m *Setup) append(b []byte) []byte {
	b = appendString(b, m.Func)
	return appendString(b, m.Setup)
}

func (m *Setup) decode(d *Fields) {
	m.Func = d.Text()
	m.Setup = d.Text()
}

func (m *Ready) append(b []byte) []byte { return appendString(b, m.Err) }

func (m *Ready) decode(d *Fields) { m.Err = d.Text() }

func (m *Run) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	return AppendBytes(b, m.Input)
}

func (m *Run) decode(d *Fields) {
	m.ID = d.Uvarint()
	m.Input = d.Bytes()
}

func (m *Cancel) append(b []byte) []byte { return binary.AppendUvarint(b, m.ID) }

func (m *Cancel) decode(d *Fields) { m.ID = d.Uvarint() }

func (m *Skip) append(b []byte) []byte { return binary.AppendUvarint(b, m.ID) }

func (m *Skip) decode(d *Fields) { m.ID = d.Uvarint() }

func (m *Begun) append(b []byte) []byte { return binary.AppendUvarint(b, m.ID) }

func (m *Begun) decode(d *Fields) { m.ID = d.Uvarint() }

func (m *Provisional) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	return AppendBytes(b, m.Output)
}

func (m *Provisional) decode(d *Fields) {
	m.ID = d.Uvarint()
	m.Output = d.Bytes()
}

func (m *File) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Name)
	b = binary.AppendUvarint(b, uint64(m.Mode))
	b = binary.AppendUvarint(b, m.Offset)
	b = AppendBytes(b, m.Data)
	if m.Last {
		return append(b, 1)
	}
	return append(b, 0)
}

func (m *File) decode(d *Fields) {
	m.ID = d.Uvarint()
	m.Name = d.Text()
	mode := d.Uvarint()
	if mode > 1<<32-1 {
		d.Fail("file mode out of range")
	}
	m.Mode = uint32(mode)
	m.Offset = d.Uvarint()
	m.Data = d.Bytes()
	m.Last = d.Bool()
}

func (m *Result) append(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = append(b, byte(m.Kind))
	b = AppendBytes(b, m.Output)
	b = appendString(b, m.Err)
	b = appendString(b, m.Stack)
	b = AppendBytes(b, m.Stdout)
	b = AppendBytes(b, m.Stderr)
	b = binary.AppendVarint(b, m.Start)
	return binary.AppendVarint(b, m.End)
}

func (m *Result) decode(d *Fields) {
	m.ID = d.Uvarint()
	m.Kind = ResultKind(d.Byte())
	if m.Kind > ResultSkipped {
		d.Fail("unknown result kind")
	}
	m.Output = d.Bytes()
	m.Err = d.Text()
	m.Stack = d.Text()
	m.Stdout = d.Bytes()
	m.Stderr = d.Bytes()
	m.Start = d.Varint()
	m.End = d.Varint()
}
