package sshagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/drove-dev/drove/internal/proc"
	"github.com/drove-dev/drove/internal/sshserve"
)

// EnvAgent, set in a drove program's environment, makes drove.Main serve
// as the shell agent on stdin and stdout (Main) instead of running the
// program. Its value is the host's drove cache directory.
const EnvAgent = "DROVE_SSH_AGENT"

// Marker is the line the agent prints on stdout before the protocol
// starts, so that the client can skip whatever the login shell printed
// first.
const Marker = "drove-ssh-agent 1"

// Serving reports whether this process was started as the agent.
func Serving() bool { return os.Getenv(EnvAgent) != "" }

// loginShellVars are the variables the login shell that started the agent
// set or changed for itself, not sshd: without them a job's shell starts
// as the shell sshd starts for a session does (bash, for instance, reads
// ~/.bashrc under sshd only at SHLVL 1).
var loginShellVars = []string{"SHLVL", "_", "OLDPWD"}

// Main serves the agent protocol on stdin and stdout until stdin ends (the
// session or the connection closed) or the agent is told to stop (SIGHUP,
// SIGTERM, SIGINT), then stops the jobs still running and returns the
// process's exit code. Each job is `$SHELL -c SCRIPT` with the
// environment sshd gave the agent, in the login directory, the leader of
// a new session and process group, as sshd runs a session's command.
func Main() int {
	os.Unsetenv(EnvAgent)
	for _, v := range loginShellVars {
		os.Unsetenv(v)
	}
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	home, err := os.Getwd()
	if err != nil {
		home = os.Getenv("HOME")
	}
	in, out, err := sshserve.TakeStdio()
	if err != nil {
		fmt.Fprintln(os.Stderr, "drove agent:", err)
		return 1
	}
	if _, err := fmt.Fprintln(out, Marker); err != nil {
		return 1
	}
	a := newAgent(shell, home, out)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	a.serve(in, stop)
	in.Close()
	out.Close()
	return 0
}

// agent runs the jobs of one client.
type agent struct {
	shell, arg0, home string

	wq     chan []byte   // encoded frames to write
	dead   chan struct{} // closed when stdout broke
	wdone  chan struct{} // closed when the writer has ended
	quit   chan struct{} // closed to end the writer
	mu     sync.Mutex
	jobs   map[uint64]*job
	ending bool
	wg     sync.WaitGroup // the jobs' goroutines
}

func newAgent(shell, home string, out io.Writer) *agent {
	a := &agent{
		shell: shell, arg0: filepath.Base(shell), home: home,
		wq: make(chan []byte, 256), dead: make(chan struct{}), wdone: make(chan struct{}), quit: make(chan struct{}),
		jobs: map[uint64]*job{},
	}
	go a.write(out)
	return a
}

// write writes the queued frames, as many as are queued at once before a
// flush, until quit is closed and the queue is empty, or out breaks.
func (a *agent) write(out io.Writer) {
	defer close(a.wdone)
	bw := bufio.NewWriterSize(out, 64<<10)
	for {
		var b []byte
		select {
		case b = <-a.wq:
		case <-a.quit:
			select {
			case b = <-a.wq:
			default:
				bw.Flush()
				return
			}
		}
		_, err := bw.Write(b)
		for more := true; more && err == nil; {
			select {
			case b = <-a.wq:
				_, err = bw.Write(b)
			default:
				more = false
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			close(a.dead)
			return
		}
	}
}

// send queues f; it is dropped once stdout broke.
func (a *agent) send(f *frame) {
	b := appendFrame(nil, f)
	select {
	case a.wq <- b:
	case <-a.dead:
	}
}

// serve reads frames until stdin ends or a stop signal, then stops the
// running jobs and waits for them.
func (a *agent) serve(in io.Reader, stop <-chan os.Signal) {
	a.send(&frame{typ: tHello, version: Version, cpus: uint64(runtime.NumCPU())})
	readErr := make(chan error, 1)
	go func() {
		r := newReader(in)
		for {
			f, err := readFrame(r)
			if err != nil {
				readErr <- err
				return
			}
			a.handle(&f)
		}
	}()
	var err error
	select {
	case err = <-readErr:
	case <-a.dead:
		err = errors.New("stdout closed")
	case sig := <-stop:
		err = fmt.Errorf("%v", sig)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "drove agent: ending:", err)
	}
	// The client is gone: every job still running is stopped, process
	// group and all, as the watchdog of a session does.
	a.mu.Lock()
	a.ending = true
	for _, j := range a.jobs {
		j.stop()
	}
	a.mu.Unlock()
	a.wg.Wait()
	close(a.quit)
	<-a.wdone
}

// handle acts on one frame from the client.
func (a *agent) handle(f *frame) {
	switch f.typ {
	case tStart:
		a.start(f)
	case tStdin:
		a.mu.Lock()
		j := a.jobs[f.id]
		a.mu.Unlock()
		if j != nil && j.stdin != nil {
			j.stdin.add(f.data)
		}
	case tStop:
		a.mu.Lock()
		j := a.jobs[f.id]
		a.mu.Unlock()
		if j != nil {
			j.stop()
		}
	}
}

// job is one running command.
type job struct {
	a        *agent
	id       uint64
	mu       sync.Mutex
	pgid     int  // 0 until started
	stopping bool // stop was called
	grace    time.Duration
	stdin    *feed // nil without stdin
	outs     [2]*os.File
	once     sync.Once
	stopped  chan struct{} // closed by stop
}

