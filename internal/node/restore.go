package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/drove-dev/drove/internal/atomicfile"
	drovev1 "github.com/drove-dev/drove/internal/gen/drove/v1"
	"github.com/drove-dev/drove/internal/nodeproto"
	"github.com/drove-dev/drove/internal/sched"
)

// A computation's directory holds, beside its files, metaName (written at
// Setup) and, while its client is away, spoolName. A node started on the
// same directory after it died picks up the computations whose spool holds
// events, so that their client can still recover its results.
const (
	metaName  = "computation.json"
	spoolName = "events.spool"
)

// compMeta is what a restarted node needs of a computation to serve its
// results again.
type compMeta struct {
	ClientID string `json:"client_id"`
	ID       string `json:"id"`
	// HeartbeatMs is the interval of its Results streams.
	HeartbeatMs int64 `json:"heartbeat_ms"`
}

var errMeta = errors.New("drove: node: malformed computation metadata")

// decodeMeta decodes and checks a computation's metadata file.
func decodeMeta(b []byte) (compMeta, error) {
	var m compMeta
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return compMeta{}, fmt.Errorf("%w: %w", errMeta, err)
	}
	if d.More() {
		return compMeta{}, fmt.Errorf("%w: data after the object", errMeta)
	}
	if !validClientID(m.ClientID) {
		return compMeta{}, fmt.Errorf("%w: bad client id %q", errMeta, m.ClientID)
	}
	if !validClientID(m.ID) {
		return compMeta{}, fmt.Errorf("%w: bad computation id %q", errMeta, m.ID)
	}
	if m.HeartbeatMs <= 0 || m.HeartbeatMs > math.MaxUint32 {
		return compMeta{}, fmt.Errorf("%w: heartbeat interval %d ms out of range", errMeta, m.HeartbeatMs)
	}
	return m, nil
}

