package sched

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy chooses which tenant's task takes a slot that frees. Within a
// tenant, tasks still go by priority, then submit order.
type Policy int

// Policies, after dispyscheduler's.
const (
	// Fair (the default): the tenant that has used the least slot-time
	// since it became active goes next. A tenant that becomes active starts
	// level with the least-served active tenant, so time spent idle earns
	// no credit and a newcomer does not lock out the others while it
	// catches up (the rule of Linux's CFS). A run is charged the tenant's
	// mean run time when it is dispatched and corrected to its real
	// slot-time when it ends, so a tenant with long runs in flight does not
	// look idle; ties go to the tenant served longest ago.
	Fair Policy = iota
	// FSFS: the earliest submitted task across tenants goes next (each
	// tenant offering its own next task).
	FSFS
	// Early: the earliest created tenant goes first; later ones use the
	// slots it leaves free.
	Early
)

var policyNames = [...]string{Fair: "fair", FSFS: "fsfs", Early: "early"}

func (p Policy) String() string {
	if p >= 0 && int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy returns the policy named s ("fair", "fsfs" or "early").
func ParsePolicy(s string) (Policy, error) {
	for p, name := range policyNames {
		if strings.EqualFold(s, name) {
			return Policy(p), nil
		}
	}
	return 0, fmt.Errorf("sched: unknown policy %q: use fair, fsfs or early", s)
}

// TenantConfig configures a tenant.
type TenantConfig struct {
	// Name identifies the tenant in stats and logs.
	Name string
	// Exclusive tenants run alone: while one has unfinished tasks, tenants
	// created after it get no new runs, and its own tasks start only once
	// no tenant created before it is active and no other tenant has a run
	// in flight. While it has runs in flight, no other tenant gets one.
	Exclusive bool
	// Slots, if positive, bounds the tenant's runs in flight (queued ahead
	// at a node included): a computation that may use only some of the
	// nodes' slots, or whose executor runs at most so many at once. Its
	// tasks wait while it is at the bound and others take the free slots.
	// Tasks pinned to a node are counted but not held back.
	Slots int
}

// Tenant is one computation sharing the scheduler's nodes with others.
// Create it with [Scheduler.NewTenant] and give its tasks to the scheduler
// with [Task.Tenant] set; tasks with no tenant belong to the scheduler's
// default tenant (created with the scheduler, never exclusive).
type Tenant struct {
	s         *Scheduler
	name      string
	exclusive bool
	slots     int // TenantConfig.Slots
	created   time.Time

	// Guarded by the scheduler's lock.
	seq        uint64   // creation order
	queue      taskHeap // queued tasks not pinned to a node
	index      int      // in the scheduler's ready heap; -1 when not there
	unfinished int
	idle       chan struct{} // closed while unfinished == 0
	inflight   int           // runs dispatched and not ended, queued ahead included
	closed     bool
	// caps bound its runs in flight on some nodes, by node name
	// (SetTenantNodeSlots); onNode counts its runs in flight on those
	// nodes. Both nil while it has no bound.
	caps   map[string]int
	onNode map[string]int

	// Fair's accounting, in nanoseconds of slot-time.
	usage  int64
	picked uint64 // when it was last picked, in picks
	runs   int64  // runs that ended, for the mean run time
	stats  TenantStats
}

// Name returns the tenant's name.
func (t *Tenant) Name() string { return t.name }

// Wait blocks until the tenant has no unfinished task, or ctx is done.
func (t *Tenant) Wait(ctx context.Context) error {
	t.s.mu.Lock()
	idle := t.idle
	t.s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TenantStats is one tenant's line in the stats.
type TenantStats struct {
	Name      string
	Exclusive bool
	Created   time.Time
	Pending   int // queued, not running (pinned ones included)
	Running   int // dispatched and not ended (queued ahead at a node included)
	// Final tasks by state.
	Finished, Cancelled, Terminated, Abandoned int
	// SlotTime is the time its runs held slots (from their start to their
	// end as the executor reported them).
	SlotTime time.Duration
}

// NewTenant adds a tenant. It takes tasks until [Scheduler.CloseTenant].
func (s *Scheduler) NewTenant(cfg TenantConfig) *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTenantLocked(cfg)
}

func (s *Scheduler) newTenantLocked(cfg TenantConfig) *Tenant {
	s.tenantSeq++
	t := &Tenant{
		s:         s,
		name:      cfg.Name,
		exclusive: cfg.Exclusive,
		slots:     max(0, cfg.Slots),
		created:   time.Now(),
		seq:       s.tenantSeq,
		index:     -1,
		idle:      make(chan struct{}),
	}
	close(t.idle)
	s.tenants = append(s.tenants, t)
	return t
}

// SetTenantExecutor makes ex run t's tasks on the named node, sharing the
// node's slots with the other tenants there; tenants without one use the
// executor the node was added with. The scheduler owns ex from now on and
// closes it with the tenant ([Scheduler.CloseTenant]), the node
// ([Scheduler.RemoveNode]) or the scheduler; a node added again under the
// same name after going down starts with no tenant executors. On a node
// whose executor queues ahead (a [Prefetcher]), ex must be one too: it gets
// runs beyond the slots like the node's own.
func (s *Scheduler) SetTenantExecutor(t *Tenant, node string, ex Executor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.s != s || t.closed {
		return fmt.Errorf("%w: tenant %q", ErrClosed, t.name)
	}
	n, ok := s.byName[node]
	if !ok || n.down || n.removed {
		return fmt.Errorf("%w: %s", ErrNoNode, node)
	}
	if _, ok := n.tenantEx[t]; ok {
		return fmt.Errorf("sched: tenant %q already has an executor on node %s", t.name, node)
	}
	if _, ok := ex.(Prefetcher); n.pf != nil && !ok {
		return fmt.Errorf("sched: node %s queues runs ahead: tenant %q's executor must be a Prefetcher too", node, t.name)
	}
	if n.tenantEx == nil {
		n.tenantEx = map[*Tenant]Executor{}
	}
	n.tenantEx[t] = ex
	return nil
}

// SetTenantNodeSlots bounds t's runs in flight on the named node (queued
// ahead there included) to slots, whatever the node's own slots; 0 keeps
// t's tasks off the node (say, the node refused the computation), and a
// negative slots removes the bound. The bound holds for a node of that
// name added again later. Runs beyond a lowered bound that the node holds
// queued ahead are recalled; running ones go on. Tasks pinned to the node
// are not held back.
//
// Placing a task of a tenant with bounds costs a scan of the nodes that
// can take a run, not O(log n).
func (s *Scheduler) SetTenantNodeSlots(t *Tenant, node string, slots int) error {
	s.mu.Lock()
	if t.s != s || t.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: tenant %q", ErrClosed, t.name)
	}
	n := s.byName[node]
	if slots < 0 {
		delete(t.caps, node)
		delete(t.onNode, node)
		if len(t.caps) == 0 {
			t.caps, t.onNode = nil, nil // placed in O(log n) again
		}
		if n != nil {
			for r := range n.runs {
				if r.Task.ten == t {
					r.capped = false
				}
			}
		}
	} else {
		if t.caps == nil {
			t.caps, t.onNode = map[string]int{}, map[string]int{}
		}
		if _, ok := t.caps[node]; !ok && n != nil {
			for r := range n.runs {
				if r.Task.ten == t {
					r.capped = true
					t.onNode[node]++
				}
			}
		}
		t.caps[node] = slots
	}
	var recall []*Run
	if n != nil && slots >= 0 {
		recall = s.recallExcessLocked(n, t, t.onNode[node]-slots)
	}
	s.dispatchAndRecallLocked(recall)
	return nil
}

