// Package sched is drove's scheduling core: the job queue, slot accounting,
// placement, priorities, retries, timeouts, cancellation and the job state
// machine. It knows nothing about transport: it drives nodes through the
// small [Executor] interface, and every front end (the Go API, drove submit,
// drove run, the shared scheduler) and every backend (local processes,
// drove node daemons, SSH hosts) meets here.
//
// Placement follows dispy: a task goes to the node with a free slot and the
// lowest busy/slots ratio; a node never runs more tasks than it has slots.
//
// Several tenants (computations, see [Tenant]) share the nodes' slots. When
// a slot frees, the scheduler's [Policy] chooses whose task goes next, and
// within a tenant the highest priority goes first, then the earliest
// submitted. Tasks with no tenant belong to a default tenant, so a front end
// that runs one computation needs to know nothing of tenants. A task pinned
// to a node goes there when the node has a slot, unless a task of its own
// tenant that is more urgent is queued; the policy does not delay it.
//
// A node has one executor, given to [Scheduler.AddNode], that runs the tasks
// of every tenant; [Scheduler.SetTenantExecutor] gives a tenant its own
// executor on a node (a drove node runs each computation in its own
// workers; a shared scheduler reaches each computation on each node through
// its own connection), still counted against the node's slots.
//
// Dispatching a task costs O(log n) in nodes and in tenants with queued
// tasks: free nodes and ready tenants are kept in heaps. While an exclusive
// tenant is active, the ready tenants are scanned instead.
package sched

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Executor runs tasks on one node's slots. The scheduler never starts more
// runs on an executor than the slots it registered the node with.
//
// Start must not block for long (no network round trips): it hands the run
// to the executor's own goroutines. The scheduler calls Start from one
// goroutine at a time, in dispatch order, so an executor sees each node's
// runs in the order they were dispatched. Every started run must be reported
// exactly once through [Scheduler.Done] (or be covered by
// [Scheduler.NodeDown]). Cancel asks for a run to stop, escalating as the
// executor sees fit (context, SIGINT, SIGTERM, SIGKILL); it may come before
// Start has registered the run, so Start checks [Run.Cause]. Close stops the
// node: it ends and reports all of its runs and releases its resources.
type Executor interface {
	Start(r *Run)
	Cancel(r *Run)
	Close(ctx context.Context) error
}

// Prefetcher is implemented by executors that queue runs ahead of their
// slots, to hide the latency between one job's end and the next one's start
// (a worker that has its next job already in its pipe never waits for the
// scheduler). The scheduler gives such a node up to slots+Prefetch() runs;
// the extra ones stay Created until the executor calls [Scheduler.Started],
// and the executor still runs at most slots of them at once. A run cancelled
// before it started is reported Killed; one the executor gives back unstarted
// (say, its worker died, or it was recalled) is reported NotStarted and
// queued again.
//
// Queueing ahead would let a job overtake a more urgent one submitted later,
// so the scheduler does it only while every unfinished task has the same
// priority; when priorities mix, it recalls the runs waiting beyond each
// node's slots and dispatches by slots alone, and priorities are honoured
// exactly.
type Prefetcher interface {
	// Prefetch is how many runs the executor takes beyond its slots. The
	// scheduler asks whenever a run is given to the node or ends there, so
	// the depth may follow the work (it must not block); an executor that
	// answers 0 when added never queues ahead. One that answered more may
	// answer 0 later: the node then takes runs up to its slots only, and
	// they still stay Created until Started. With tenant executors on
	// the node (see [Scheduler.SetTenantExecutor]) the depth is the node
	// executor's, shared by all.
	Prefetch() int
	// Recall asks for a run queued ahead to be given back unstarted (as
	// NotStarted). A run that has started meanwhile just goes on.
	Recall(r *Run)
}

// Config configures a Scheduler. The zero value is usable.
type Config struct {
	// MaxPending bounds the unfinished tasks: Submit blocks while that many
	// are queued or running. 0 means no bound.
	MaxPending int
	// Reentrant tasks are requeued when their node is lost, without using up
	// a retry; otherwise such a task ends Abandoned unless it has retries left.
	Reentrant bool
	// MaxLost is how many times a reentrant task may lose its node before
	// it ends Abandoned all the same, so that a task that brings down every
	// node it lands on cannot loop forever. Default 5.
	MaxLost int
	// Policy chooses which tenant's task goes next; the default is Fair.
	Policy Policy
	// OnTask, if set, receives every state change of every task after
	// Created, in order, on one goroutine owned by the scheduler.
	OnTask func(TaskEvent)
	// OnNode, if set, receives node events on the same goroutine.
	OnNode func(NodeEvent)
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Observer, if set, is told of dispatches, starts, ends and node
	// events as they happen (internal/metrics counts them).
	Observer Observer
}

// Observer watches the scheduler for metrics. Its methods are called with
// the scheduler's lock held, in the order things happen: they must be quick
// (counters, histograms), must not block and must not call the scheduler.
type Observer interface {
	// Dispatched: a run of a task was given to node.
	Dispatched(node string)
	// Started: a run began on node after its task waited wait since it
	// was queued (submitted, or queued again after a run ended).
	Started(node string, wait time.Duration)
	// RunEnded: a run on node ended; res.Sent and res.Received are the
	// bytes the executor moved for it.
	RunEnded(node string, res *Result)
	// Finished: a task reached the final state st; res is how it ended
	// (res.Start is zero if it never ran).
	Finished(st State, res *Result)
	// Node: a node event, as given to Config.OnNode, and at Close a
	// NodeRemoved for every node closed with the scheduler.
	Node(ev NodeEvent)
}

