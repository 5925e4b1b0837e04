// Package monitor is drove's web monitor: an http.Handler that serves one
// page embedded in the binary (plain HTML, CSS and JavaScript, nothing
// fetched from the network), the JSON API it and `drove status` read, and a
// stream of server-sent events that keeps the page live without reloading.
//
// What it shows comes from a Source: a drove node or scheduler daemon
// (package internal/node) or a client's cluster (package drove). The
// latest jobs are kept by a Recorder, a bounded ring fed with the
// scheduling core's task events, so a cluster that ran a million jobs
// shows the latest ones and counts for the rest. Actions (cancel a job,
// set a node's CPUs, allocate, deallocate or close a node, add nodes) go
// through the Source's optional Actions; a monitor without them is
// read-only and its page says so.
//
// The handler authenticates nothing itself: whoever mounts it puts it
// behind the same authentication as its API (see Sessions for browsers
// with a cluster secret). Actions are POST requests that must carry the
// monitor's CSRF token in a header and come from the page's own origin.
package monitor

import (
	"context"
	"errors"
	"time"
)

// Status is the snapshot /api/status serves.
type Status struct {
	// Kind is what serves the monitor: "node", "scheduler" or "client".
	Kind string `json:"kind"`
	// Name is the daemon's or client's name.
	Name string `json:"name"`
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Begin is when the daemon or cluster started.
	Begin time.Time `json:"begin"`
	// Pending and Running count the jobs of every computation.
	Pending int `json:"pending"`
	Running int `json:"running"`
	// Nodes are the machines jobs run on.
	Nodes []Node `json:"nodes"`
	// Computations are the clients' computations (on a daemon) or the
	// cluster's one (on a client).
	Computations []Computation `json:"computations"`
	// Jobs is a page of the latest jobs, newest first; JobsTotal is how
	// many the monitor keeps (at most its Recorder's capacity), JobsSeen
	// how many it has seen since it started. Counts by status of all jobs
	// are in Computations.
	Jobs      []Job `json:"jobs"`
	JobsTotal int   `json:"jobs_total"`
	JobsSeen  int64 `json:"jobs_seen"`
	// Actions the monitor offers (see the Action kinds); empty for a
	// read-only monitor. Filled in by the handler.
	Actions []string `json:"actions"`
	// CSRF is the token actions must carry in the X-Drove-CSRF header.
	// Filled in by the handler.
	CSRF string `json:"csrf,omitempty"`
}

// Node is one machine of a Status.
type Node struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	CPUs    int    `json:"cpus"`
	Busy    int    `json:"busy"`
	// JobsDone counts the jobs that ended on the node; NodeTime is their
	// total run time in seconds.
	JobsDone int     `json:"jobs_done"`
	NodeTime float64 `json:"node_time"`
	Sent     int64   `json:"sent"`
	Received int64   `json:"received"`
	// State is "up", "lost" (failed, may come back), "closed" or
	// "unreachable"; Allocated is false for a node given no new jobs.
	State     string `json:"state"`
	Allocated bool   `json:"allocated"`
	// What the node has free, when known.
	CPUFree  *float64 `json:"cpu_free,omitempty"`  // percent
	MemFree  *uint64  `json:"mem_free,omitempty"`  // bytes
	DiskFree *uint64  `json:"disk_free,omitempty"` // bytes
	SwapUsed *float64 `json:"swap_used,omitempty"` // percent
}

// Computation is one computation (a client's, on a daemon) of a Status.
type Computation struct {
	ID      string `json:"id"`
	Client  string `json:"client,omitempty"`
	What    string `json:"what,omitempty"` // the function or program
	Pending int    `json:"pending"`
	Running int    `json:"running"`
	// Final jobs by status.
	Finished   int `json:"finished"`
	Cancelled  int `json:"cancelled"`
	Terminated int `json:"terminated"`
	Abandoned  int `json:"abandoned"`
	// SlotTime is the seconds its jobs held CPUs.
	SlotTime float64 `json:"slot_time"`
}

// Job is one job of a Status: ID is the monitor's own (unique on the
// page, what /api/jobs/{id} and the cancel action take), JobID the job's
// id in its computation.
type Job struct {
	ID          int64     `json:"id"`
	JobID       int64     `json:"job_id"`
	Computation string    `json:"computation,omitempty"`
	Status      string    `json:"status"`
	Node        string    `json:"node,omitempty"`
	Start       time.Time `json:"start,omitzero"`
	// RunTime is in seconds: so far for a running job.
	RunTime float64 `json:"run_time"`
	// Command is the command line of a shell job (drove run), and
	// ExitCode its exit code once it ended with one.
	Command  string `json:"command,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
}

// JobDetail is a job with what it printed and its error, for /api/jobs/{id}.
type JobDetail struct {
	Job
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Error  string `json:"error,omitempty"`
}

// Query selects the page of jobs a snapshot carries.
type Query struct {
	// Offset skips that many of the latest jobs; Limit bounds the page
	// (0: DefaultLimit, at most MaxLimit).
	Offset, Limit int
	// Status, if set, keeps only jobs with that status ("running",
	// "finished", ...).
	Status string
}

// Page bounds.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// ErrNotFound is what Source.Job returns for a job the monitor does not
// keep.
var ErrNotFound = errors.New("drove: monitor: no such job (the monitor keeps only the latest jobs)")

// ErrUnsupported is what Actions.Do returns for an action it does not
// offer.
var ErrUnsupported = errors.New("drove: monitor: action not supported here")

// Source is what a monitor shows: a daemon or a client.
type Source interface {
	// Snapshot returns the state now, with the page of jobs q asks for.
	Snapshot(ctx context.Context, q Query) (Status, error)
	// Job returns one job the monitor keeps, or ErrNotFound.
	Job(ctx context.Context, id int64) (JobDetail, error)
	// Subscribe returns a channel that receives a value (coalesced: one
	// may stand for many) after each change, until ctx ends.
	Subscribe(ctx context.Context) <-chan struct{}
}

// Action kinds.
const (
	ActCancel     = "cancel"     // Action.Job
	ActSetCPUs    = "set_cpus"   // Action.Node, Action.CPUs
	ActAllocate   = "allocate"   // Action.Node
	ActDeallocate = "deallocate" // Action.Node
	ActClose      = "close"      // Action.Node
	ActAddNode    = "add_node"   // Action.Address
)

// Action is one action the page asks for, the body of POST /api/action.
type Action struct {
	Kind    string `json:"action"`
	Job     int64  `json:"job,omitempty"`
	Node    string `json:"node,omitempty"`
	CPUs    int    `json:"cpus,omitempty"`
	Address string `json:"address,omitempty"`
}

// Actions is implemented by Sources that act on what they show.
type Actions interface {
	// Supported lists the action kinds it offers.
	Supported() []string
	// Do carries out a; ErrUnsupported for a kind it does not offer,
	// ErrNotFound for a job it does not keep.
	Do(ctx context.Context, a Action) error
}