// takesLocked reports whether t may get another run on n (SetTenantNodeSlots).
func (t *Tenant) takesLocked(n *node) bool {
	c, ok := t.caps[n.name]
	return !ok || t.onNode[n.name] < c
}

// CloseTenant stops taking t's tasks, waits until they are all final,
// closes the executors set for t and removes t from the scheduler. If ctx
// ends first, the remaining tasks are cancelled (queued) or stopped
// (running) and CloseTenant returns ctx's error once all are final.
func (s *Scheduler) CloseTenant(ctx context.Context, t *Tenant) error {
	s.mu.Lock()
	if t.s != s || t == s.def || t.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: tenant %q", ErrClosed, t.name)
	}
	t.closed = true
	s.mu.Unlock()

	werr := t.Wait(ctx)
	if werr != nil {
		s.cancelTenant(t)
		// Executors report every stopped run; give them bounded time.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := t.Wait(cctx); err != nil {
			werr = errors.Join(werr, fmt.Errorf("sched: tenant %q: tasks still running: %w", t.name, err))
		}
	}
	s.mu.Lock()
	var exs []Executor
	var names []string
	for _, n := range s.nodes {
		if ex, ok := n.tenantEx[t]; ok {
			exs = append(exs, ex)
			names = append(names, n.name)
			delete(n.tenantEx, t)
		}
	}
	s.tenants = slices.DeleteFunc(s.tenants, func(x *Tenant) bool { return x == t })
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs := []error{werr}
	for i, ex := range exs {
		if err := ex.Close(cctx); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q on node %s: %w", t.name, names[i], err))
		}
	}
	return errors.Join(errs...)
}

