package drove

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/nodeauth"
	"github.com/drove-dev/drove/internal/sched"
)

// WithClientID names this client to its drove nodes. A client process that
// goes away without closing its cluster (it crashed, or exited) leaves its
// jobs' results on the nodes, kept for it under this name; a new process
// collects them with RecoverJobs and the same name. The default is the host
// name with a random suffix, which no later process can know.
func WithClientID(id string) Option {
	return optionFunc(func(c *config) { c.clientID = id })
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
		ncfg.Addr = nodeAddr(n)
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
	j := RecoveredJob[Out]{ID: r.JobID, Node: node, Err: res.Err, Stdout: res.Stdout, Stderr: res.Stderr, Start: res.Start, End: res.End}
	switch res.Outcome {
	case sched.OK:
		j.Status = Finished
		v, err := fn.decode(res.Output)
		if err != nil {
			j.Status, j.Err = Terminated, fmt.Errorf("drove: decoding the result of job %d: %w", r.JobID, err)
		}
		j.Result = v
	case sched.Killed:
		j.Status = Cancelled
	case sched.Lost, sched.NotStarted:
		j.Status = Abandoned
	default:
		j.Status = Terminated
	}
	if j.Status != Finished && j.Err == nil {
		j.Err = fmt.Errorf("drove: job %d ended %s", r.JobID, j.Status)
	}
	return j
}
