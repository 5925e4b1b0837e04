// Package state is a drove scheduler's state on disk (drove scheduler
// --state): one embedded bbolt database that holds, for every open client
// computation, its set-up request, the jobs it submitted that have no
// result yet (their inputs, and the node computation each was sent to),
// the results its client has not acknowledged, and the node computations
// it has on the scheduler's nodes. A scheduler killed with kill -9 and
// started again on the same database picks all of it up (package
// scheduler, restore.go).
//
// Writes go through one writer goroutine that commits everything queued
// since its last commit in one transaction: a write returns at once, and
// Sync waits until every write queued before it is on disk. Callers Sync
// before they tell someone else that something is kept (the answer to a
// client's Submit, a job sent to a node, an acknowledgement to a node), so
// that each of those costs one commit shared with whatever else is
// waiting, not one commit per job.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the database's file name in the state directory.
const FileName = "scheduler.db"

// Bucket layout: bucketComps holds one record per computation, by id;
// bucketData holds one bucket per computation, by id, with bucketJobs
// (by run id), bucketEvents (by sequence number) and bucketNodes (by node
// address). Integer keys are big-endian, so that keys sort as numbers.
var (
	bucketComps  = []byte("computations")
	bucketData   = []byte("data")
	bucketJobs   = []byte("jobs")
	bucketEvents = []byte("events")
	bucketNodes  = []byte("nodes")
)

// ErrFormat is wrapped by the error for a record that cannot be decoded.
var ErrFormat = errors.New("drove: scheduler state: malformed record")

// Computation is a client computation's record.
type Computation struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	// HeartbeatMs is the interval of its Results streams.
	HeartbeatMs int64 `json:"heartbeat_ms"`
	// Slots is how many of its jobs run at once.
	Slots int `json:"slots"`
	// Setup is the client's Setup request (protobuf); its blobs are in the
	// daemon's blob store.
	Setup []byte `json:"setup"`
	// MaxRunID is the highest run id the client submitted: a batch sent
	// again after a restart is not taken twice.
	MaxRunID uint64 `json:"max_run_id"`
	// Seq is the highest sequence number of an event kept for the client.
	Seq uint64 `json:"seq"`
}

// Job is a job without a result its client has.
type Job struct {
	RunID uint64 // the client's run id, unique in the computation
	JobID int64  // the client's job id, given back in events
	Input []byte
	// Node, NodeComp and NodeRun say where the job was last sent: the
	// node's address, the computation there and the run id there. Node is
	// "" for a job that was never sent.
	Node     string
	NodeComp string
	NodeRun  uint64
	// Result, if not nil, is the job's result (a drove.v1.Result,
	// protobuf) received from its node but not yet an event for the
	// client.
	Result []byte
}

// Event is an event kept for the client until it acknowledges it.
type Event struct {
	Seq  uint64
	Data []byte // a drove.v1.Event, protobuf
}

// Saved is a computation with everything kept for it.
type Saved struct {
	Computation
	Jobs   []Job   // by run id
	Events []Event // by sequence number
	// Nodes are its computations on nodes: computation id by address.
	Nodes map[string]string
}

// Dispatch says where one job was sent.
type Dispatch struct {
	RunID   uint64
	NodeRun uint64
}

// DB is the scheduler's state database.
type DB struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []func(*bolt.Tx) error
	queued  uint64 // writes queued so far
	written uint64 // writes committed (or failed) so far
	err     error  // the first write that failed
	wake    chan struct{}
	cond    *sync.Cond
	closed  bool
	done    chan struct{}
}

// Open opens (creating it if needed) the database at path, which only one
// process may have open: a second scheduler on the same directory waits
// for at most a second, then fails.
func Open(path string) (*DB, error) {
	// NoFreelistSync: the freelist is rebuilt on open instead of written
	// at every commit, which halves what a small commit writes.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("drove: scheduler state %s is in use by another process (another drove scheduler with the same --state?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("drove: scheduler state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketComps, bucketData} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("drove: scheduler state %s: %w", path, err)
	}
	d := &DB{db: db, wake: make(chan struct{}, 1), done: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	go d.writer()
	return d, nil
}