// cancelTenant cancels t's queued tasks and stops its running ones.
func (s *Scheduler) cancelTenant(t *Tenant) {
	s.mu.Lock()
	for t.queue.Len() > 0 {
		s.finishLocked(heap.Pop(&t.queue).(*Task), Cancelled, Result{Outcome: Killed, Err: ErrCancelled})
	}
	s.readyFixLocked(t)
	var running []*Task
	for _, n := range s.nodes {
		for i := 0; i < n.pinned.Len(); {
			if x := n.pinned.items[i]; x.ten == t {
				heap.Remove(&n.pinned, i)
				s.finishLocked(x, Cancelled, Result{Outcome: Killed, Err: ErrCancelled})
				continue
			}
			i++
		}
		if n.pinned.Len() == 0 {
			delete(s.pinnedAt, n)
		}
		for r := range n.runs {
			if r.Task.ten == t {
				running = append(running, r.Task)
			}
		}
	}
	s.dispatchLocked()
	s.mu.Unlock()
	s.startPending()
	for _, x := range running {
		s.Cancel(x)
	}
}

// activateLocked notes a task for t: a tenant that becomes active starts
// level with the least-served active tenant (see Fair).
func (s *Scheduler) activateLocked(t *Tenant) {
	if t.unfinished == 0 {
		t.usage = max(t.usage, s.vclock)
		t.idle = make(chan struct{})
		if t.exclusive {
			s.exclusives = append(s.exclusives, t)
		}
	}
	t.unfinished++
}

func (s *Scheduler) deactivateLocked(t *Tenant) {
	if t.unfinished--; t.unfinished == 0 {
		close(t.idle)
		if t.exclusive {
			s.exclusives = slices.DeleteFunc(s.exclusives, func(x *Tenant) bool { return x == t })
		}
	}
}

// chargeLocked accounts a run of t dispatched now, and returns what it
// was charged (see Fair).
func (s *Scheduler) chargeLocked(t *Tenant) int64 {
	s.picks++
	t.picked = s.picks
	s.vclock = max(s.vclock, t.usage)
	est := int64(1)
	if t.runs > 0 {
		est = max(1, int64(t.stats.SlotTime)/t.runs)
	}
	t.usage += est
	t.inflight++
	s.inflight++
	return est
}

// settleLocked accounts the end of a run that held a slot for used.
func (s *Scheduler) settleLocked(t *Tenant, charged int64, used time.Duration) {
	t.inflight--
	s.inflight--
	t.usage += int64(used) - charged
	if used > 0 {
		t.runs++
		t.stats.SlotTime += used
	}
	s.readyFixLocked(t)
}

// readyFixLocked keeps t in the ready heap exactly while it has queued
// tasks and is below its Slots, at the place its policy key says.
func (s *Scheduler) readyFixLocked(t *Tenant) {
	ready := t.queue.Len() > 0 && (t.slots == 0 || t.inflight < t.slots)
	switch {
	case ready && t.index < 0:
		heap.Push(&s.ready, t)
	case ready:
		heap.Fix(&s.ready, t.index)
	case t.index >= 0:
		heap.Remove(&s.ready, t.index)
	}
}

// nextTenantLocked returns the tenant whose next task goes first, or nil.
// Without an active exclusive tenant it is the top of the ready heap; with
// one, the few ready tenants are scanned.
func (s *Scheduler) nextTenantLocked() *Tenant {
	if len(s.exclusives) == 0 {
		if s.ready.Len() == 0 {
			return nil
		}
		return s.ready.items[0]
	}
	running, first := s.gateLocked()
	var best *Tenant
	for _, t := range s.ready.items {
		if s.allowedLocked(t, running, first) && (best == nil || s.ready.less(t, best)) {
			best = t
		}
	}
	return best
}