// writeMeta records c's metadata in its directory, atomically: a node that
// dies while writing it leaves none, never half of it.
func (c *Computation) writeMeta() error {
	b, err := json.Marshal(compMeta{ClientID: c.clientID, ID: c.id, HeartbeatMs: c.hb.Milliseconds()})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(atomicfile.OS, filepath.Join(c.dir, metaName), 0o600, time.Time{}, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// restore picks up the computations an earlier node process on the same
// directory left with undelivered events (see restoreOne). Nothing here
// stops the node from starting: what cannot be read is left in place, with
// a warning.
func (n *Node) restore() {
	clients, err := os.ReadDir(filepath.Join(n.cfg.Dir, "comp"))
	if err != nil {
		n.log.Warn("cannot list computations left by an earlier run", "dir", n.cfg.Dir, "err", err)
		return
	}
	for _, cl := range clients {
		if !cl.IsDir() {
			continue
		}
		comps, err := os.ReadDir(filepath.Join(n.cfg.Dir, "comp", cl.Name()))
		if err != nil {
			n.log.Warn("cannot list computations left by an earlier run", "dir", filepath.Join(n.cfg.Dir, "comp", cl.Name()), "err", err)
			continue
		}
		for _, d := range comps {
			if d.IsDir() {
				n.restoreOne(filepath.Join(n.cfg.Dir, "comp", cl.Name(), d.Name()))
			}
		}
		// Empty once its computations are gone.
		_ = os.Remove(filepath.Join(n.cfg.Dir, "comp", cl.Name()))
	}
}

// restoreOne picks up the computation in dir: with events in its spool, it
// becomes a closed computation of its client that only serves those events
// (Computations, Results, Close), until the client collects them or the
// zombie interval, counted from now, ends. A job that had begun (its Started
// event is in the spool) without a result is given one: Lost, because the
// node died under it. Without events, all was delivered and the directory
// is removed.
func (n *Node) restoreOne(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		n.log.Warn("skipping a computation left by an earlier run: no metadata; remove the directory, or start the node with --clean", "dir", dir, "err", err)
		return
	}
	m, err := decodeMeta(b)
	if err == nil && (m.ID != filepath.Base(dir) || m.ClientID != filepath.Base(filepath.Dir(dir))) {
		err = fmt.Errorf("%w: it names computation %s of client %s", errMeta, m.ID, m.ClientID)
	}
	if err != nil {
		n.log.Warn("skipping a computation left by an earlier run; remove the directory, or start the node with --clean", "dir", dir, "err", err)
		return
	}
	spool := filepath.Join(dir, spoolName)
	evs, err := readSpool(spool)
	if err != nil {
		// The events before the bad frame are good: a node that died
		// while writing one leaves it cut short.
		n.log.Warn("event spool left by an earlier run is damaged: keeping the events before the damage", "dir", dir, "events", len(evs), "err", err)
	}
	if len(evs) == 0 {
		if err == nil {
			n.removeLeftover(dir)
		}
		return
	}
	evs = append(evs, lostJobs(evs, n.cfg.Name)...)
	// Written again, without any damaged tail, so that the outbox can
	// append to it as it does to its own.
	if err := atomicfile.WriteFile(atomicfile.OS, spool, 0o600, time.Time{}, func(w io.Writer) error {
		var b []byte
		for _, ev := range evs {
			var err error
			if b, err = nodeproto.AppendEvent(b, ev); err != nil {
				return err
			}
		}
		_, err := w.Write(b)
		return err
	}); err != nil {
		n.log.Warn("skipping a computation left by an earlier run: cannot rewrite its event spool", "dir", dir, "err", err)
		return
	}
	c := &Computation{
		n:        n,
		id:       m.ID,
		clientID: m.ClientID,
		dir:      dir,
		hb:       time.Duration(m.HeartbeatMs) * time.Millisecond,
		jobs:     map[uint64]*job{},
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
		closing:  make(chan struct{}),
		fileWait: map[uint64]chan string{},
		closeWhy: "the node restarted",
	}
	c.closed.Store(true)
	c.out = newOutbox(spool, func(err error) {
		n.log.Warn("event spool", "computation", c.id, "err", err)
	})
	if err := c.out.reopen(evs[len(evs)-1].Seq); err != nil {
		n.log.Warn("skipping a computation left by an earlier run: cannot open its event spool", "dir", dir, "err", err)
		return
	}
	n.mu.Lock()
	n.comps[c.id] = c
	n.mu.Unlock()
	n.met.computations.Inc()
	n.log.Info("computation left by an earlier run kept for its client to recover", "computation", c.id, "client", c.clientID, "events", len(evs))
}

// readSpool reads the events in a spool file; none if there is none.
func readSpool(path string) ([]*drovev1.Event, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return nodeproto.ReadEvents(f)
}

// lostJobs gives a Lost result to every job that began in evs but has no
// result there. Jobs queued when the node died, or whose start the client
// had acknowledged, are unknown to the spool and get no result.
func lostJobs(evs []*drovev1.Event, node string) []*drovev1.Event {
	seq := evs[len(evs)-1].Seq
	begun := map[uint64]int64{}
	var order []uint64
	for _, ev := range evs {
		switch ev.Kind.(type) {
		case *drovev1.Event_StartedUnixNano:
			if _, ok := begun[ev.RunId]; !ok {
				order = append(order, ev.RunId)
			}
			begun[ev.RunId] = ev.JobId
		case *drovev1.Event_Result:
			delete(begun, ev.RunId)
		}
	}
	var out []*drovev1.Event
	for _, run := range order {
		job, ok := begun[run]
		if !ok {
			continue
		}
		seq++
		res := nodeproto.ResultProto(sched.Result{Outcome: sched.Lost, Err: fmt.Errorf("%w: %s stopped while the job ran (the node process died and was restarted)", sched.ErrNodeLost, node)})
		out = append(out, &drovev1.Event{Seq: seq, RunId: run, JobId: job, Kind: &drovev1.Event_Result{Result: res}})
	}
	return out
}

// removeLeftover removes a computation directory an earlier run left with
// nothing undelivered.
func (n *Node) removeLeftover(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		n.log.Warn("removing a computation directory left by an earlier run", "dir", dir, "err", err)
	}
}
