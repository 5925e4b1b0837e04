package drove

import (
	"errors"

	"github.com/drove-dev/drove/internal/executor/nodeexec"
	"github.com/drove-dev/drove/internal/joberr"
	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/recoverfile"
	"github.com/drove-dev/drove/internal/sched"
	"github.com/drove-dev/drove/internal/worker"
)

// Errors a job can end with. Match them with errors.Is.
var (
	// ErrCancelled: the job was cancelled with Cluster.Cancel, or by Close
	// with a cancelled context.
	ErrCancelled = sched.ErrCancelled
	// ErrTimeout: the job ran past its Timeout.
	ErrTimeout = sched.ErrTimeout
	// ErrNodeLost: the node running the job failed.
	ErrNodeLost = sched.ErrNodeLost
	// ErrClosed is returned by Submit after Close.
	ErrClosed = sched.ErrClosed
	// ErrNoNode: a job was pinned to a node the cluster does not have.
	ErrNoNode = sched.ErrNoNode
	// ErrNoNodeFound is wrapped by NewCluster's error when discovery
	// found no usable node within WithDiscoverTimeout; the error says what
	// was tried.
	ErrNoNodeFound = errors.New("drove: no drove node found")
	// ErrNoMain is returned by NewCluster for a function when drove.Main was
	// not called: workers could not be started from this program.
	ErrNoMain = errors.New("drove: drove.Main() was not called at the start of main")
	// ErrNotRegistered is returned by NewCluster for a function registered
	// after drove.Main, which workers would not know.
	ErrNotRegistered = errors.New("drove: function not registered at package initialisation")
	// ErrEncode wraps the error of an input that cannot be encoded.
	ErrEncode = errors.New("drove: cannot encode job input")
	// ErrFileRefused is wrapped by SendFile's error for a file the client
	// did not take: a name leading out of its destination directory, a
	// file over WithMaxFileSize, a write that failed.
	ErrFileRefused = worker.ErrFileRefused
	// ErrRecoverFile is wrapped by RecoverFromFile's error for a file that
	// is not a recover file this version of drove can use (garbled, of
	// another version, or naming a scheduler).
	ErrRecoverFile = recoverfile.ErrFormat
	// ErrRecoverMismatch is wrapped by RecoverFromFile's error when the
	// recover file is for another computation than the one given.
	ErrRecoverMismatch = errors.New("drove: the recover file is for another computation")
)

// PanicError is the error of a job whose function panicked; it carries the
// panic value and the stack. The worker that panicked is replaced.
type PanicError = joberr.PanicError

// ExitError is the error of a job whose process ended abnormally: a worker
// that called os.Exit or crashed while running it, or a program killed by a
// signal. It carries the exit code or signal and the end of stderr. It is
// the same type as remote.ExitError: one type for how any process, local or
// remote, ended.
type ExitError = proc.ExitError

// RemoteError is an error returned by a function in a worker process. Only
// its text crosses the process boundary.
type RemoteError = joberr.RemoteError

// NodeConnError is the error of a drove node (WithNodes) that cannot be
// reached, refuses the client or is lost: NewCluster's error when no node
// can be used wraps one per node, and a node reported to OnNodeStatus as
// NodeLost carries one, as does the error of a job abandoned with it
// (beside ErrNodeLost). Addr is the node's address; Err says why, and
// matches nodeexec's sentinels for a node that missed its heartbeats or
// lost the computation. Use errors.As to tell an unreachable node from a
// job that failed.
type NodeConnError = nodeexec.ConnError
