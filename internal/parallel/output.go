package parallel

import (
	"bytes"
	"io"
	"sync"
)

// output serialises what jobs print. In the default (group) mode a job's
// output is printed in one piece when it ends, stdout then stderr, so jobs
// never interleave; with keep-order the pieces wait for every earlier
// sequence number; with line buffering whole lines are printed as they
// arrive. With both, as in GNU parallel, the lines of the oldest job still
// to print go out as they arrive and every later job's are held back until
// its turn, when they are printed at once and the job goes live.
type output struct {
	mu      sync.Mutex
	stdout  io.Writer
	stderr  io.Writer
	keep    bool
	next    int // keep-order: the next sequence number to print
	pending map[int]piece
	held    map[int][]chunk // keep-order line buffering: lines not yet printed
	onPrint func()          // called (locked) before printing, to clear a progress line
}

// chunk is whole lines of one stream of a job, held back by keep-order.
type chunk struct {
	toErr bool
	data  []byte
}

type piece struct {
	tag      string
	out, err []byte
	skipped  bool
}

func newOutput(stdout, stderr io.Writer, keep bool) *output {
	return &output{stdout: stdout, stderr: stderr, keep: keep, next: 1, pending: map[int]piece{}, held: map[int][]chunk{}}
}

// lines prints whole lines of job seq, or holds them back while keep-order
// waits for an earlier job. Called with o.mu held.
func (o *output) lines(seq int, toErr bool, data []byte) {
	if o.keep && seq != o.next {
		o.held[seq] = append(o.held[seq], chunk{toErr: toErr, data: bytes.Clone(data)})
		return
	}
	o.write(toErr, data)
}

func (o *output) write(toErr bool, data []byte) {
	if o.onPrint != nil {
		o.onPrint()
	}
	if toErr {
		o.stderr.Write(data)
	} else {
		o.stdout.Write(data)
	}
}

// linesDone records that line-buffered job seq has printed (or held) all
// its lines, so keep-order can move past it.
func (o *output) linesDone(seq int) {
	if !o.keep {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending[seq] = piece{}
	o.flushReady()
}

// done hands over the whole output of job seq.
func (o *output) done(seq int, tag string, out, errb []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.keep {
		o.print(piece{tag: tag, out: out, err: errb})
		return
	}
	o.pending[seq] = piece{tag: tag, out: out, err: errb}
	o.flushReady()
}

// skip records that job seq prints nothing (resumed past, or never run),
// so keep-order does not wait for it.
func (o *output) skip(seq int) {
	if !o.keep {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending[seq] = piece{skipped: true}
	o.flushReady()
}

func (o *output) flushReady() {
	for {
		o.printHeld(o.next) // the job whose turn it is goes live
		p, ok := o.pending[o.next]
		if !ok {
			return
		}
		delete(o.pending, o.next)
		o.next++
		if !p.skipped {
			o.print(p)
		}
	}
}

func (o *output) printHeld(seq int) {
	for _, c := range o.held[seq] {
		o.write(c.toErr, c.data)
	}
	delete(o.held, seq)
}

// flushAll prints whatever keep-order still holds back, in order: at the
// end of a run that stopped early some sequence numbers never come.
func (o *output) flushAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.pending) > 0 || len(o.held) > 0 {
		o.printHeld(o.next)
		if p, ok := o.pending[o.next]; ok && !p.skipped {
			o.print(p)
		}
		delete(o.pending, o.next)
		o.next++
	}
}

func (o *output) print(p piece) {
	if len(p.out) == 0 && len(p.err) == 0 {
		return
	}
	if o.onPrint != nil {
		o.onPrint()
	}
	if len(p.out) > 0 {
		o.stdout.Write(tagLines(p.tag, p.out))
	}
	if len(p.err) > 0 {
		o.stderr.Write(tagLines(p.tag, p.err))
	}
}

// tagLines prefixes every line of b with tag (GNU parallel's --tag: the
// arguments and a tab; drove exec: "host: "). An unterminated last line
// gets a newline, as GNU parallel's --tag does.
func tagLines(tag string, b []byte) []byte {
	if tag == "" {
		return b
	}
	var out bytes.Buffer
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b
		if i >= 0 {
			line, b = b[:i+1], b[i+1:]
		} else {
			b = nil
		}
		out.WriteString(tag)
		out.Write(line)
		if i < 0 {
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// lineWriter prints complete lines through o as they arrive, each prefixed
// with tag (drove run --line-buffer, drove exec's live output), and keeps a
// copy of the attempt's output (--results, drove exec's -o, -i and -b).
type lineWriter struct {
	o     *output
	seq   int
	toErr bool
	tag   string
	mu    sync.Mutex
	part  []byte
	copy  *bytes.Buffer // nil unless the output is also saved
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.copy != nil {
		l.copy.Write(p)
	}
	l.part = append(l.part, p...)
	if i := bytes.LastIndexByte(l.part, '\n'); i >= 0 {
		lines := l.part[:i+1]
		l.o.mu.Lock()
		l.o.lines(l.seq, l.toErr, tagLines(l.tag, lines))
		l.o.mu.Unlock()
		l.part = append(l.part[:0], l.part[i+1:]...)
	}
	return len(p), nil
}

// flush prints an unterminated last line.
func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) == 0 {
		return
	}
	l.o.mu.Lock()
	l.o.lines(l.seq, l.toErr, tagLines(l.tag, l.part))
	l.o.mu.Unlock()
	l.part = nil
}

// reset starts a new attempt: output of a failed attempt that is retried is
// not saved twice.
func (l *lineWriter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.copy != nil {
		l.copy.Reset()
	}
}

func (l *lineWriter) saved() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.copy == nil {
		return nil
	}
	return bytes.Clone(l.copy.Bytes())
}
