package drove

import (
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/drove-dev/drove/internal/fleet"
	"github.com/drove-dev/drove/internal/sched"
)

// Stats is a snapshot of a cluster: one line per node, and totals.
type Stats struct {
	Nodes        []NodeStats
	Pending      int           // jobs waiting for a slot
	Running      int           // jobs running
	TotalJobTime time.Duration // summed over nodes
	WallTime     time.Duration // since the cluster started
}

// NodeStats is one node's part of Stats.
type NodeStats struct {
	Name     string
	CPUs     int
	Busy     int           // jobs running now
	Jobs     int           // jobs done
	NodeTime time.Duration // total time of the jobs done
	Sent     int64         // bytes sent to the node
	Received int64         // bytes received from it
	Lost     bool          // the node failed, or could not be reached
}

// neverJoined returns a lost row for each member of f (nil for none) that
// has not joined the scheduler: one that could not be reached, which the
// scheduler's stats do not have.
func neverJoined(f *fleet.Fleet) []NodeStats {
	if f == nil {
		return nil
	}
	var out []NodeStats
	for _, st := range f.Members() {
		if st.Name == "" && !st.Up {
			out = append(out, NodeStats{Name: st.Key, Lost: true})
		}
	}
	return out
}

func statsOf(s sched.Stats) Stats {
	st := Stats{Pending: s.Pending, Running: s.Running, WallTime: time.Since(s.Begin)}
	for _, n := range s.Nodes {
		st.Nodes = append(st.Nodes, NodeStats{
			Name: n.Name, CPUs: n.Slots, Busy: n.Busy, Jobs: n.Jobs, NodeTime: n.Time,
			Sent: n.Sent, Received: n.Received, Lost: n.Down,
		})
		st.TotalJobTime += n.Time
	}
	return st
}

// Print writes the stats as dispy's print_status does: a table of nodes
// (whole names, a lost node marked "(lost)"),
// then the pending jobs (if any) and the totals with the speedup, total job
// time over wall time.
func (s Stats) Print(w io.Writer) error {
	ew := &errWriter{w: w}
	// The node column is as wide as the longest name: names cut short
	// could make two nodes look alike.
	names := make([]string, len(s.Nodes))
	width := 15
	for i, n := range s.Nodes {
		names[i] = n.Name
		if n.Lost {
			names[i] += " (lost)"
		}
		width = max(width, utf8.RuneCountInString(names[i]))
	}
	heading := fmt.Sprintf(" %*s | %5s | %7s | %8s | %13s | %7s | %7s", width, "Node", "CPUs", "Jobs", "Sec/Job", "Node Time Sec", "Sent", "Rcvd")
	ew.printf("\n%s\n", heading)
	for range len(heading) {
		ew.printf("-")
	}
	ew.printf("\n")
	for i, n := range s.Nodes {
		perJob := 0.0
		if n.Jobs > 0 {
			perJob = n.NodeTime.Seconds() / float64(n.Jobs)
		}
		ew.printf(" %*s | %5d | %7d | %8.1f | %13.1f | %7s | %7s\n",
			width, names[i], n.CPUs, n.Jobs, perJob, n.NodeTime.Seconds(), humanSize(n.Sent), humanSize(n.Received))
	}
	ew.printf("\n")
	if s.Pending > 0 {
		ew.printf("Jobs pending: %d\n", s.Pending)
	}
	speedup := 0.0
	if s.WallTime > 0 {
		speedup = s.TotalJobTime.Seconds() / s.WallTime.Seconds()
	}
	ew.printf("Total job time: %.3f sec, wall time: %.3f sec, speedup: %.3f\n\n",
		s.TotalJobTime.Seconds(), s.WallTime.Seconds(), speedup)
	return ew.err
}

// humanSize formats a byte count as dispy does: "%d B" up to 1024, then one
// decimal with K, M, G or T.
func humanSize(n int64) string {
	f := float64(n)
	switch {
	case f > 1<<40:
		return fmt.Sprintf("%.1f T", f/(1<<40))
	case f > 1<<30:
		return fmt.Sprintf("%.1f G", f/(1<<30))
	case f > 1<<20:
		return fmt.Sprintf("%.1f M", f/(1<<20))
	case f > 1<<10:
		return fmt.Sprintf("%.1f K", f/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