// TaskEvent is a change of a task's state. Output is set for
// ProvisionalResult events (the provisional output) and final ones.
type TaskEvent struct {
	Task   *Task
	State  State
	Output []byte
	Node   string
}

// NodeEventKind says what happened to a node.
type NodeEventKind int

// Node events.
const (
	NodeUp      NodeEventKind = iota + 1 // added and ready for tasks
	NodeDown                             // failed; its tasks were rescheduled or abandoned
	NodeRemoved                          // closed on request
	// NodeUnreachable: a node that was never up could not be reached and
	// was left out. Reported with [Scheduler.ReportNode] by whoever dials
	// nodes; the node may still join later (NodeUp).
	NodeUnreachable
	// NodeGone: a node that was down or unreachable is given up on: it is
	// not dialled again and will not come back. Reported with
	// [Scheduler.ReportNode].
	NodeGone
)

func (k NodeEventKind) String() string {
	switch k {
	case NodeUp:
		return "up"
	case NodeDown:
		return "down"
	case NodeRemoved:
		return "removed"
	case NodeUnreachable:
		return "unreachable"
	case NodeGone:
		return "gone"
	}
	return fmt.Sprintf("NodeEventKind(%d)", int(k))
}

// NodeEvent is a change of a node.
type NodeEvent struct {
	Node  string
	Kind  NodeEventKind
	Slots int
	Err   error // why a node went down, could not be reached or is gone
}

// Scheduler is the scheduling core. Create it with New; all methods are safe
// for concurrent use.
type Scheduler struct {
	cfg    Config
	log    *slog.Logger
	tokens chan struct{} // MaxPending semaphore, nil when unbounded
	begin  time.Time

	mu         sync.Mutex
	nodes      []*node
	byName     map[string]*node
	nodeSeq    uint64
	free       nodeHeap           // nodes that can take a run now
	usable     int                // nodes up, allocated, with slots
	ahead      bool               // queueing ahead is allowed (see recallLocked)
	pinnedAt   map[*node]struct{} // nodes with pinned tasks queued
	def        *Tenant            // tasks without a tenant
	tenants    []*Tenant          // in creation order
	tenantSeq  uint64
	ready      tenantHeap // tenants with queued tasks, by policy
	exclusives []*Tenant  // active exclusive tenants
	vclock     int64      // Fair: the usage an activated tenant starts at
	picks      uint64
	inflight   int // runs dispatched and not ended
	seq        uint64
	unfinished int
	priorities map[int]int   // unfinished tasks by priority
	idle       chan struct{} // closed while unfinished == 0
	closed     bool
	toStart    []*Run // dispatched, not yet handed to executors
	starting   bool   // a goroutine is in startPending

	events    []any // TaskEvent or NodeEvent, delivered in order
	watchers  []*func(NodeEvent)
	eventCond *sync.Cond
	stopEvent bool
	eventDone chan struct{}
}

type node struct {
	name      string
	seq       uint64 // order added, to break ties in placement
	hidx      int    // in the free heap; -1 when not there
	usable    bool   // counted in Scheduler.usable
	dropped   bool
	tenantEx  map[*Tenant]Executor
	slots     int
	added     int // slots at AddNode: how many runs its executor runs at once
	prefetch  int
	pf        Prefetcher // asked for prefetch at each dispatch; nil if it queues nothing
	busy      int
	ex        Executor
	pinned    taskHeap
	runs      map[*Run]struct{}
	waiting   []*Run // runs queued ahead, not started yet
	down      bool
	removed   bool
	allocated bool
	stats     NodeStats
	// machines are the machines behind the node, by name, once its
	// executor said it is a front for them (SetMachines, Run.SetMachine);
	// nil for a node that runs its runs itself.
	machines map[string]*machine
}

// machine is one of the machines behind a node: its line in the stats.
// Name, Slots and Down are what SetMachines said; the rest is counted from
// the runs that went there.
type machine struct {
	stats NodeStats
	known bool // listed by the latest SetMachines
}

// free reports whether n can take another run: up to its slots, plus its
// prefetch when queueing ahead is allowed (see recallLocked) and its slots
// were not lowered below what its executor runs at once (SetSlots).
func (n *node) free(ahead bool) bool {
	return !n.down && n.allocated && n.busy < n.capacity(ahead)
}

// capacity is how many runs n may hold: its slots, plus its prefetch when
// it queues ahead. A node whose slots were lowered below what its
// executor runs at once does not queue ahead: every run it holds may
// start, so holding more than its slots would run more.
func (n *node) capacity(ahead bool) int {
	if ahead && n.slots >= n.added {
		return n.slots + n.prefetch
	}
	return n.slots
}

// New returns a Scheduler with no nodes.
func New(cfg Config) *Scheduler {
	s := &Scheduler{
		cfg:        cfg,
		log:        cfg.Logger,
		byName:     map[string]*node{},
		priorities: map[int]int{},
		idle:       make(chan struct{}),
		begin:      time.Now(),
		ahead:      true,
		pinnedAt:   map[*node]struct{}{},
		ready:      tenantHeap{policy: cfg.Policy},
	}
	s.def = s.newTenantLocked(TenantConfig{})
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.MaxLost <= 0 {
		s.cfg.MaxLost = 5
	}
	close(s.idle)
	if cfg.MaxPending > 0 {
		s.tokens = make(chan struct{}, cfg.MaxPending)
	}
	if cfg.OnTask != nil || cfg.OnNode != nil {
		s.startDeliveryLocked()
	}
	return s
}

// startDeliveryLocked starts the goroutine that runs the callbacks; Close
// stops it.
func (s *Scheduler) startDeliveryLocked() {
	s.eventCond = sync.NewCond(&s.mu)
	s.eventDone = make(chan struct{})
	go s.deliver()
}

