package drove

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/drove-dev/drove/internal/discovery"
	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/recoverfile"
)

// WithClientID names this client to its drove nodes. A client process that
// goes away without closing its cluster (it crashed, or exited) leaves its
// jobs' results on the nodes, kept for it under this name; a new process
// collects them with RecoverJobs and the same name. The default is the host
// name with a random suffix, which no later process can know.
func WithClientID(id string) Option {
	return optionFunc(func(c *config) { c.clientID = id })
}

// WithRecoverFile makes a cluster of drove nodes keep a recover file at
// path: its client id (WithClientID's, or the one generated), its
// computation, and the address of every node it set up the computation on,
// rewritten as nodes join (discovery, late nodes) before they get a job.
// If the client goes away without closing the cluster (it crashed, it was
// killed), another process collects its jobs' results with
// RecoverFromFile, or drove recover on the command line. Close removes the
// file once the cluster is closed, since nothing is left to collect then;
// so does a NewCluster that fails. The file is JSON (version 1, mode 0600,
// written atomically: see docs/node.md) and never holds the secret. It
// needs drove nodes (WithNodes): an embedded cluster's jobs end with its
// process. The default is no file.
func WithRecoverFile(path string) Option {
	return optionFunc(func(c *config) { c.recover = path })
}

// recoverLog is a cluster's recover file (WithRecoverFile).
type recoverLog struct {
	path string

	mu sync.Mutex // held while writing, so that writes land in order
	f  recoverfile.File
}

// createRecoverLog writes the recover file, with no node yet.
func createRecoverLog(path, clientID string, comp recoverfile.Computation) (*recoverLog, error) {
	l := &recoverLog{path: path, f: recoverfile.File{ClientID: clientID, Computation: comp}}
	if err := recoverfile.Write(path, &l.f); err != nil {
		return nil, err
	}
	return l, nil
}

// add records a node the computation is set up on. The node must not get a
// job before add returns: a job on a node the file does not name could not
// be recovered.
func (l *recoverLog) add(addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.f.Nodes, addr) {
		return nil
	}
	l.f.Nodes = append(l.f.Nodes, addr)
	if err := recoverfile.Write(l.path, &l.f); err != nil {
		l.f.Nodes = l.f.Nodes[:len(l.f.Nodes)-1]
		return err
	}
	return nil
}

// remove removes the file: the cluster closed, nothing is left to collect.
func (l *recoverLog) remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drove: removing the recover file of a closed cluster: %w", err)
	}
	return nil
}

// recoverComputation describes fn as a recover file names it. A program is
// named by its absolute path, found as NewCluster finds it, or as given
// when it is no longer there.
func recoverComputation[In, Out any](fn *Function[In, Out]) (recoverfile.Computation, error) {
	switch {
	case fn.shell:
		return recoverfile.Computation{}, errors.New("drove: shell commands run over SSH and have no results to recover")
	case fn.program != "":
		path, err := programPath(fn.program)
		if err != nil {
			if path, err = filepath.Abs(fn.program); err != nil {
				return recoverfile.Computation{}, err
			}
		}
		return recoverfile.Computation{Kind: recoverfile.KindProgram, Name: path, Result: typeName[Out]()}, nil
	}
	return recoverfile.Computation{Kind: recoverfile.KindFunc, Name: fn.name, Result: typeName[Out]()}, nil
}

// RecoverFromFile is RecoverJobs for the client that wrote the recover
// file at path (see WithRecoverFile): it collects, from the nodes the file
// names and under its client id, the results of that client's jobs. fn
// must be the computation the client ran (the same registered function,
// or a Program of the same path): another one is an error wrapping
// ErrRecoverMismatch that names both. A file that cannot be used is an
// error wrapping ErrRecoverFile; a missing one wraps fs.ErrNotExist (a
// cluster that closed cleanly removed it: there is nothing to collect).
// The file is left as it is: recovering again finds nothing more.
func RecoverFromFile[In, Out any](ctx context.Context, fn *Function[In, Out], path string, opts ...Option) ([]RecoveredJob[Out], error) {
	if fn == nil {
		return nil, errors.New("drove: RecoverFromFile: nil computation")
	}
	f, err := recoverfile.Read(path)
	if err != nil {
		return nil, err
	}
	want, err := recoverComputation(fn)
	if err != nil {
		return nil, err
	}
	if got := f.Computation; got != want {
		return nil, fmt.Errorf("%w: %s is for the %s %s (results %s), not the %s %s (results %s)", ErrRecoverMismatch,
			path, got.Kind, got.Name, got.Result, want.Kind, want.Name, want.Result)
	}
	return RecoverJobs(ctx, fn, f.ClientID, f.Nodes, opts...)
}

// RecoveredJob is a job's outcome kept by a node for a client that went
// away.
type RecoveredJob[Out any] struct {
	ID     int64  // the job's ID in the client that submitted it
	Node   string // the node's address
	Status Status // Finished, Terminated, Cancelled or Abandoned
	Result Out    // for Finished jobs
	Err    error  // for the others
	Stdout []byte
	Stderr []byte
	Start  time.Time
	End    time.Time
}

// RecoverJobs comes back, as the client named id (see WithClientID), for
// the results the given drove nodes kept after that client went away, as
// dispy's recover_jobs: it waits for the client's jobs still queued or
// running there, collects every result, and closes those computations on
// the nodes. fn decodes the results; the options that matter are WithSecret
// and WithTLS. A result delivered just before the client went away may be
// returned again.
func RecoverJobs[In, Out any](ctx context.Context, fn *Function[In, Out], id string, nodes []string, opts ...Option) ([]RecoveredJob[Out], error) {
	if id == "" {
		return nil, errors.New("drove: RecoverJobs needs the client id the jobs were submitted under")
	}
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	secret := cfg.secret
	if secret == "" {
		secret = os.Getenv("DROVE_SECRET")
	}
	ncfg := nodeexec.Config{Secret: secret, ClientID: id}
	if cfg.tlsCA != "" {
		tc, err := nodeauth.ClientTLS(cfg.tlsCert, cfg.tlsKey, cfg.tlsCA)
		if err != nil {
			return nil, err
		}
		ncfg.TLS = tc
	}
	var out []RecoveredJob[Out]
	var errs []error
	for _, n := range nodes {
		ncfg.Addr = discovery.NodeAddr(n)
		rs, err := nodeexec.Recover(ctx, ncfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("drove: recovering from %s: %w", n, err))
		}
		for _, r := range rs {
			out = append(out, recovered(fn, ncfg.Addr, r))
		}
	}
	return out, errors.Join(errs...)
}

func recovered[In, Out any](fn *Function[In, Out], node string, r nodeexec.Recovered) RecoveredJob[Out] {
	res := r.Result
	j := RecoveredJob[Out]{ID: r.JobID, Node: node, Status: Status(r.State()), Err: res.Err, Stdout: res.Stdout, Stderr: res.Stderr, Start: res.Start, End: res.End}
	if j.Status == Finished {
		v, err := fn.decode(res.Output)
		if err != nil {
			j.Status, j.Err = Terminated, fmt.Errorf("drove: decoding the result of job %d: %w", r.JobID, err)
		}
		j.Result = v
	}
	if j.Status != Finished && j.Err == nil {
		j.Err = fmt.Errorf("drove: job %d ended %s", r.JobID, j.Status)
	}
	return j
}
