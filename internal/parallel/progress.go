package parallel

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/progress"
	"github.com/drove-dev/drove/internal/sched"
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

// progressHeader prints --progress's table of hosts and slots once the
// hosts are connected, as GNU parallel does before its status line.
func (e *engine) progressHeader() {
	var b strings.Builder
	b.WriteString("Computers / Max jobs to run\n")
	for i, n := range e.sched.Stats().Nodes {
		fmt.Fprintf(&b, "%d:%s / %d\n", i+1, hostLabel(n.Name), n.Slots)
	}
	b.WriteString("\nComputer:jobs running/jobs completed/%of started jobs/Average seconds to complete\n")
	e.out.mu.Lock()
	io.WriteString(e.cfg.Progress, b.String())
	e.out.mu.Unlock()
}

// hostLabel names a host in --progress: GNU parallel calls this machine
// "local".
func hostLabel(node string) string {
	if node == hostset.Local {
		return "local"
	}
	return node
}

// hostsText is --progress's status: for every host, GNU parallel's
// "host:running/completed/share of the started jobs/average seconds".
func hostsText(nodes []sched.NodeStats) string {
	started := 0
	for _, n := range nodes {
		started += n.Busy + n.Jobs
	}
	var b strings.Builder
	for _, n := range nodes {
		pct := 0
		if started > 0 {
			pct = (n.Busy + n.Jobs) * 100 / started
		}
		avg := 0.0
		if n.Jobs > 0 {
			avg = (n.Time / time.Duration(n.Jobs)).Seconds()
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d/%d/%d%%/%.1fs", hostLabel(n.Name), n.Busy, n.Jobs, pct, avg)
	}
	return b.String()
}

func (e *engine) progressText(slots int) string {
	st := e.sched.Stats()
	if e.cfg.HostProgress {
		return hostsText(st.Nodes)
	}
	running := st.Running
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