// WatchNodes calls fn with every node event from now on, after
// Config.OnNode and on the same goroutine, in order. It is how a layer that
// keeps nodes (dials them, redials lost ones) learns that a node went down
// whatever reported it. fn must not block. The returned stop ends the
// calls; none are made after Close has returned.
func (s *Scheduler) WatchNodes(fn func(NodeEvent)) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eventCond == nil && !s.stopEvent {
		s.startDeliveryLocked()
	}
	w := &fn
	s.watchers = append(s.watchers, w)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, o := range s.watchers {
			if o == w {
				s.watchers = append(s.watchers[:i], s.watchers[i+1:]...)
				break
			}
		}
	}
}

// ReportNode emits ev, in order with the scheduler's own node events, to
// Config.OnNode and the watchers. It is for what only the layer keeping the
// nodes knows (kinds NodeUnreachable and NodeGone); it changes nothing in
// the scheduler. After Close it does nothing.
func (s *Scheduler) ReportNode(ev NodeEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopEvent {
		return
	}
	s.emitLocked(ev)
}

// AddNode adds a node with the given slots, run by ex. A node of the same
// name that went down is replaced; a live one is an error.
func (s *Scheduler) AddNode(name string, slots int, ex Executor) error {
	if slots < 0 {
		return fmt.Errorf("sched: node %s: negative slot count %d", name, slots)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if old, ok := s.byName[name]; ok {
		if !old.down && !old.removed {
			s.mu.Unlock()
			return fmt.Errorf("sched: node %s already added", name)
		}
		s.dropNodeLocked(old)
	}
	s.nodeSeq++
	n := &node{name: name, seq: s.nodeSeq, hidx: -1, slots: slots, added: slots, ex: ex, runs: map[*Run]struct{}{}, allocated: true}
	if p, ok := ex.(Prefetcher); ok {
		n.prefetch = max(0, p.Prefetch())
		if n.prefetch > 0 {
			n.pf = p
		}
	}
	n.stats.Name = name
	s.nodes = append(s.nodes, n)
	s.byName[name] = n
	s.placeLocked(n)
	s.emitLocked(NodeEvent{Node: name, Kind: NodeUp, Slots: slots})
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
	return nil
}

func (s *Scheduler) dropNodeLocked(n *node) {
	if n.hidx >= 0 {
		heap.Remove(&s.free, n.hidx)
	}
	if n.usable {
		n.usable = false
		s.usable--
	}
	n.dropped = true
	delete(s.pinnedAt, n)
	delete(s.byName, n.name)
	for i, m := range s.nodes {
		if m == n {
			s.nodes = append(s.nodes[:i], s.nodes[i+1:]...)
			break
		}
	}
}

// SetSlots changes how many tasks a node may run at once. Lowering it does
// not stop running tasks; the node just takes no more until it is below.
// Below the slots the node was added with (what its executor runs at
// once), the node queues nothing ahead, and the runs it holds queued
// ahead beyond the new slots are recalled: each run it holds may start.
func (s *Scheduler) SetSlots(name string, slots int) error {
	if slots < 0 {
		return fmt.Errorf("sched: node %s: negative slot count %d", name, slots)
	}
	s.mu.Lock()
	n, ok := s.byName[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	n.slots = slots
	s.placeLocked(n)
	var recall []*Run
	if slots < n.added {
		recall = s.recallExcessLocked(n, nil, n.busy-slots)
	}
	s.dispatchAndRecallLocked(recall)
	return nil
}

// dispatchAndRecallLocked dispatches, releases s.mu, starts what was
// dispatched and asks the executors to give recall back: Recall is called
// without the lock, since an executor may report from inside it.
func (s *Scheduler) dispatchAndRecallLocked(recall []*Run) {
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
	for _, r := range recall {
		r.ex.(Prefetcher).Recall(r)
	}
}

// Allocate lets a node take tasks again after Deallocate.
func (s *Scheduler) Allocate(name string) error { return s.setAllocated(name, true) }

// Deallocate stops giving a node new tasks; running ones go on.
func (s *Scheduler) Deallocate(name string) error { return s.setAllocated(name, false) }

func (s *Scheduler) setAllocated(name string, on bool) error {
	s.mu.Lock()
	n, ok := s.byName[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	n.allocated = on
	s.placeLocked(n)
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
	return nil
}

// Submit queues t, for t.Tenant or the default tenant. With MaxPending set
// it blocks while that many tasks are unfinished, until ctx is done.
func (s *Scheduler) Submit(ctx context.Context, t *Task) error {
	if s.tokens != nil {
		select {
		case s.tokens <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.release()
		return ErrClosed
	}
	ten := t.Tenant
	if ten == nil {
		ten = s.def
	}
	if ten.s != s || ten.closed {
		s.mu.Unlock()
		s.release()
		return fmt.Errorf("%w: tenant %q", ErrClosed, ten.name)
	}
	var pin *node
	if t.Node != "" {
		n, ok := s.byName[t.Node]
		if !ok || n.down || n.removed {
			s.mu.Unlock()
			s.release()
			return fmt.Errorf("%w: %s", ErrNoNode, t.Node)
		}
		pin = n
	}
	t.done = make(chan struct{})
	t.state.Store(uint32(Created))
	t.ten = ten
	s.seq++
	t.seq = s.seq
	if s.unfinished == 0 {
		s.idle = make(chan struct{})
	}
	s.unfinished++
	s.activateLocked(ten)
	s.queueLocked(t, pin)
	s.priorities[t.Priority]++
	// Recall first, so the tasks taken back are dispatched with the rest.
	recall := s.recallLocked()
	s.dispatchAndRecallLocked(recall)
	return nil
}

// recallLocked returns the runs queued ahead at nodes that must give them
// back: while unfinished tasks have different priorities, a node holds no
// more runs than its slots, so a slot that frees always takes the most
// urgent task. Only the excess is recalled, newest first: a run within the
// slots starts as soon as its executor has it.
func (s *Scheduler) recallLocked() []*Run {
	if len(s.priorities) < 2 {
		return nil
	}
	var rs []*Run
	for _, n := range s.nodes {
		rs = append(rs, s.recallExcessLocked(n, nil, n.busy-n.slots)...)
	}
	return rs
}

// recallExcessLocked takes back, newest first, up to excess of the runs
// queued ahead at n and not started (of tenant ten only, if not nil),
// counting those already on their way back. A run not yet handed to its
// executor ends NotStarted at once; the others are returned, for the
// caller to Recall once the lock is released.
func (s *Scheduler) recallExcessLocked(n *node, ten *Tenant, excess int) []*Run {
	var rs, unhanded []*Run
	for _, r := range n.waiting {
		if r.recalled && (ten == nil || r.Task.ten == ten) {
			excess-- // already on its way back
		}
	}
	for i := len(n.waiting) - 1; i >= 0 && excess > 0; i-- {
		switch r := n.waiting[i]; {
		case r.recalled, ten != nil && r.Task.ten != ten:
			continue
		case !r.handed:
			unhanded = append(unhanded, r)
		default:
			r.recalled = true
			rs = append(rs, r)
		}
		excess--
	}
	// A run not yet handed to its executor is simply taken back.
	for _, r := range unhanded {
		for i, x := range s.toStart {
			if x == r {
				s.toStart = append(s.toStart[:i], s.toStart[i+1:]...)
				break
			}
		}
		s.endRunLocked(r, Result{Outcome: NotStarted})
	}
	return rs
}

func (s *Scheduler) release() {
	if s.tokens != nil {
		<-s.tokens
	}
}

// Cancel ends t: a queued task at once (Cancelled), a running one by asking
// its executor to stop it. Cancelling a final task does nothing.
func (s *Scheduler) Cancel(t *Task) {
	s.cancel(t, ErrCancelled)
}

func (s *Scheduler) cancel(t *Task, cause error) {
	s.mu.Lock()
	if t.done == nil || t.State().Final() {
		s.mu.Unlock()
		return
	}
	if r := t.run; r != nil {
		if r.cause.Load() == nil {
			r.cause.Store(&cause)
		}
		s.mu.Unlock()
		r.ex.Cancel(r)
		return
	}
	if t.index >= 0 {
		if n := s.byName[t.Node]; t.Node != "" && n != nil {
			heap.Remove(&n.pinned, t.index)
			if n.pinned.Len() == 0 {
				delete(s.pinnedAt, n)
			}
		} else {
			heap.Remove(&t.ten.queue, t.index)
			s.readyFixLocked(t.ten)
		}
	}
	s.finishLocked(t, Cancelled, Result{Outcome: Killed, Err: cause})
	// Its tenant may have been holding others back (exclusive).
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
}

// timeout is a run's timer firing.
func (s *Scheduler) timeout(r *Run) {
	s.mu.Lock()
	if r.over || r.cause.Load() != nil {
		s.mu.Unlock()
		return
	}
	cause := ErrTimeout
	r.cause.Store(&cause)
	s.mu.Unlock()
	r.ex.Cancel(r)
}

// Provisional reports an intermediate result of a running task.
func (s *Scheduler) Provisional(r *Run, output []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.over {
		return
	}
	t := r.Task
	t.state.Store(uint32(ProvisionalResult))
	s.emitLocked(TaskEvent{Task: t, State: ProvisionalResult, Output: output, Node: r.Node})
}

// Done reports the end of a run. Reports about runs the scheduler already
// gave up on (say, after their node was declared down) are dropped, so a
// task never gets two final results.
func (s *Scheduler) Done(r *Run, res Result) {
	s.mu.Lock()
	if r.over {
		s.mu.Unlock()
		s.log.Debug("dropped late result", "job", r.Task.ID, "node", r.Node)
		return
	}
	s.endRunLocked(r, res)
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
}

func (s *Scheduler) endRunLocked(r *Run, res Result) {
	r.over = true
	if r.timer != nil {
		r.timer.Stop()
	}
	n := r.node
	delete(n.runs, r)
	if !r.started {
		n.unwait(r)
	}
	n.busy--
	if r.capped {
		r.Task.ten.onNode[n.name]--
	}
	s.placeLocked(n)
	t := r.Task
	t.run = nil
	st := &n.stats
	if m := s.machineLocked(n, r); m != nil {
		st = &m.stats
		if r.on == m {
			m.stats.Busy--
		}
		t.nodeName.Store(&m.stats.Name)
	}
	st.Sent += res.Sent
	st.Received += res.Received
	if s.cfg.Observer != nil {
		s.cfg.Observer.RunEnded(n.name, &res)
	}
	if !res.Start.IsZero() && !res.End.IsZero() && res.Outcome != NotStarted {
		st.Jobs++
		st.Time += res.End.Sub(res.Start)
	}
	if res.Start.IsZero() {
		res.Start = t.StartTime()
	}
	if res.End.IsZero() {
		res.End = time.Now()
	}
	var used time.Duration
	if r.started && res.Outcome != NotStarted {
		used = max(0, res.End.Sub(res.Start))
	}
	s.settleLocked(t.ten, r.charged, used)
	cause := r.Cause()
	switch {
	case res.Outcome == NotStarted && cause == nil:
		// Not a failure: the node is not one to avoid.
		last := t.lastNode
		s.requeueLocked(t, n)
		t.lastNode = last
	case res.Outcome == OK:
		s.finishLocked(t, Finished, res)
	case errors.Is(cause, ErrCancelled):
		switch {
		case res.Err == nil || res.Outcome == Killed:
			res.Err = ErrCancelled
		case !errors.Is(res.Err, ErrCancelled):
			res.Err = fmt.Errorf("%w: %w", ErrCancelled, res.Err)
		}
		s.finishLocked(t, Cancelled, res)
	case res.Outcome == Lost:
		if res.Err == nil {
			res.Err = ErrNodeLost
		}
		t.lost++
		switch {
		case s.cfg.Reentrant && t.Node == "" && t.lost < s.cfg.MaxLost:
			s.requeueLocked(t, n)
		case t.attempts < t.Retries && t.Node == "":
			t.attempts++
			s.requeueLocked(t, n)
		default:
			s.finishLocked(t, Abandoned, res)
		}
	default: // Failed, or Killed by a timeout
		if errors.Is(cause, ErrTimeout) {
			res.Err = timeoutError(res.Err)
		}
		if t.attempts < t.Retries {
			t.attempts++
			s.requeueLocked(t, n)
			return
		}
		s.finishLocked(t, Terminated, res)
	}
}

func timeoutError(err error) error {
	if err == nil || errors.Is(err, ErrTimeout) {
		return ErrTimeout
	}
	return fmt.Errorf("%w (%w)", ErrTimeout, err)
}

func (s *Scheduler) requeueLocked(t *Task, from *node) {
	t.lastNode = from.name
	t.state.Store(uint32(Created))
	s.emitLocked(TaskEvent{Task: t, State: Created, Node: from.name})
	if t.Node != "" {
		s.queueLocked(t, from)
		return
	}
	s.queueLocked(t, nil)
}

// queueLocked queues t at the node it is pinned to, or in its tenant's
// queue.
func (s *Scheduler) queueLocked(t *Task, pin *node) {
	if s.cfg.Observer != nil {
		t.queued = time.Now().UnixNano()
	}
	if pin != nil {
		heap.Push(&pin.pinned, t)
		s.pinnedAt[pin] = struct{}{}
		return
	}
	heap.Push(&t.ten.queue, t)
	s.readyFixLocked(t.ten)
}

func (s *Scheduler) finishLocked(t *Task, st State, res Result) {
	t.res = &res
	t.Input = nil // not needed again; a finished job holds only its result
	t.state.Store(uint32(st))
	close(t.done)
	s.unfinished--
	if s.unfinished == 0 {
		close(s.idle)
	}
	if s.priorities[t.Priority]--; s.priorities[t.Priority] == 0 {
		delete(s.priorities, t.Priority)
	}
	switch ts := &t.ten.stats; st {
	case Finished:
		ts.Finished++
	case Cancelled:
		ts.Cancelled++
	case Terminated:
		ts.Terminated++
	case Abandoned:
		ts.Abandoned++
	}
	s.deactivateLocked(t.ten)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Finished(st, &res)
	}
	s.emitLocked(TaskEvent{Task: t, State: st, Output: res.Output, Node: t.NodeName()})
	s.release()
}

// NodeDown declares a node failed: its running tasks are requeued
// (reentrant, or with retries left) or end Abandoned, as are tasks pinned to
// it; tasks it held queued ahead but had not started go back to the queue.
// Reports about its runs that arrive later are dropped.
func (s *Scheduler) NodeDown(name string, err error) {
	s.mu.Lock()
	n, ok := s.byName[name]
	if !ok || n.down {
		s.mu.Unlock()
		return
	}
	n.down = true
	s.placeLocked(n)
	if err == nil {
		err = ErrNodeLost
	}
	for r := range n.runs {
		if !r.started {
			// Queued ahead at the node but never begun: nothing was lost.
			s.endRunLocked(r, Result{Outcome: NotStarted})
			continue
		}
		s.endRunLocked(r, Result{Outcome: Lost, Err: fmt.Errorf("%w: %s: %w", ErrNodeLost, name, err)})
	}
	for n.pinned.Len() > 0 {
		t := heap.Pop(&n.pinned).(*Task)
		s.finishLocked(t, Abandoned, Result{Outcome: Lost, Err: fmt.Errorf("%w: %s: %w", ErrNodeLost, name, err)})
	}
	delete(s.pinnedAt, n)
	s.emitLocked(NodeEvent{Node: name, Kind: NodeDown, Err: err})
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
}

// RemoveNode closes a node on request: it takes no new tasks, its queued
// pinned tasks are cancelled, and with terminate its running tasks are
// cancelled too; otherwise they finish first. Then its executor is closed.
func (s *Scheduler) RemoveNode(ctx context.Context, name string, terminate bool) error {
	s.mu.Lock()
	n, ok := s.byName[name]
	if !ok || n.removed {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	n.removed = true
	n.allocated = false
	s.placeLocked(n)
	var cancel []*Task
	for n.pinned.Len() > 0 {
		t := heap.Pop(&n.pinned).(*Task)
		s.finishLocked(t, Cancelled, Result{Outcome: Killed, Err: ErrCancelled})
	}
	delete(s.pinnedAt, n)
	// Its runs keep their executors; nothing new is assigned to it.
	tex := n.tenantEx
	n.tenantEx = nil
	for r := range n.runs {
		cancel = append(cancel, r.Task)
	}
	// The pinned tasks' tenants may have been holding others back.
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
	if terminate {
		for _, t := range cancel {
			s.Cancel(t)
		}
	}
	for _, t := range cancel {
		if err := t.Wait(ctx); err != nil {
			break
		}
	}
	err := closeNode(ctx, n, tex)
	s.mu.Lock()
	s.dropNodeLocked(n)
	s.emitLocked(NodeEvent{Node: name, Kind: NodeRemoved})
	s.mu.Unlock()
	return err
}

// Wait blocks until no task is unfinished or ctx is done.
func (s *Scheduler) Wait(ctx context.Context) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking tasks, waits for the unfinished ones and closes every
// executor. If ctx ends first, the remaining tasks are cancelled (queued) or
// stopped (running) and Close returns ctx's error once all are final.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()

	werr := s.Wait(ctx)
	if werr != nil {
		s.cancelAll()
	}
	// Executors get their own bounded time: after a cut-short ctx they must
	// still stop their processes and report every run.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	nodes := append([]*node(nil), s.nodes...)
	texs := make([]map[*Tenant]Executor, len(nodes))
	for i, n := range nodes {
		texs[i] = n.tenantEx
		n.tenantEx = nil
	}
	s.mu.Unlock()
	var errs []error
	for i, n := range nodes {
		if n.removed {
			continue
		}
		if err := closeNode(cctx, n, texs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// Anything an executor failed to report is lost with it.
	s.mu.Lock()
	for _, n := range s.nodes {
		for r := range n.runs {
			s.endRunLocked(r, Result{Outcome: Lost, Err: ErrClosed})
		}
	}
	s.cancelQueuedLocked()
	if s.cfg.Observer != nil {
		// Closed with the scheduler: no longer up, though no event says so.
		for _, n := range s.nodes {
			if !n.removed {
				s.cfg.Observer.Node(NodeEvent{Node: n.name, Kind: NodeRemoved})
			}
		}
	}
	s.stopEvent = true
	if s.eventCond != nil {
		s.eventCond.Signal()
	}
	done := s.eventDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	if werr != nil {
		errs = append([]error{werr}, errs...)
	}
	return errors.Join(errs...)
}

// cancelQueuedLocked cancels every queued task, pinned or not.
func (s *Scheduler) cancelQueuedLocked() {
	for _, ten := range s.tenants {
		for ten.queue.Len() > 0 {
			s.finishLocked(heap.Pop(&ten.queue).(*Task), Cancelled, Result{Outcome: Killed, Err: ErrCancelled})
		}
		s.readyFixLocked(ten)
	}
	for _, n := range s.nodes {
		for n.pinned.Len() > 0 {
			s.finishLocked(heap.Pop(&n.pinned).(*Task), Cancelled, Result{Outcome: Killed, Err: ErrCancelled})
		}
		delete(s.pinnedAt, n)
	}
}

// closeNode closes n's executor and tex, the tenants' executors taken from
// it under the lock (whoever takes them closes them: this or CloseTenant).
func closeNode(ctx context.Context, n *node, tex map[*Tenant]Executor) error {
	var errs []error
	if err := n.ex.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("node %s: %w", n.name, err))
	}
	for t, ex := range tex {
		if err := ex.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q on node %s: %w", t.name, n.name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Scheduler) cancelAll() {
	s.mu.Lock()
	var running []*Task
	s.cancelQueuedLocked()
	for _, n := range s.nodes {
		for r := range n.runs {
			running = append(running, r.Task)
		}
	}
	s.mu.Unlock()
	for _, t := range running {
		s.Cancel(t)
	}
}

// dispatchLocked assigns queued tasks to free slots and queues the runs for
// startPending, which hands them to executors once the lock is released.
func (s *Scheduler) dispatchLocked() {
	s.syncAheadLocked()
	var deferred []*Task
	var blocked []*Tenant // bound off every free node (SetTenantNodeSlots)
	for {
		progress := false
		for n := range s.pinnedAt {
			if !n.free(s.ahead) {
				continue
			}
			t := s.pinnedNextLocked(n)
			if t == nil {
				continue
			}
			if q := &t.ten.queue; q.Len() > 0 && q.less(q.items[0], t) {
				continue // its tenant has a more urgent task queued
			}
			heap.Remove(&n.pinned, t.index)
			if n.pinned.Len() == 0 {
				delete(s.pinnedAt, n)
			}
			s.toStart = append(s.toStart, s.assignLocked(n, t))
			progress = true
		}
		for {
			ten := s.nextTenantLocked()
			if ten == nil {
				break
			}
			t := ten.queue.items[0]
			n, wait := s.pickLocked(t)
			if n != nil {
				heap.Pop(&ten.queue)
				s.toStart = append(s.toStart, s.assignLocked(n, t))
				progress = true
				break
			}
			if n == nil && !wait && ten.caps != nil && s.free.Len() > 0 {
				// Free nodes, but none it may use: the others go on.
				heap.Remove(&s.ready, ten.index)
				blocked = append(blocked, ten)
				continue
			}
			if !wait || len(deferred) == maxDeferred {
				break
			}
			// A retry waits for a node other than the one it failed on;
			// the tasks behind it need not.
			heap.Pop(&ten.queue)
			s.readyFixLocked(ten)
			deferred = append(deferred, t)
		}
		if !progress {
			break
		}
	}
	for _, t := range deferred {
		s.queueLocked(t, nil)
	}
	for _, ten := range blocked {
		s.readyFixLocked(ten)
	}
}

// maxDeferred bounds how many waiting retries one dispatch steps over, so
// a queue full of them costs a bounded amount of work per dispatch.
const maxDeferred = 64

// pickLocked returns the least-loaded node with a free slot for t. A task
// being retried avoids the node it failed on: with no other node free it
// waits (wait is true) as long as another node could take it later, and
// goes back to the same node only when no other is usable, as GNU
// parallel's --retries does.
func (s *Scheduler) pickLocked(t *Task) (n *node, wait bool) {
	if s.free.Len() == 0 {
		return nil, false
	}
	if t.ten.caps != nil {
		return s.pickBoundLocked(t)
	}
	top := s.free.items[0]
	if top.name != t.lastNode {
		return top, false
	}
	// The next best is one of the root's children.
	var next *node
	for _, i := range []int{1, 2} {
		if i < s.free.Len() && (next == nil || s.free.less(s.free.items[i], next)) {
			next = s.free.items[i]
		}
	}
	others := s.usable
	if top.usable {
		others--
	}
	switch {
	case next != nil:
		return next, false
	case others > 0:
		return nil, true
	}
	return top, false
}

// pickBoundLocked is pickLocked for a task whose tenant has bounds on
// some nodes (SetTenantNodeSlots): the free nodes are scanned for the
// least loaded one the tenant may use.
func (s *Scheduler) pickBoundLocked(t *Task) (n *node, wait bool) {
	ten := t.ten
	var best, last *node
	for _, x := range s.free.items {
		if !ten.takesLocked(x) {
			continue
		}
		if x.name == t.lastNode {
			last = x
			continue
		}
		if best == nil || s.free.less(x, best) {
			best = x
		}
	}
	if best != nil || last == nil {
		return best, false
	}
	// Only the node it failed on: wait if another could take it later.
	for _, x := range s.nodes {
		if c, ok := ten.caps[x.name]; x.usable && x != last && (!ok || c > 0) {
			return nil, true
		}
	}
	return last, false
}

func (s *Scheduler) assignLocked(n *node, t *Task) *Run {
	ex := n.ex
	if tex, ok := n.tenantEx[t.ten]; ok {
		ex = tex
	}
	r := &Run{Task: t, Node: n.name, Attempt: t.attempts, ex: ex, node: n}
	r.charged = s.chargeLocked(t.ten)
	s.readyFixLocked(t.ten)
	n.busy++
	if t.ten.caps != nil {
		if _, ok := t.ten.caps[n.name]; ok {
			t.ten.onNode[n.name]++
			r.capped = true
		}
	}
	s.placeLocked(n)
	n.runs[r] = struct{}{}
	t.run = r
	if n.machines == nil {
		// Behind a front, the machine is known once the run starts.
		t.nodeName.Store(&n.name)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Dispatched(n.name)
	}
	// At a node that queues ahead, every run waits for Started, even while
	// its depth is 0: the executor may still hold it behind another.
	if n.pf == nil {
		s.startLocked(r, time.Now())
	} else {
		n.waiting = append(n.waiting, r)
	}
	return r
}

func (n *node) unwait(r *Run) {
	for i, w := range n.waiting {
		if w == r {
			n.waiting = append(n.waiting[:i], n.waiting[i+1:]...)
			return
		}
	}
}

// Started reports that a run queued ahead by a Prefetcher has begun.
func (s *Scheduler) Started(r *Run, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.over && !r.started {
		s.startLocked(r, at)
	}
}

func (s *Scheduler) startLocked(r *Run, at time.Time) {
	r.started = true
	if r.node.pf != nil {
		r.node.unwait(r)
	}
	t := r.Task
	t.start.Store(at.UnixNano())
	t.state.Store(uint32(Running))
	if s.cfg.Observer != nil {
		s.cfg.Observer.Started(r.Node, max(0, time.Duration(at.UnixNano()-t.queued)))
	}
	if t.Timeout > 0 {
		r.timer = time.AfterFunc(t.Timeout, func() { s.timeout(r) })
	}
	where := r.Node
	if m := s.machineLocked(r.node, r); m != nil {
		m.stats.Busy++
		r.on = m
		where = m.stats.Name
		t.nodeName.Store(&m.stats.Name)
	}
	s.emitLocked(TaskEvent{Task: t, State: Running, Node: where})
}

// machineLocked returns the machine behind n that r went to (see
// Run.SetMachine), known from now on; nil if r names none.
func (s *Scheduler) machineLocked(n *node, r *Run) *machine {
	name := r.machineName()
	if name == "" {
		return nil
	}
	if r.on != nil {
		return r.on
	}
	m := n.machines[name]
	if m == nil {
		if n.machines == nil {
			n.machines = map[string]*machine{}
		}
		m = &machine{stats: NodeStats{Name: name}}
		n.machines[name] = m
	}
	return m
}

// Machine describes one of the machines behind a node (SetMachines).
type Machine struct {
	Name  string
	Slots int
	Down  bool
}

// SetMachines says that the named node is a front for other machines (a
// drove scheduler): its executor places each run on one of them and says
// which (Run.SetMachine). The stats then list the machines in place of
// the node, with their slots and state as given here; a machine that runs
// went to but is not listed keeps its line, as down. Until a front has
// machines (an empty ms, no run placed yet), its own line stays. Placement
// is unchanged: the node's own slots decide how many runs it takes.
func (s *Scheduler) SetMachines(name string, ms []Machine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoNode, name)
	}
	if n.machines == nil && len(ms) == 0 {
		return nil // a front with no machines yet: the node is its line
	}
	if n.machines == nil {
		n.machines = map[string]*machine{}
	}
	for _, m := range n.machines {
		m.known = false
	}
	for _, x := range ms {
		m := n.machines[x.Name]
		if m == nil {
			m = &machine{stats: NodeStats{Name: x.Name}}
			n.machines[x.Name] = m
		}
		m.known = true
		m.stats.Slots = x.Slots
		m.stats.Down = x.Down
	}
	return nil
}

// startPending hands dispatched runs to their executors in dispatch order.
// Several goroutines dispatch (Submit, Done, AddNode…); one of them at a
// time drains the list and the others leave their runs to it, so a node
// never sees its runs out of order, and an executor that reports from
// inside Start does not recurse into another Start.
func (s *Scheduler) startPending() {
	s.mu.Lock()
	if s.starting {
		s.mu.Unlock()
		return
	}
	s.starting = true
	for len(s.toStart) > 0 {
		batch := s.toStart
		s.toStart = nil
		for _, r := range batch {
			r.handed = true
		}
		s.mu.Unlock()
		for i, r := range batch {
			r.ex.Start(r)
			batch[i] = nil
		}
		s.mu.Lock()
		if s.toStart == nil {
			s.toStart = batch[:0] // reuse the slice
		}
	}
	s.starting = false
	s.mu.Unlock()
}

func (s *Scheduler) emitLocked(ev any) {
	if ne, ok := ev.(NodeEvent); ok && s.cfg.Observer != nil {
		s.cfg.Observer.Node(ne)
	}
	if s.eventCond == nil {
		return
	}
	switch ev.(type) {
	case TaskEvent:
		if s.cfg.OnTask == nil {
			return
		}
	case NodeEvent:
		if s.cfg.OnNode == nil && len(s.watchers) == 0 {
			return
		}
	}
	s.events = append(s.events, ev)
	if len(s.events) == 1 {
		s.eventCond.Signal()
	}
}

// deliver runs the callbacks in order, outside the lock, so a slow callback
// delays other callbacks but never scheduling.
func (s *Scheduler) deliver() {
	defer close(s.eventDone)
	var batch []any
	for {
		s.mu.Lock()
		for len(s.events) == 0 && !s.stopEvent {
			s.eventCond.Wait()
		}
		if len(s.events) == 0 {
			s.mu.Unlock()
			return
		}
		batch, s.events = s.events, batch[:0]
		s.mu.Unlock()
		for i, ev := range batch {
			switch ev := ev.(type) {
			case TaskEvent:
				s.cfg.OnTask(ev)
			case NodeEvent:
				if s.cfg.OnNode != nil {
					s.cfg.OnNode(ev)
				}
				s.mu.Lock()
				ws := slices.Clone(s.watchers)
				s.mu.Unlock()
				for _, w := range ws {
					(*w)(ev)
				}
			}
			batch[i] = nil
		}
	}
}

// NodeStats is one node's line in the stats table.
type NodeStats struct {
	Name     string
	Slots    int
	Busy     int
	Jobs     int           // finished on the node (any final state with times)
	Time     time.Duration // total job time on the node
	Sent     int64
	Received int64
	Down     bool
	// Allocated is false for a node given no new tasks (Deallocate).
	Allocated bool
}

// Stats is a snapshot of the scheduler.
type Stats struct {
	Nodes   []NodeStats
	Pending int // queued, not running
	Running int
	Begin   time.Time
	// Tenants in creation order, the default tenant (named "") first.
	Tenants []TenantStats
}

// Stats returns a snapshot.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Begin: s.begin}
	for _, t := range s.tenants {
		st.Pending += t.queue.Len()
		st.Tenants = append(st.Tenants, s.tenantStatsLocked(t))
	}
	for _, n := range s.nodes {
		st.Pending += n.pinned.Len()
		st.Running += n.busy
		if n.machines != nil {
			st.Nodes = append(st.Nodes, machineStatsLocked(n)...)
			continue
		}
		ns := n.stats
		ns.Slots = n.slots
		ns.Busy = n.busy
		ns.Down = n.down
		ns.Allocated = n.allocated
		st.Nodes = append(st.Nodes, ns)
	}
	return st
}

// machineStatsLocked returns the lines of the machines behind n, by name:
// a machine is down if its node is, or if it is no longer listed. What
// ended on the node itself without a machine (runs lost with it) is a
// line of the node's own, if anything did.
func machineStatsLocked(n *node) []NodeStats {
	out := make([]NodeStats, 0, len(n.machines)+1)
	for _, m := range n.machines {
		ms := m.stats
		ms.Down = ms.Down || n.down || !m.known
		out = append(out, ms)
	}
	slices.SortFunc(out, func(a, b NodeStats) int { return strings.Compare(a.Name, b.Name) })
	if ns := n.stats; ns.Jobs > 0 || ns.Sent > 0 || ns.Received > 0 {
		ns.Down = n.down
		out = append(out, ns)
	}
	return out
}

// NodeTasks returns the tasks running on a node, or on a machine behind
// one (see SetMachines).
func (s *Scheduler) NodeTasks(name string) []*Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []*Task
	if n, ok := s.byName[name]; ok && n.machines == nil {
		for r := range n.runs {
			ts = append(ts, r.Task)
		}
		return ts
	}
	for _, n := range s.nodes {
		if n.machines[name] == nil {
			continue
		}
		for r := range n.runs {
			if r.on != nil && r.on.stats.Name == name {
				ts = append(ts, r.Task)
			}
		}
	}
	return ts
}

// taskHeap orders tasks by priority (high first), then submit order.
type taskHeap struct{ indexedHeap[*Task] }

func (h *taskHeap) less(a, b *Task) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.seq < b.seq
}
func (h *taskHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }

func (t *Task) setHeapIndex(i int) { t.index = i }

// indexedHeap is the storage of a container/heap whose elements keep their
// own index up to date, so that heap.Fix and heap.Remove can find them;
// each heap adds its Less.
type indexedHeap[T interface{ setHeapIndex(int) }] struct{ items []T }

func (h *indexedHeap[T]) Len() int { return len(h.items) }
func (h *indexedHeap[T]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].setHeapIndex(i)
	h.items[j].setHeapIndex(j)
}
func (h *indexedHeap[T]) Push(x any) {
	t := x.(T)
	t.setHeapIndex(len(h.items))
	h.items = append(h.items, t)
}
func (h *indexedHeap[T]) Pop() any {
	n := len(h.items)
	t := h.items[n-1]
	var zero T
	h.items[n-1] = zero
	t.setHeapIndex(-1)
	h.items = h.items[:n-1]
	return t
}
