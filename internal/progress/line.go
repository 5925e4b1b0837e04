package progress

import (
	"io"
	"strings"
	"sync"
	"time"
)

// Erase is how a Line wipes what it drew before.
type Erase int

const (
	// Blanks overwrites the old line with spaces (GNU parallel's way;
	// needs nothing of the terminal).
	Blanks Erase = iota
	// ANSI uses the "erase to end of line" control sequence.
	ANSI
)

// Line is a status line redrawn in place at the bottom of a terminal: each
// Draw returns to the start of the line and replaces it. Output printed to
// the same terminal must not land inside the line: its writer holds Lock
// and calls Clear before printing, and the next Draw draws the line again
// below what it printed. The zero Erase is Blanks. Its methods are safe for
// concurrent use.
type Line struct {
	W     io.Writer
	Erase Erase
	// Lock, if set, is held while the line is drawn: the lock of the
	// writers that print to the same terminal.
	Lock sync.Locker

	mu sync.Mutex
	n  int  // length of the line on screen
	on bool // something is drawn
}

// Draw replaces the line with s.
func (l *Line) Draw(s string) {
	if l.Lock != nil {
		l.Lock.Lock()
		defer l.Lock.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteByte('\r')
	b.WriteString(s)
	switch l.Erase {
	case ANSI:
		b.WriteString("\x1b[K")
	default:
		if pad := l.n - len(s); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
	}
	_, _ = io.WriteString(l.W, b.String())
	l.n, l.on = len(s), true
}

// Clear wipes the line, leaving the cursor at its start, if anything is
// drawn. It does not take Lock: a writer calls it holding Lock, before it
// prints.
func (l *Line) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.on {
		return
	}
	switch l.Erase {
	case ANSI:
		_, _ = io.WriteString(l.W, "\r\x1b[K")
	default:
		_, _ = io.WriteString(l.W, "\r"+strings.Repeat(" ", l.n)+"\r")
	}
	l.n, l.on = 0, false
}

// Every draws text() every d until stop is called; stop waits for the
// drawing to end and clears the line (holding Lock).
func (l *Line) Every(d time.Duration, text func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.Draw(text())
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			if l.Lock != nil {
				l.Lock.Lock()
				defer l.Lock.Unlock()
			}
			l.Clear()
		})
	}
}