// gateLocked returns the active exclusive tenant that has runs in flight
// (it runs alone, so there is at most one), and the earliest created active
// exclusive tenant.
func (s *Scheduler) gateLocked() (running, first *Tenant) {
	for _, t := range s.exclusives {
		if t.inflight > 0 {
			running = t
		}
		if first == nil || t.seq < first.seq {
			first = t
		}
	}
	return running, first
}

// allowedLocked reports whether t may get a new run, given gateLocked's
// answers: an exclusive tenant that runs keeps the nodes to itself; the
// earliest active exclusive tenant starts once no tenant created before it
// is active and nothing else is in flight, and holds back the tenants
// created after it meanwhile.
func (s *Scheduler) allowedLocked(t, running, first *Tenant) bool {
	switch {
	case running != nil:
		return t == running
	case first == nil:
		return true
	case t == first:
		if s.inflight > 0 {
			return false
		}
		for _, o := range s.tenants {
			if o.seq < first.seq && o.unfinished > 0 {
				return false
			}
		}
		return true
	}
	return t.seq < first.seq
}

// pinnedNextLocked returns the task pinned to n that goes next, or nil.
func (s *Scheduler) pinnedNextLocked(n *node) *Task {
	if len(s.exclusives) == 0 {
		return n.pinned.items[0]
	}
	running, first := s.gateLocked()
	var best *Task
	for _, t := range n.pinned.items {
		if s.allowedLocked(t.ten, running, first) && (best == nil || n.pinned.less(t, best)) {
			best = t
		}
	}
	return best
}

// tenantStatsLocked returns t's stats.
func (s *Scheduler) tenantStatsLocked(t *Tenant) TenantStats {
	st := t.stats
	st.Name = t.name
	st.Exclusive = t.exclusive
	st.Created = t.created
	st.Pending = t.unfinished - t.inflight
	st.Running = t.inflight
	return st
}

// tenantHeap orders the tenants with queued tasks by the policy.
type tenantHeap struct {
	indexedHeap[*Tenant]
	policy Policy
}

func (h *tenantHeap) less(a, b *Tenant) bool {
	switch h.policy {
	case Fair:
		if a.usage != b.usage {
			return a.usage < b.usage
		}
		if a.picked != b.picked {
			return a.picked < b.picked
		}
	case FSFS:
		return a.queue.items[0].seq < b.queue.items[0].seq
	}
	return a.seq < b.seq
}
func (h *tenantHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (t *Tenant) setHeapIndex(i int)     { t.index = i }

// nodeHeap holds the nodes that can take a run, least loaded (busy/slots)
// first, then in the order they were added, so placement costs O(log n) in
// nodes.
type nodeHeap struct{ indexedHeap[*node] }

func (h *nodeHeap) less(a, b *node) bool {
	// a.busy/a.slots < b.busy/b.slots without division.
	if x, y := a.busy*b.slots, b.busy*a.slots; x != y {
		return x < y
	}
	return a.seq < b.seq
}
func (h *nodeHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (n *node) setHeapIndex(i int)     { n.hidx = i }

// placeLocked updates what the scheduler keeps about n after a change of
// its load or state: its queue-ahead depth, whether it is in the free heap
// and where, and whether it counts as usable.
func (s *Scheduler) placeLocked(n *node) {
	if n.dropped {
		return
	}
	if n.pf != nil {
		n.prefetch = max(0, n.pf.Prefetch())
	}
	switch free := n.free(s.ahead); {
	case free && n.hidx < 0:
		heap.Push(&s.free, n)
	case free:
		heap.Fix(&s.free, n.hidx)
	case n.hidx >= 0:
		heap.Remove(&s.free, n.hidx)
	}
	usable := !n.down && n.allocated && n.slots > 0
	if usable != n.usable {
		n.usable = usable
		if usable {
			s.usable++
		} else {
			s.usable--
		}
	}
}

// syncAheadLocked re-places the nodes that queue ahead when queueing ahead
// is turned on or off (see recallLocked).
func (s *Scheduler) syncAheadLocked() {
	ahead := len(s.priorities) < 2
	if ahead == s.ahead {
		return
	}
	s.ahead = ahead
	for _, n := range s.nodes {
		if n.pf != nil {
			s.placeLocked(n)
		}
	}
}