// start runs f's script as sshd runs a session's command.
func (a *agent) start(f *frame) {
	a.mu.Lock()
	if a.ending || a.jobs[f.id] != nil {
		a.mu.Unlock()
		return
	}
	j := &job{a: a, id: f.id, grace: proc.Grace(f.grace), stopped: make(chan struct{})}
	a.jobs[f.id] = j
	a.wg.Add(1)
	a.mu.Unlock()

	cmd := &exec.Cmd{
		Path: a.shell,
		Args: []string{a.arg0, "-c", string(f.data)},
		Dir:  a.home,
		// A session of its own, as sshd gives each session's shell: the
		// shell leads its process group, which a stop kills whole.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	var childEnds []*os.File
	var err error
	for i := range j.outs {
		var r, w *os.File
		if r, w, err = os.Pipe(); err != nil {
			break
		}
		j.outs[i] = r
		childEnds = append(childEnds, w)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err == nil {
		cmd.Stdout, cmd.Stderr = childEnds[0], childEnds[1]
		if f.hasStdin {
			var r, w *os.File
			if r, w, err = os.Pipe(); err == nil {
				cmd.Stdin = r
				childEnds = append(childEnds, r)
				j.stdin = newFeed(w)
			}
		}
	}
	if err == nil {
		err = cmd.Start()
	}
	for _, c := range childEnds {
		c.Close()
	}
	if err != nil {
		for _, r := range j.outs {
			if r != nil {
				r.Close()
			}
		}
		if j.stdin != nil {
			j.stdin.close()
		}
		code := int64(126)
		if errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		a.send(&frame{typ: tOut, id: f.id, stream: 2, data: []byte(fmt.Sprintf("drove agent: %s: %v\n", a.shell, err))})
		a.finish(j, code, 0)
		return
	}
	j.mu.Lock()
	j.pgid = cmd.Process.Pid
	stopping := j.stopping
	j.mu.Unlock()
	if stopping {
		go j.kill(cmd.Process.Pid) // stopped while it started
	}
	if j.stdin != nil {
		go j.stdin.run()
	}
	var readers sync.WaitGroup
	for i, r := range j.outs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			j.copyOut(r, byte(i+1))
		}()
	}
	go func() {
		_ = cmd.Wait()
		code, sig := proc.StateOf(cmd.ProcessState)
		if j.stdin != nil {
			j.stdin.close()
		}
		// As sshd, the job ends when its output does: a background
		// process that keeps stdout open holds it. Once the job is being
		// stopped, though, a process that left the group must not.
		eof := make(chan struct{})
		go func() { readers.Wait(); close(eof) }()
		select {
		case <-eof:
		case <-j.stopped:
			select {
			case <-eof:
			case <-time.After(proc.Longest(j.grace) + 5*time.Second):
				for _, r := range j.outs {
					r.Close()
				}
				<-eof
			}
		}
		for _, r := range j.outs {
			r.Close()
		}
		a.finish(j, int64(code), uint64(sig))
	}()
}

// finish reports j's end and forgets it.
func (a *agent) finish(j *job, code int64, sig uint64) {
	a.send(&frame{typ: tExit, id: j.id, code: code, signal: sig})
	a.mu.Lock()
	delete(a.jobs, j.id)
	a.mu.Unlock()
	a.wg.Done()
}

// copyOut sends what the job writes on stream (1 stdout, 2 stderr).
func (j *job) copyOut(r *os.File, stream byte) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			j.a.send(&frame{typ: tOut, id: j.id, stream: stream, data: buf[:n]})
		}
		if err != nil {
			return
		}
	}
}

// stop stops the job's process group by proc.Steps (SIGINT, SIGTERM,
// SIGKILL), each step only while a member lives, the job's grace apart,
// as proc.ShellStop does over a second session. It may be called more
// than once.
func (j *job) stop() {
	j.once.Do(func() {
		close(j.stopped)
		j.mu.Lock()
		j.stopping = true
		pgid := j.pgid
		j.mu.Unlock()
		if pgid > 1 {
			go j.kill(pgid)
		}
	})
}

// kill takes the steps of a stop on process group pgid.
func (j *job) kill(pgid int) {
	steps := proc.Steps()
	for i, sig := range steps {
		if !groupAlive(pgid) {
			return
		}
		_ = syscall.Kill(-pgid, sig)
		if i+1 == len(steps) {
			return
		}
		deadline := time.Now().Add(j.grace)
		for groupAlive(pgid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// groupAlive reports whether process group g has a member.
func groupAlive(g int) bool {
	err := syscall.Kill(-g, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// feed writes a job's stdin as it arrives, without ever blocking the
// agent's reader: a command that does not read its input holds only its
// own.
type feed struct {
	w      *os.File
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	eof    bool // no more input
	closed bool // the job ended: drop the rest
}

func newFeed(w *os.File) *feed {
	f := &feed{w: w}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// add queues data; empty data is the end of the input.
func (f *feed) add(data []byte) {
	f.mu.Lock()
	if len(data) == 0 {
		f.eof = true
	} else if !f.eof && !f.closed {
		f.chunks = append(f.chunks, append([]byte(nil), data...))
	}
	f.mu.Unlock()
	f.cond.Signal()
}

// close ends the feed: the job has ended.
func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cond.Signal()
	// Unblocks a write stuck on a full pipe.
	f.w.Close()
}

// run writes the chunks until the end of the input or of the job.
func (f *feed) run() {
	for {
		f.mu.Lock()
		for len(f.chunks) == 0 && !f.eof && !f.closed {
			f.cond.Wait()
		}
		if f.closed || len(f.chunks) == 0 {
			f.mu.Unlock()
			f.w.Close()
			return
		}
		c := f.chunks[0]
		f.chunks = f.chunks[1:]
		f.mu.Unlock()
		if _, err := f.w.Write(c); err != nil {
			f.mu.Lock()
			f.closed, f.chunks = true, nil
			f.mu.Unlock()
			f.w.Close()
			return
		}
	}
}
