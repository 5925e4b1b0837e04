package monitor

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/sched"
)

// DefaultKeep is how many of the latest jobs a Recorder keeps by default.
const DefaultKeep = 1000

// Recorder keeps the latest jobs of a scheduling core, fed with its task
// events (sched.Config.OnTask), in a ring of fixed size: the jobs shown on
// the page and by `drove status --jobs`, and the ones actions name. It
// holds the core's own tasks (their state, node, times and result), not
// copies, and forgets the oldest once full, so its memory is bounded by its
// size whatever the number of jobs (plus the jobs still running that
// dropped out of the ring: they stay known until they end, so that they
// can be cancelled and are not counted twice). Counts of all jobs come
// from the core's Stats. It also tells subscribers of changes (Subscribe). Its
// methods are safe for concurrent use.
type Recorder struct {
	// Describe, if set, adds what the front end knows of a task to its
	// job (drove run: the command and its exit code). Set it before use.
	Describe func(t *sched.Task, j *Job)

	mu     sync.Mutex
	ring   []*entry // circular, oldest at head once full
	head   int
	n      int
	byTask map[*sched.Task]*entry
	byID   map[int64]*entry
	seq    int64
	subs   map[chan struct{}]struct{}
}

type entry struct {
	id     int64
	task   *sched.Task
	comp   string
	node   string
	end    time.Time // when it was seen final
	inRing bool
}

// NewRecorder returns a Recorder that keeps the latest keep jobs (0:
// DefaultKeep).
func NewRecorder(keep int) *Recorder {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Recorder{
		ring:   make([]*entry, keep),
		byTask: map[*sched.Task]*entry{},
		byID:   map[int64]*entry{},
		subs:   map[chan struct{}]struct{}{},
	}
}

// Observe records a task event; comp names the task's computation (""
// for a client's own). A task is kept from its first event (it started
// running, or was cancelled while queued).
func (r *Recorder) Observe(ev sched.TaskEvent, comp string) {
	r.mu.Lock()
	e := r.byTask[ev.Task]
	if e == nil {
		r.seq++
		e = &entry{id: r.seq, task: ev.Task, comp: comp, inRing: true}
		slot := (r.head + r.n) % len(r.ring)
		if r.n == len(r.ring) {
			old := r.ring[r.head]
			old.inRing = false
			if !old.end.IsZero() {
				r.forgetLocked(old)
			}
			r.head = (r.head + 1) % len(r.ring)
		} else {
			r.n++
		}
		r.ring[slot] = e
		r.byTask[ev.Task] = e
		r.byID[e.id] = e
	}
	if ev.Node != "" {
		e.node = ev.Node
	}
	if ev.State.Final() && e.end.IsZero() {
		e.end = time.Now()
		if !e.inRing {
			r.forgetLocked(e)
		}
	}
	r.mu.Unlock()
	r.Notify()
}

// forgetLocked drops e, out of the ring and final, from the maps.
func (r *Recorder) forgetLocked(e *entry) {
	delete(r.byTask, e.task)
	delete(r.byID, e.id)
}

// Notify tells the subscribers of a change that is not a task event (a
// node joined, a computation opened).
func (r *Recorder) Notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		select {
		case c <- struct{}{}:
		default: // one pending value stands for many changes
		}
	}
}

// Subscribe implements Source.Subscribe.
func (r *Recorder) Subscribe(ctx context.Context) <-chan struct{} {
	c := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs[c] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.subs, c)
		r.mu.Unlock()
	})
	return c
}

// Seen returns how many jobs the recorder has seen.
func (r *Recorder) Seen() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Jobs returns the page of the latest jobs q asks for, newest first, and
// how many jobs match q among those kept.
func (r *Recorder) Jobs(q Query, now time.Time) (page []Job, total int) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	offset := max(q.Offset, 0)
	want := strings.ToLower(q.Status)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := r.n - 1; i >= 0; i-- {
		e := r.ring[(r.head+i)%len(r.ring)]
		var j Job
		matched := want == ""
		if !matched {
			j = e.job(now)
			matched = j.Status == want
		}
		if !matched {
			continue
		}
		total++
		if total > offset && len(page) < limit {
			if want == "" {
				j = e.job(now)
			}
			if r.Describe != nil {
				r.Describe(e.task, &j)
			}
			page = append(page, j)
		}
	}
	return page, total
}

