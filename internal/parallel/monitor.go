package parallel

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drove-dev/drove/internal/monitor"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sched"
)

// startMonitor serves the run's web monitor at Config.Monitor: the hosts,
// the counts and the latest commands with their hosts and exit codes.
func (e *engine) startMonitor() error {
	if e.cfg.Monitor == "" {
		return nil
	}
	e.rec.Describe = describeCommand
	var extra map[string]http.Handler
	if e.metricsReg != nil {
		extra = map[string]http.Handler{"GET /metrics": promhttp.HandlerFor(e.metricsReg, promhttp.HandlerOpts{})}
	}
	srv, err := monitor.Listen(monitor.ServerConfig{
		Addr:    e.cfg.Monitor,
		Secret:  os.Getenv("DROVE_SECRET"),
		Monitor: monitor.Config{Source: runSource{e}},
		Logger:  e.log,
		Extra:   extra,
	})
	if err != nil {
		return err
	}
	e.mon = srv
	if e.cfg.OnMonitor != nil {
		e.cfg.OnMonitor(srv.Addr().String())
	}
	return nil
}

// describeCommand adds a job's command line and exit code.
func describeCommand(t *sched.Task, j *monitor.Job) {
	jb, ok := t.Ref.(*job)
	if !ok {
		return
	}
	j.Command = jb.lastCommand()
	if j.Node == "" {
		j.Node = hostOf(t)
	}
	switch t.State() {
	case sched.Finished:
		code := 0
		j.ExitCode = &code
	case sched.Terminated:
		var xe *proc.ExitError
		if res := t.Result(); res != nil && errors.As(res.Err, &xe) && xe.Signal == 0 {
			code := xe.Code
			j.ExitCode = &code
		}
	}
}

// runSource is a drove run as the monitor's Source and Actions.
type runSource struct{ e *engine }

// Snapshot implements monitor.Source.
func (s runSource) Snapshot(ctx context.Context, q monitor.Query) (monitor.Status, error) {
	now := time.Now()
	st := monitor.Status{Kind: "run", Name: "drove run", Time: now}
	monitor.FromStats(&st, s.e.sched.Stats(), true)
	if len(st.Computations) == 1 {
		st.Computations[0].What = s.e.cfg.Template
	}
	st.Jobs, st.JobsTotal = s.e.rec.Jobs(q, now)
	st.JobsSeen = s.e.rec.Seen()
	return st, nil
}

// Job implements monitor.Source.
func (s runSource) Job(ctx context.Context, id int64) (monitor.JobDetail, error) {
	return s.e.rec.Job(ctx, id)
}

// Subscribe implements monitor.Source.
func (s runSource) Subscribe(ctx context.Context) <-chan struct{} { return s.e.rec.Subscribe(ctx) }

// Supported implements monitor.Actions.
func (s runSource) Supported() []string {
	return []string{monitor.ActCancel, monitor.ActSetCPUs, monitor.ActAllocate, monitor.ActDeallocate}
}

// Do implements monitor.Actions.
func (s runSource) Do(ctx context.Context, a monitor.Action) error {
	sc := s.e.sched
	switch a.Kind {
	case monitor.ActCancel:
		t, _, ok := s.e.rec.Task(a.Job)
		if !ok {
			return monitor.ErrNotFound
		}
		sc.Cancel(t)
		return nil
	case monitor.ActSetCPUs:
		return sc.SetSlots(a.Node, a.CPUs)
	case monitor.ActAllocate:
		return sc.Allocate(a.Node)
	case monitor.ActDeallocate:
		return sc.Deallocate(a.Node)
	}
	return monitor.ErrUnsupported
}
