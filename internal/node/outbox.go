package node

import (
	"context"
	"os"
	"sort"
	"sync"
	"time"

	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
)

// outbox holds a computation's events until the client acknowledges them.
// While a Results stream is attached they wait in memory; while the client
// is away they go to a spool file, so a long absence costs disk, not
// memory, and come back in order when it returns.
type outbox struct {
	spoolPath string
	onErr     func(error)

	mu       sync.Mutex
	seq      uint64
	acked    uint64
	mem      []*drovev1.Event // unacknowledged, ascending seq
	spool    *os.File         // open while detached with events in it
	gen      uint64           // of the latest stream
	attached bool
	cancel   context.CancelFunc
	notify   chan struct{} // capacity 1: something to send
	away     time.Time     // when the client left; zero while attached
	closed   bool
}

func newOutbox(spoolPath string, onErr func(error)) *outbox {
	return &outbox{spoolPath: spoolPath, onErr: onErr, notify: make(chan struct{}, 1), away: time.Now()}
}

// reopen takes up the spool file an earlier node process left, whose
// events end at seq: the client is away, and gets them when it returns.
func (o *outbox) reopen(seq uint64) error {
	f, err := os.OpenFile(o.spoolPath, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.spool, o.seq = f, seq
	return nil
}

// spooled reports whether events wait in the spool file for the client.
func (o *outbox) spooled() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.spool != nil
}

// push gives ev the next sequence number and queues it; it returns the
// number, 0 once the outbox is closed.
func (o *outbox) push(ev *drovev1.Event) (seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0
	}
	o.seq++
	ev.Seq = o.seq
	if !o.attached {
		o.spoolLocked([]*drovev1.Event{ev})
		return ev.Seq
	}
	o.mem = append(o.mem, ev)
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return ev.Seq
}

// spoolLocked appends evs to the spool file; if that fails they stay in
// memory, which is still correct, just not bounded.
func (o *outbox) spoolLocked(evs []*drovev1.Event) {
	var b []byte
	for _, ev := range evs {
		var err error
		if b, err = nodeproto.AppendEvent(b, ev); err != nil {
			o.onErr(err)
			o.mem = append(o.mem, ev)
			return
		}
	}
	if o.spool == nil {
		f, err := os.OpenFile(o.spoolPath, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			o.onErr(err)
			o.mem = append(o.mem, evs...)
			return
		}
		o.spool = f
	}
	if _, err := o.spool.Write(b); err != nil {
		o.onErr(err)
		o.mem = append(o.mem, evs...)
	}
}

// attach starts a stream that has received events up to ack. A stream
// already attached is cut (its client reconnected). It returns the
// stream's generation and where it starts.
func (o *outbox) attach(ack uint64, cancel context.CancelFunc) (gen uint64, notify <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cancel != nil {
		o.cancel()
	}
	if o.spool != nil {
		_, _ = o.spool.Seek(0, 0)
		evs, err := nodeproto.ReadEvents(o.spool)
		if err != nil {
			o.onErr(err)
		}
		o.spool.Close()
		o.spool = nil
		_ = os.Remove(o.spoolPath)
		// Spooled events are older than any left in memory.
		o.mem = append(evs, o.mem...)
	}
	o.ackLocked(ack)
	o.gen++
	o.attached = true
	o.cancel = cancel
	o.away = time.Time{}
	return o.gen, o.notify
}

// detach ends stream gen: the client is away from now on.
func (o *outbox) detach(gen uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if gen != o.gen || !o.attached {
		return
	}
	o.cancel = nil
	o.away = time.Now()
	if !o.closed && len(o.mem) > 0 {
		mem := o.mem
		o.mem = nil
		o.spoolLocked(mem)
	}
	o.attached = false
}

// ack drops events up to seq.
func (o *outbox) ack(seq uint64) {
	o.mu.Lock()
	o.ackLocked(seq)
	o.mu.Unlock()
}

// unacked counts the events the client has not acknowledged.
func (o *outbox) unacked() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seq - o.acked
}

func (o *outbox) ackLocked(seq uint64) {
	if seq <= o.acked {
		return
	}
	o.acked = seq
	i := sort.Search(len(o.mem), func(i int) bool { return o.mem[i].Seq > seq })
	clear(o.mem[:i])
	o.mem = o.mem[i:]
}

// after returns up to max events after seq.
func (o *outbox) after(seq uint64, max int) []*drovev1.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	// mem is sorted by seq: find the first event after seq without a
	// scan, which would make a stream's reads quadratic between acks.
	i := sort.Search(len(o.mem), func(i int) bool { return o.mem[i].Seq > seq })
	end := min(len(o.mem), i+max)
	return append([]*drovev1.Event(nil), o.mem[i:end]...)
}

// last returns the sequence number of the latest event and how far the
// client acknowledged them.
func (o *outbox) last() (seq, acked uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seq, o.acked
}

// touch records contact from the client.
func (o *outbox) touch() {
	o.mu.Lock()
	if !o.away.IsZero() {
		o.away = time.Now()
	}
	o.mu.Unlock()
}

// awaySince returns how long the client has been away (0 while attached).
func (o *outbox) awaySince(now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.away.IsZero() {
		return 0
	}
	return now.Sub(o.away)
}

func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.cancel != nil {
		o.cancel()
	}
	if o.spool != nil {
		o.spool.Close()
		o.spool = nil
	}
	o.mem = nil
}
