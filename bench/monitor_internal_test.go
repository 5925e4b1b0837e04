package bench

import (
	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/sched"
)

// recordOne records a job that ran and finished.
func recordOne(r *monitor.Recorder) {
	t := &sched.Task{}
	r.Observe(sched.TaskEvent{Task: t, State: sched.Running, Node: "n"}, "")
	r.Observe(sched.TaskEvent{Task: t, State: sched.Finished, Node: "n"}, "")
}