// Task returns the task the monitor knows as id, and its computation.
func (r *Recorder) Task(id int64) (*sched.Task, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[id]
	if e == nil {
		return nil, "", false
	}
	return e.task, e.comp, true
}

// Job implements Source.Job.
func (r *Recorder) Job(_ context.Context, id int64) (JobDetail, error) {
	r.mu.Lock()
	e := r.byID[id]
	var j Job
	if e != nil {
		j = e.job(time.Now())
	}
	r.mu.Unlock()
	if e == nil {
		return JobDetail{}, ErrNotFound
	}
	if r.Describe != nil {
		r.Describe(e.task, &j)
	}
	d := JobDetail{Job: j}
	if e.task.State().Final() {
		if res := e.task.Result(); res != nil {
			d.Stdout, d.Stderr = string(res.Stdout), string(res.Stderr)
			if res.Err != nil {
				d.Error = res.Err.Error()
			}
		}
	}
	return d, nil
}

// job describes e now; the caller holds r.mu.
func (e *entry) job(now time.Time) Job {
	t := e.task
	st := t.State()
	j := Job{ID: e.id, JobID: t.ID, Computation: e.comp, Status: StateName(st), Node: e.node, Start: t.StartTime()}
	if j.Node == "" {
		j.Node = t.NodeName()
	}
	switch {
	case st.Final():
		if res := t.Result(); res != nil && !res.Start.IsZero() && res.End.After(res.Start) {
			j.Start = res.Start
			j.RunTime = res.End.Sub(res.Start).Seconds()
		} else if !j.Start.IsZero() && e.end.After(j.Start) {
			j.RunTime = e.end.Sub(j.Start).Seconds()
		}
	case !j.Start.IsZero():
		j.RunTime = max(now.Sub(j.Start).Seconds(), 0)
	}
	return j
}

// StateName is a task state as the monitor names it: "pending",
// "running", "finished", "cancelled", "terminated" or "abandoned".
func StateName(s sched.State) string {
	switch s {
	case sched.Created:
		return "pending"
	case sched.Running, sched.ProvisionalResult:
		return "running"
	case sched.Cancelled:
		return "cancelled"
	case sched.Terminated:
		return "terminated"
	case sched.Abandoned:
		return "abandoned"
	case sched.Finished:
		return "finished"
	}
	return "unknown"
}

// FromStats fills the nodes, computations and counts of st from the
// core's stats. Each computation is named by its tenant's name; the
// default tenant (the tasks of no tenant) is left out unless keepDefault:
// a daemon's jobs all have a tenant, a client's have none.
func FromStats(st *Status, s sched.Stats, keepDefault bool) {
	st.Begin = s.Begin
	st.Pending, st.Running = s.Pending, s.Running
	for _, n := range s.Nodes {
		state := "up"
		if n.Down {
			state = "lost"
		}
		st.Nodes = append(st.Nodes, Node{
			Name: n.Name, Address: n.Name, CPUs: n.Slots, Busy: n.Busy, JobsDone: n.Jobs, NodeTime: n.Time.Seconds(),
			Sent: n.Sent, Received: n.Received, State: state, Allocated: n.Allocated,
		})
	}
	for i, t := range s.Tenants {
		if i == 0 && !keepDefault {
			continue
		}
		st.Computations = append(st.Computations, Computation{
			ID: t.Name, Pending: t.Pending, Running: t.Running,
			Finished: t.Finished, Cancelled: t.Cancelled, Terminated: t.Terminated, Abandoned: t.Abandoned,
			SlotTime: t.SlotTime.Seconds(),
		})
	}
}
