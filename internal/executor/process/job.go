package process

import (
	"bytes"
	"io"
	"path"
	"strings"

	"github.com/drove-dev/drove/internal/sched"
)

// Job is a shell job with more than a command line, on this machine or on
// an SSH host (sshexec).
type Job struct {
	// Command is the shell command line, run exactly as given by the login
	// shell of the user on an SSH host (as `ssh host command` and GNU
	// parallel -S run it) and by /bin/sh -c (Config.Shell) on this
	// machine.
	Command string
	// CommandFor, if set, builds the command line at the start of each
	// attempt, once the node (the scheduler's name for it) and the run's
	// slot on it (1 … slots) are known, for GNU parallel's {%}. It overrides
	// Command.
	CommandFor func(node string, slot int) string
	// Dir is the working directory, created if missing; relative paths are
	// relative to the login directory (the home directory on this
	// machine). Empty means the login directory (the current directory on
	// this machine).
	Dir string
	// Env holds NAME=value pairs exported to the command.
	Env []string
	// Stdin is the command's standard input; nil gives it none.
	Stdin []byte
	// Stdout and Stderr, if set, receive the output as it arrives instead of
	// it being collected in the Result.
	Stdout, Stderr io.Writer
	// Transfer lists local files copied to the host before the command
	// (GNU parallel --transferfile). A relative path lands relative to Dir;
	// a "/./" in a path marks where the part relative to Dir begins. Local
	// runs without a Dir ignore it: the files are already here.
	Transfer []string
	// Return lists files copied back from the host after the command, to the
	// same path relative to the current directory (GNU parallel --return).
	Return []string
	// Cleanup removes the transferred and returned files from the host
	// afterwards (GNU parallel --cleanup).
	Cleanup bool
	// RemoveDir removes Dir and everything in it from the host afterwards
	// (GNU parallel --workdir ...).
	RemoveDir bool
}

// Spec is implemented by a task's Ref that carries a [Job].
type Spec interface {
	ShellJob() *Job
}

// JobOf returns the job of t: its Ref's, or a Job running its Input.
func JobOf(t *sched.Task) *Job {
	if s, ok := t.Ref.(Spec); ok {
		if j := s.ShellJob(); j != nil {
			return j
		}
	}
	return &Job{Command: string(t.Input)}
}

// CommandLine returns the command line of an attempt on node in slot.
func (j *Job) CommandLine(node string, slot int) string {
	if j.CommandFor != nil {
		return j.CommandFor(node, slot)
	}
	return j.Command
}

// Paths returns where file f of a job working in dir lives on the host
// (relative to the login directory unless absolute) and here. A "/./" in
// f marks the start of the part that is relative to dir, as in GNU
// parallel; otherwise a relative f is relative to dir and an absolute one
// stays where it is.
func Paths(dir, f string) (remote, local string) {
	local = f
	rel := f
	if i := strings.Index(f, "/./"); i >= 0 {
		rel = f[i+3:]
	} else if path.IsAbs(f) {
		return path.Clean(f), local
	}
	if dir != "" {
		return path.Join(dir, rel), local
	}
	return path.Clean(rel), local
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Outputs returns the writers a run of j writes its output to, which
// count the bytes, and a function that moves the output collected (for the
// writers j does not set) and the count into res.
func Outputs(j *Job) (stdout, stderr io.Writer, collect func(res *sched.Result)) {
	var ob, eb *bytes.Buffer
	so, se := &counter{w: j.Stdout}, &counter{w: j.Stderr}
	if j.Stdout == nil {
		ob = &bytes.Buffer{}
		so.w = ob
	}
	if j.Stderr == nil {
		eb = &bytes.Buffer{}
		se.w = eb
	}
	return so, se, func(res *sched.Result) {
		if ob != nil {
			res.Stdout = ob.Bytes()
		}
		if eb != nil {
			res.Stderr = eb.Bytes()
		}
		res.Received += so.n + se.n
	}
}