// Close commits what is queued and closes the database.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.poke()
	<-d.done
	return d.db.Close()
}

func (d *DB) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// writer commits the queued writes, all that are queued in one
// transaction, until Close.
func (d *DB) writer() {
	defer close(d.done)
	for {
		<-d.wake
		for {
			d.mu.Lock()
			ops := d.queue
			d.queue = nil
			upto := d.queued
			closed := d.closed
			d.mu.Unlock()
			if len(ops) == 0 {
				if closed {
					return
				}
				break
			}
			err := d.db.Update(func(tx *bolt.Tx) error {
				for _, op := range ops {
					if err := op(tx); err != nil {
						return err
					}
				}
				return nil
			})
			d.mu.Lock()
			if err != nil && d.err == nil {
				d.err = fmt.Errorf("drove: scheduler state: %w", err)
			}
			d.written = upto
			d.cond.Broadcast()
			d.mu.Unlock()
		}
	}
}

// write queues op.
func (d *DB) write(op func(*bolt.Tx) error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.queue = append(d.queue, op)
	d.queued++
	d.mu.Unlock()
	d.poke()
}

// Sync waits until every write queued before it is committed, and returns
// the first error any write met (the state on disk then lacks it, and the
// scheduler should not promise that anything is kept).
func (d *DB) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	upto := d.queued
	for d.written < upto {
		d.cond.Wait()
	}
	return d.err
}

func key(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// compData returns the bucket of computation id, creating it if create.
func compData(tx *bolt.Tx, id string, create bool) (*bolt.Bucket, error) {
	data := tx.Bucket(bucketData)
	if b := data.Bucket([]byte(id)); b != nil || !create {
		return b, nil
	}
	b, err := data.CreateBucket([]byte(id))
	if err != nil {
		return nil, err
	}
	for _, s := range [][]byte{bucketJobs, bucketEvents, bucketNodes} {
		if _, err := b.CreateBucket(s); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// updateComp applies f to computation id's record; a computation that is
// gone is left alone.
func updateComp(tx *bolt.Tx, id string, f func(*Computation)) error {
	b := tx.Bucket(bucketComps)
	v := b.Get([]byte(id))
	if v == nil {
		return nil
	}
	c, err := DecodeComputation(v)
	if err != nil {
		return err
	}
	f(&c)
	nv, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), nv)
}

// PutComputation queues keeping c (a new computation).
func (d *DB) PutComputation(c Computation) {
	d.write(func(tx *bolt.Tx) error {
		v, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketComps).Put([]byte(c.ID), v); err != nil {
			return err
		}
		_, err = compData(tx, c.ID, true)
		return err
	})
}

// DeleteComputation queues forgetting computation id and all it holds.
func (d *DB) DeleteComputation(id string) {
	d.write(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketComps).Delete([]byte(id)); err != nil {
			return err
		}
		if tx.Bucket(bucketData).Bucket([]byte(id)) == nil {
			return nil
		}
		return tx.Bucket(bucketData).DeleteBucket([]byte(id))
	})
}

// AddJobs queues keeping jobs submitted to computation comp, whose
// highest run id is now maxRunID.
func (d *DB) AddJobs(comp string, maxRunID uint64, jobs []Job) {
	d.write(func(tx *bolt.Tx) error {
		b, err := compData(tx, comp, false)
		if b == nil || err != nil {
			return err
		}
		jb := b.Bucket(bucketJobs)
		for _, j := range jobs {
			if err := jb.Put(key(j.RunID), AppendJob(nil, j)); err != nil {
				return err
			}
		}
		return updateComp(tx, comp, func(c *Computation) { c.MaxRunID = max(c.MaxRunID, maxRunID) })
	})
}

