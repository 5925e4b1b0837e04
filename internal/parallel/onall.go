package parallel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/drove-dev/drove/internal/hostset"
	"github.com/drove-dev/drove/internal/sshconn"
)

// defaultOnAllHosts is how many hosts --onall and --nonall run at once
// without -j: drove exec's default fan-out.
const defaultOnAllHosts = 32

// check refuses what drove cannot do as GNU parallel would, before
// anything runs.
func (cfg *Config) check() error {
	if err := CheckTemplate("the command", cfg.Template); err != nil {
		return err
	}
	for _, t := range cfg.Transfer {
		if err := CheckTemplate("--transferfile", t); err != nil {
			return err
		}
	}
	for _, t := range cfg.Return {
		if err := CheckTemplate("--return", t); err != nil {
			return err
		}
	}
	if !cfg.OnAll && !cfg.NonAll {
		return nil
	}
	name := "--onall"
	if cfg.NonAll {
		name = "--nonall"
		if cfg.OnAll {
			return errors.New("drove: --onall and --nonall exclude each other")
		}
		if len(cfg.Sources) > 0 {
			return errors.New("drove: --nonall runs the command without arguments; it takes no inputs (use --onall)")
		}
		if cfg.Template == "" {
			return errors.New("drove: --nonall needs a command")
		}
	}
	var bad []string
	for _, o := range []struct {
		set  bool
		flag string
	}{
		{cfg.JobLog != "", "--joblog"}, {cfg.Results != "", "--results"}, {cfg.Retries > 1, "--retries"},
		{cfg.Halt.When != HaltNever, "--halt"}, {len(cfg.Transfer) > 0, "--transfer"}, {len(cfg.Return) > 0, "--return"},
		{len(cfg.BaseFiles) > 0, "--basefile"}, {cfg.Workdir != "", "--workdir"}, {cfg.LineBuffer, "--line-buffer"},
		{cfg.Trace, "-t"}, {cfg.Progress != nil, "--bar, --eta and --progress"},
	} {
		if o.set {
			bad = append(bad, o.flag)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("drove: %s does not take %s (it runs as drove exec does: see drove exec --help)", name, strings.Join(bad, ", "))
	}
	if len(cfg.Logins) == 0 {
		return fmt.Errorf("drove: %s needs SSH hosts: -S or --slf", name)
	}
	for _, l := range cfg.Logins {
		if l.IsLocal() {
			return fmt.Errorf("drove: %s runs on SSH hosts; %q (this machine) is not one: run the command directly", name, hostset.Local)
		}
	}
	return nil
}

// dryRun prints the commands the jobs would run, in order, and runs
// nothing; with --resume or --resume-failed, only those of the jobs the
// joblog does not let it skip. {%} is given as if the jobs were dealt to the slots in turn,
// counting the slots that are known without asking a host (one for an SSH
// host whose CPU count it would take).
func dryRun(cfg *Config) (*Summary, error) {
	w := cfg.Stdout
	if cfg.NonAll {
		fmt.Fprintln(w, cfg.Template)
		return &Summary{}, nil
	}
	skip := map[int]bool{}
	if cfg.Resume || cfg.ResumeFailed {
		var err error
		if skip, err = resumeSet(cfg.JobLog, cfg.ResumeFailed); err != nil {
			return nil, fmt.Errorf("drove: %w", err)
		}
	}
	in, err := newInputs(cfg)
	if err != nil {
		return nil, err
	}
	slots := 0
	for _, l := range cfg.Logins {
		switch {
		case l.Slots > 0:
			slots += l.Slots
		case cfg.Jobs.Fixed() > 0:
			slots += cfg.Jobs.Fixed()
		case l.IsLocal():
			slots += cfg.Jobs.Slots(runtime.NumCPU())
		default:
			slots++
		}
	}
	if len(cfg.Logins) == 0 || cfg.OnAll {
		slots = 1
	}
	sum := &Summary{}
	for seq := 1; ; seq++ {
		args, ok, err := in.next()
		if err != nil {
			return sum, fmt.Errorf("drove: reading input: %w", err)
		}
		if !ok {
			return sum, nil
		}
		if skip[seq] {
			sum.Skipped++
			continue
		}
		c := strings.Join(args, " ")
		if cfg.Template != "" {
			c = render(cfg.Template, args, seq, (seq-1)%slots+1, true)
		}
		if _, err := io.WriteString(w, c+"\n"); err != nil {
			return sum, err
		}
	}
}

// runOnAll runs cfg's jobs on every host with [Broadcast], the code of
// drove exec: each host runs one shell script, the jobs in order in
// subshells of it, so that a host's jobs run one at a time and its output
// comes in one piece, as with GNU parallel --onall.
func runOnAll(ctx context.Context, cfg *Config) (*Summary, error) {
	hosts := make([]hostset.Host, len(cfg.Logins))
	for i, l := range cfg.Logins {
		h, err := hostset.ParseHost(l.Host)
		if err != nil {
			return nil, err
		}
		hosts[i] = h
	}
	script, err := onAllScript(cfg)
	if err != nil {
		return nil, err
	}
	fanout := cfg.Jobs.Fixed()
	if fanout == 0 {
		fanout = defaultOnAllHosts
		if cfg.Jobs != (Jobs{}) {
			fanout = cfg.Jobs.Slots(runtime.NumCPU())
		}
	}
	env := append([]string{"PARALLEL_PID=" + strconv.Itoa(os.Getpid())}, cfg.Env...)
	if cfg.NonAll {
		env = append(env, "PARALLEL_SEQ=1", "PARALLEL_JOBSLOT=1")
	}
	index := map[string]int{}
	for i, h := range hosts {
		index[h.Target()] = i
	}
	out := newOutput(cfg.Stdout, cfg.Stderr, cfg.KeepOrder)
	sum := &Summary{}
	done := make([]bool, len(hosts))
	bc := BroadcastConfig{
		Command: script,
		Hosts:   hosts,
		Pool:    cfg.Pool,
		Fanout:  fanout,
		Timeout: cfg.Timeout,
		Logger:  cfg.Logger,
		HostEnv: func(target string) []string {
			return append(append([]string{}, env...), "PARALLEL_SSHLOGIN="+target)
		},
		// One call at a time.
		OnDone: func(r HostResult) {
			i := index[r.Name]
			done[i] = true
			tag := ""
			if cfg.Tag {
				tag = r.Name + "\t"
			}
			sum.Jobs++
			if r.Code != 0 {
				sum.Failed++
			}
			if r.Failure != "" && !strings.HasPrefix(r.Failure, failureExited) {
				if r.Code == 255 && r.Failure != failureInterrupted {
					sum.HostsDown = append(sum.HostsDown, r.Name)
				}
				r.Stderr = append(r.Stderr, fmt.Sprintf("drove: %s: %s\n", r.Name, r.Failure)...)
			}
			// The message is the host's, so it is printed (and tagged) with
			// its output.
			out.done(i+1, tag, r.Stdout, r.Stderr)
		},
	}
	if cfg.Pool == nil {
		return nil, errors.New("drove: SSH hosts given without a connection pool")
	}
	if _, err := Broadcast(ctx, bc); err != nil {
		return nil, err
	}
	for i := range hosts {
		if !done[i] {
			out.skip(i + 1) // never started: interrupted
		}
	}
	out.flushAll()
	if ctx.Err() != nil {
		sum.Interrupted = true
	}
	return sum, nil
}

// onAllScript is the shell script every host runs: the command itself
// with --nonall; with --onall, every job's command in a subshell, one after
// the other, with its $PARALLEL_SEQ and $PARALLEL_JOBSLOT (1), the script
// exiting 1 if any failed. -v prints each command before it runs.
func onAllScript(cfg *Config) (string, error) {
	verbose := func(b *strings.Builder, c string) {
		if cfg.Verbose {
			b.WriteString("printf '%s\\n' " + sshconn.Quote(c) + "\n")
		}
	}
	var b strings.Builder
	if cfg.NonAll {
		verbose(&b, cfg.Template)
		b.WriteString(cfg.Template)
		return b.String(), nil
	}
	in, err := newInputs(cfg)
	if err != nil {
		return "", err
	}
	b.WriteString("drove_failed=0\n")
	for seq := 1; ; seq++ {
		args, ok, err := in.next()
		if err != nil {
			return "", fmt.Errorf("drove: reading input: %w", err)
		}
		if !ok {
			break
		}
		c := strings.Join(args, " ")
		if cfg.Template != "" {
			c = render(cfg.Template, args, seq, 1, true)
		}
		fmt.Fprintf(&b, "PARALLEL_SEQ=%d PARALLEL_JOBSLOT=1; export PARALLEL_SEQ PARALLEL_JOBSLOT\n", seq)
		verbose(&b, c)
		b.WriteString("(\n" + c + "\n) </dev/null || drove_failed=1\n")
	}
	b.WriteString("exit $drove_failed\n")
	return b.String(), nil
}
