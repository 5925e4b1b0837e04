package workqueue

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

func newBuf() *bytes.Buffer { return &bytes.Buffer{} }

// progress redraws a status line on cfg.Progress until the returned channel
// is called: GNU parallel's --eta ("ETA: 12s Left: 5 AVG: 0.50s  host:…")
// or --bar (a percentage and a bar).
func (e *engine) progress(slots int) (stopProgress func()) {
	stop := make(chan struct{})
	exited := make(chan struct{})
	every := e.cfg.ProgressEvery
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	// Jobs' output clears the line first, so it is never printed into it.
	e.out.onPrint = e.clearProgressLocked
	go func() {
		defer close(exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				e.drawProgress(slots)
			}
		}
	}()
	return func() {
		close(stop)
		<-exited
		e.clearProgress()
	}
}

func (e *engine) drawProgress(slots int) {
	running := e.sched.Stats().Running
	e.mu.Lock()
	done, failed, total := e.done, e.failed, e.total-e.sum.Skipped
	var avg time.Duration
	if done > 0 {
		avg = e.runtimes / time.Duration(done)
	}
	elapsed := time.Since(e.started)
	e.mu.Unlock()
	left := total - done
	if left < 0 {
		left = 0
	}
	var eta time.Duration
	if done > 0 {
		eta = elapsed * time.Duration(left) / time.Duration(done)
	}
	var line string
	if e.cfg.Bar {
		pct := 0
		if total > 0 {
			pct = done * 100 / total
		}
		width := 30
		fill := pct * width / 100
		line = fmt.Sprintf("%3d%% %d:%d=%s %s%s", pct, done, left, eta.Round(time.Second),
			strings.Repeat("#", fill), strings.Repeat(" ", width-fill))
	} else {
		line = fmt.Sprintf("ETA: %s Left: %d AVG: %.2fs  running:%d/%d done:%d failed:%d",
			eta.Round(time.Second), left, avg.Seconds(), running, slots, done, failed)
	}
	e.out.mu.Lock()
	defer e.out.mu.Unlock()
	e.progMu.Lock()
	defer e.progMu.Unlock()
	pad := ""
	if n := e.progLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(e.cfg.Progress, "\r%s%s", line, pad)
	e.progLen = len(line)
}

// clearProgressLocked wipes the status line; the caller holds e.out.mu.
func (e *engine) clearProgressLocked() {
	e.progMu.Lock()
	defer e.progMu.Unlock()
	if e.progLen > 0 {
		fmt.Fprintf(e.cfg.Progress, "\r%s\r", strings.Repeat(" ", e.progLen))
		e.progLen = 0
	}
}

func (e *engine) clearProgress() {
	e.out.mu.Lock()
	defer e.out.mu.Unlock()
	e.clearProgressLocked()
}
