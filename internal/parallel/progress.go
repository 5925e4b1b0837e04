package parallel

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/drove-dev/drove/internal/progress"
)

func newBuf() *bytes.Buffer { return &bytes.Buffer{} }

// progress redraws a status line on cfg.Progress until the returned func
// is called: GNU parallel's --eta ("ETA: 12s Left: 5 AVG: 0.50s  host:…")
// or --bar (a percentage and a bar).
func (e *engine) progress(slots int) (stopProgress func()) {
	every := e.cfg.ProgressEvery
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	// Jobs' output clears the line first, so it is never printed into it.
	line := &progress.Line{W: e.cfg.Progress, Lock: &e.out.mu}
	e.out.onPrint = line.Clear
	return line.Every(every, func() string { return e.progressText(slots) })
}

func (e *engine) progressText(slots int) string {
	running := e.sched.Stats().Running
	e.mu.Lock()
	done, failed, total := e.done, e.failed, e.total-e.sum.Skipped
	var avg time.Duration
	if done > 0 {
		avg = e.runtimes / time.Duration(done)
	}
	elapsed := time.Since(e.started)
	e.mu.Unlock()
	left := max(total-done, 0)
	var eta time.Duration
	if done > 0 {
		eta = elapsed * time.Duration(left) / time.Duration(done)
	}
	if e.cfg.Bar {
		pct := 0
		if total > 0 {
			pct = done * 100 / total
		}
		width := 30
		fill := pct * width / 100
		return fmt.Sprintf("%3d%% %d:%d=%s %s%s", pct, done, left, eta.Round(time.Second),
			strings.Repeat("#", fill), strings.Repeat(" ", width-fill))
	}
	return fmt.Sprintf("ETA: %s Left: %d AVG: %.2fs  running:%d/%d done:%d failed:%d",
		eta.Round(time.Second), left, avg.Seconds(), running, slots, done, failed)
}
