package progress

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestLine(t *testing.T) {
	cases := []struct {
		erase Erase
		steps []string // "" clears
		want  string
	}{
		{Blanks, []string{"long line", "short"}, "\rlong line\rshort    "},
		{Blanks, []string{"abc", ""}, "\rabc\r   \r"},
		{Blanks, []string{"", "abc", "", ""}, "\rabc\r   \r"},
		{ANSI, []string{"long line", "short", ""}, "\rlong line\x1b[K\rshort\x1b[K\r\x1b[K"},
		{ANSI, []string{""}, ""},
	}
	for _, c := range cases {
		var b strings.Builder
		l := &Line{W: &b, Erase: c.erase}
		for _, s := range c.steps {
			if s == "" {
				l.Clear()
			} else {
				l.Draw(s)
			}
		}
		if b.String() != c.want {
			t.Errorf("erase %d, %q: wrote %q, want %q", c.erase, c.steps, b.String(), c.want)
		}
	}
}

// lockedBuf is a terminal that output and the line share under one lock.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

// TestLineEveryAndOutput: output printed while the line is redrawn, by a
// writer holding Lock that clears the line first, always starts a line of
// its own; stop waits for the drawing and clears the line.
func TestLineEveryAndOutput(t *testing.T) {
	var term lockedBuf
	l := &Line{W: &term.b, Lock: &term.mu}
	stop := l.Every(time.Millisecond, func() string { return "status" })
	for range 200 {
		term.mu.Lock()
		l.Clear()
		term.b.WriteString("out\n")
		term.mu.Unlock()
	}
	stop()
	stop() // a second stop does nothing
	got := term.b.String()
	for _, piece := range strings.Split(got, "\n") {
		if strings.Contains(piece, "status") && strings.Contains(piece, "out") {
			t.Fatalf("output mixed into the status line: %q", piece)
		}
	}
	if strings.Count(got, "out\n") != 200 {
		t.Errorf("output lost: %q", got)
	}
	if !strings.HasSuffix(got, "out\n") && !strings.HasSuffix(got, "      \r") {
		t.Errorf("line not cleared at stop: %q", got[max(0, len(got)-40):])
	}
}

// TestLineEvery: the line is redrawn once per interval, and stop ends the
// redrawing and clears it (fake time: testing/synctest).
func TestLineEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var term lockedBuf
		l := &Line{W: &term.b, Lock: &term.mu}
		n := 0
		stop := l.Every(time.Second, func() string { n++; return fmt.Sprint("draw ", n) })
		time.Sleep(3500 * time.Millisecond)
		stop()
		time.Sleep(5 * time.Second) // nothing more is drawn after stop
		if want := "\rdraw 1\rdraw 2\rdraw 3\r      \r"; term.b.String() != want {
			t.Errorf("wrote %q, want %q", term.b.String(), want)
		}
	})
}