// updateJob applies f to job run of computation comp, if it is kept.
func updateJob(tx *bolt.Tx, comp string, run uint64, f func(*Job)) error {
	b, err := compData(tx, comp, false)
	if b == nil || err != nil {
		return err
	}
	jb := b.Bucket(bucketJobs)
	v := jb.Get(key(run))
	if v == nil {
		return nil
	}
	j, err := DecodeJob(run, v)
	if err != nil {
		return err
	}
	f(&j)
	return jb.Put(key(run), AppendJob(nil, j))
}

// PutNode queues keeping that computation comp is computation nodeComp on
// the node at addr.
func (d *DB) PutNode(comp, addr, nodeComp string) {
	d.write(func(tx *bolt.Tx) error {
		b, err := compData(tx, comp, false)
		if b == nil || err != nil {
			return err
		}
		return b.Bucket(bucketNodes).Put([]byte(addr), []byte(nodeComp))
	})
}

// DeleteNode queues forgetting computation comp's computation on the node
// at addr, if it is nodeComp.
func (d *DB) DeleteNode(comp, addr, nodeComp string) {
	d.write(func(tx *bolt.Tx) error {
		b, err := compData(tx, comp, false)
		if b == nil || err != nil {
			return err
		}
		nb := b.Bucket(bucketNodes)
		if string(nb.Get([]byte(addr))) != nodeComp {
			return nil
		}
		return nb.Delete([]byte(addr))
	})
}

