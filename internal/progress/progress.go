// Package progress draws status lines on a terminal: a Line redrawn in
// place that output printed meanwhile never mixes with, and a Bar counting
// done out of a total on one.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar is a progress bar counting done out of a total. A Bar whose writer is
// not a terminal draws nothing. Its methods are safe for concurrent use.
type Bar struct {
	mu    sync.Mutex
	line  Line
	on    bool
	total int
	done  int
	label string
	start time.Time
	last  time.Time
}

// New returns a bar drawing on w when w is a terminal.
func New(w io.Writer, total int, label string) *Bar {
	f, ok := w.(*os.File)
	on := ok && term.IsTerminal(int(f.Fd()))
	return &Bar{line: Line{W: w, Erase: ANSI}, on: on, total: total, label: label, start: time.Now()}
}

// SetTotal changes the total, for work whose size is learnt as it goes.
func (b *Bar) SetTotal(n int) {
	b.mu.Lock()
	b.total = n
	b.mu.Unlock()
}

// Add counts n more done and redraws, at most every 50ms.
func (b *Bar) Add(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if !b.on {
		return
	}
	now := time.Now()
	if b.done < b.total && now.Sub(b.last) < 50*time.Millisecond {
		return
	}
	b.last = now
	b.drawLocked(now)
}

func (b *Bar) drawLocked(now time.Time) {
	const width = 30
	frac := 1.0
	if b.total > 0 {
		frac = float64(b.done) / float64(b.total)
	}
	fill := int(frac * width)
	eta := ""
	if b.done > 0 && b.done < b.total {
		left := time.Duration(float64(now.Sub(b.start)) / float64(b.done) * float64(b.total-b.done))
		eta = " ETA " + left.Round(time.Second).String()
	}
	b.line.Draw(fmt.Sprintf("[%s%s] %d/%d %s%s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), b.done, b.total, b.label, eta))
}

// Finish clears the bar's line.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.line.Clear()
}
