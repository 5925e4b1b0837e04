package workqueue

import (
	"bytes"
	"io"
	"sync"
)

// output serialises what jobs print. In the default (group) mode a job's
// output is printed in one piece when it ends, stdout then stderr, so jobs
// never interleave; with keep-order the pieces wait for every earlier
// sequence number; with line buffering whole lines are printed as they
// arrive.
type output struct {
	mu      sync.Mutex
	stdout  io.Writer
	stderr  io.Writer
	keep    bool
	next    int // keep-order: the next sequence number to print
	pending map[int]piece
	onPrint func() // called (locked) before printing, to clear a progress line
}

type piece struct {
	tag      string
	out, err []byte
	skipped  bool
}

func newOutput(stdout, stderr io.Writer, keep bool) *output {
	return &output{stdout: stdout, stderr: stderr, keep: keep, next: 1, pending: map[int]piece{}}
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

// flushAll prints whatever keep-order still holds back, in order: at the
// end of a run that stopped early some sequence numbers never come.
func (o *output) flushAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.pending) > 0 {
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

// tagLines prefixes every line of b with tag (which ends in a tab). An
// unterminated last line gets a newline, as GNU parallel's --tag does.
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

// lineWriter prints complete lines through o as they arrive (--line-buffer)
// and keeps a copy of the attempt's output for --results.
type lineWriter struct {
	o    *output
	w    *io.Writer // o.stdout or o.stderr, read under o.mu
	tag  string
	mu   sync.Mutex
	part []byte
	copy *bytes.Buffer // nil unless the output is also saved
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
		if l.o.onPrint != nil {
			l.o.onPrint()
		}
		(*l.w).Write(tagLines(l.tag, lines))
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
	if l.o.onPrint != nil {
		l.o.onPrint()
	}
	(*l.w).Write(tagLines(l.tag, l.part))
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