// Dispatched queues keeping that jobs of computation comp were sent to
// computation nodeComp on the node at addr.
func (d *DB) Dispatched(comp, addr, nodeComp string, ds []Dispatch) {
	d.write(func(tx *bolt.Tx) error {
		for _, x := range ds {
			err := updateJob(tx, comp, x.RunID, func(j *Job) { j.Node, j.NodeComp, j.NodeRun = addr, nodeComp, x.NodeRun })
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Undispatched queues keeping that job run of computation comp is queued
// again (its node gave it back unstarted, or was lost under it).
func (d *DB) Undispatched(comp string, run uint64) {
	d.write(func(tx *bolt.Tx) error {
		return updateJob(tx, comp, run, func(j *Job) { j.Node, j.NodeComp, j.NodeRun = "", "", 0 })
	})
}

// Result queues keeping the result its node gave job run of computation
// comp, until Finish makes it an event.
func (d *DB) Result(comp string, run uint64, result []byte) {
	d.write(func(tx *bolt.Tx) error {
		return updateJob(tx, comp, run, func(j *Job) { j.Result = result })
	})
}

// Finish queues replacing job run of computation comp with its result
// event ev for the client.
func (d *DB) Finish(comp string, run uint64, ev Event) {
	d.write(func(tx *bolt.Tx) error {
		b, err := compData(tx, comp, false)
		if b == nil || err != nil {
			return err
		}
		if err := b.Bucket(bucketJobs).Delete(key(run)); err != nil {
			return err
		}
		if err := b.Bucket(bucketEvents).Put(key(ev.Seq), ev.Data); err != nil {
			return err
		}
		return updateComp(tx, comp, func(c *Computation) { c.Seq = max(c.Seq, ev.Seq) })
	})
}

// SetSeq queues keeping that computation comp's events are numbered up to
// seq at least.
func (d *DB) SetSeq(comp string, seq uint64) {
	d.write(func(tx *bolt.Tx) error {
		return updateComp(tx, comp, func(c *Computation) { c.Seq = max(c.Seq, seq) })
	})
}

// Ack queues forgetting computation comp's events up to seq: the client
// has them.
func (d *DB) Ack(comp string, seq uint64) {
	d.write(func(tx *bolt.Tx) error {
		b, err := compData(tx, comp, false)
		if b == nil || err != nil {
			return err
		}
		c := b.Bucket(bucketEvents).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Load returns every computation kept, after the writes queued so far.
// A computation whose records cannot be decoded is returned in bad, with
// why, and left in place.
func (d *DB) Load() (saved []Saved, bad map[string]error, err error) {
	if err := d.Sync(); err != nil {
		return nil, nil, err
	}
	bad = map[string]error{}
	err = d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketComps).ForEach(func(k, v []byte) error {
			s, err := loadOne(tx, k, v)
			if err != nil {
				bad[string(k)] = err
				return nil
			}
			saved = append(saved, s)
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("drove: scheduler state: %w", err)
	}
	return saved, bad, nil
}

func loadOne(tx *bolt.Tx, k, v []byte) (Saved, error) {
	c, err := DecodeComputation(v)
	if err != nil {
		return Saved{}, err
	}
	if c.ID != string(k) {
		return Saved{}, fmt.Errorf("%w: computation %q kept under %q", ErrFormat, c.ID, k)
	}
	s := Saved{Computation: c, Nodes: map[string]string{}}
	b := tx.Bucket(bucketData).Bucket(k)
	if b == nil {
		return s, nil
	}
	if jb := b.Bucket(bucketJobs); jb != nil {
		err := jb.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: job key of %d bytes", ErrFormat, len(k))
			}
			j, err := DecodeJob(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			s.Jobs = append(s.Jobs, j)
			return nil
		})
		if err != nil {
			return Saved{}, err
		}
	}
	if eb := b.Bucket(bucketEvents); eb != nil {
		err := eb.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: event key of %d bytes", ErrFormat, len(k))
			}
			s.Events = append(s.Events, Event{Seq: binary.BigEndian.Uint64(k), Data: append([]byte(nil), v...)})
			return nil
		})
		if err != nil {
			return Saved{}, err
		}
	}
	if nb := b.Bucket(bucketNodes); nb != nil {
		_ = nb.ForEach(func(k, v []byte) error {
			s.Nodes[string(k)] = string(v)
			return nil
		})
	}
	return s, nil
}

// DecodeComputation decodes and checks a computation record.
func DecodeComputation(b []byte) (Computation, error) {
	var c Computation
	if err := json.Unmarshal(b, &c); err != nil {
		return Computation{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if c.ID == "" || c.ClientID == "" {
		return Computation{}, fmt.Errorf("%w: computation without an id or client id", ErrFormat)
	}
	if c.HeartbeatMs <= 0 || c.Slots < 0 {
		return Computation{}, fmt.Errorf("%w: heartbeat %d ms, slots %d", ErrFormat, c.HeartbeatMs, c.Slots)
	}
	return c, nil
}

// jobVersion is the first byte of a job record.
const jobVersion = 1

// AppendJob appends j's record (all but its run id, which is its key) to
// b: a version byte, then the job id (varint), the node run id
// (uvarint) and the node address, node computation, input and result,
// each a uvarint length and bytes. A result of length 0 is none.
func AppendJob(b []byte, j Job) []byte {
	b = append(b, jobVersion)
	b = binary.AppendVarint(b, j.JobID)
	b = binary.AppendUvarint(b, j.NodeRun)
	for _, s := range [][]byte{[]byte(j.Node), []byte(j.NodeComp), j.Input, j.Result} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// DecodeJob decodes the record of job run (see AppendJob). The slices it
// returns are copies.
func DecodeJob(run uint64, b []byte) (Job, error) {
	bad := func(what string) (Job, error) {
		return Job{}, fmt.Errorf("%w: job %d: %s", ErrFormat, run, what)
	}
	if len(b) == 0 || b[0] != jobVersion {
		return bad("unknown version")
	}
	b = b[1:]
	j := Job{RunID: run}
	var n int
	if j.JobID, n = binary.Varint(b); n <= 0 {
		return bad("bad job id")
	}
	b = b[n:]
	if j.NodeRun, n = binary.Uvarint(b); n <= 0 {
		return bad("bad node run id")
	}
	b = b[n:]
	var fields [4][]byte
	for i := range fields {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return bad("bad length")
		}
		fields[i] = append([]byte(nil), b[n:n+int(l)]...)
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return bad("data after the record")
	}
	j.Node, j.NodeComp, j.Input = string(fields[0]), string(fields[1]), fields[2]
	if len(fields[3]) > 0 {
		j.Result = fields[3]
	}
	if len(j.Input) == 0 {
		j.Input = nil
	}
	return j, nil
}
